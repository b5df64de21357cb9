"""The layers of common/ point one way (DESIGN §6), checked on every import statement.

- nothing in common/ imports a day;
- the library layers (nn, data, train, lab) use each other and the run layer's leaves only
  (atomic writes, user errors, the progress bar), never the runner, the tracker or the course;
- every module sits in a subpackage: `ls common/` shows the layers.
"""

import ast
from pathlib import Path

import pytest

COMMON = Path(__file__).resolve().parents[1]
LIBRARY = ("nn", "data", "train", "lab", "eval")
LEAVES = {"common.run.atomic", "common.run.errors", "common.run.progress_bar", "common.run.gitinfo"}


def imports(path: Path) -> list[str]:
    """Every module an `import` or `from ... import` in the file names (`from a import b` gives a and a.b)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return out


SOURCES = sorted(p for p in COMMON.rglob("*.py") if "tests" not in p.relative_to(COMMON).parts)


@pytest.mark.parametrize("path", SOURCES, ids=[p.relative_to(COMMON).as_posix() for p in SOURCES])
def test_common_never_imports_a_day(path):
    assert not [m for m in imports(path) if m == "days" or m.startswith("days.")]


@pytest.mark.parametrize("layer", LIBRARY)
def test_library_layers_do_not_reach_up(layer):
    bad = []
    for path in sorted((COMMON / layer).rglob("*.py")):
        for m in imports(path):
            if m.startswith("common.") and m.split(".")[1] not in LIBRARY and m not in LEAVES \
                    and not any(m.startswith(leaf) for leaf in LEAVES) and m not in ("common.ROOT", "common.run"):
                bad.append(f"{path.relative_to(COMMON)} imports {m}")
    assert not bad, "\n".join(bad)


def test_only_packages_at_the_top():
    loose = sorted(p.name for p in COMMON.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside a layer: {loose}"
