"""Sprint wrap-up helpers (days 10, 20, 30, ...): configs exported, docstrings audited, results collected.

    configs = collect_configs(root, days)            # {dayNN: {preset: resolved config}}
    missing = docstring_audit(root / "common")       # ["file.py:name", ...]
    section = results_section(root, days, sprint=2)  # README block between the sprint's markers
    readme = replace_section(readme, section, sprint=2)

Everything is read from the days' committed `reference.json` files (never by importing a day), so the exported
`config.yaml` and the README section cannot drift from what the runs did.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from common.course import curriculum
from common.run.dayfiles import DayFiles


def latex_balanced(text: str) -> bool:
    """Every $$...$$ and $...$ in a Markdown page opens and closes (code spans excluded)."""
    text = re.sub(r"`[^`]*`", "", text)
    display = text.count("$$")
    return display % 2 == 0 and text.replace("$$", "").count("$") % 2 == 0


def reference_metrics(root: Path, day: int) -> dict:
    """The metrics of a day's committed reference run ({} when the day has none yet)."""
    return DayFiles(root, day).reference_metrics()


def markers(sprint: int) -> tuple[str, str]:
    return f"<!-- sprint{sprint}-results:begin -->", f"<!-- sprint{sprint}-results:end -->"


def collect_configs(root: Path, days: list[int]) -> dict:
    """{dayNN: {preset: resolved config}} for every day among `days` with a committed reference.

    Read from `reference.json` (the runner stores every preset as resolved), never by importing a
    day: the course machinery launches days, it does not import them."""
    out = {}
    for n in days:
        ref = DayFiles(root, n).reference()
        if ref and "presets" in ref:
            out[DayFiles(root, n).name] = ref["presets"]
    return out


def docstring_audit(pkg_dir: Path) -> list[str]:
    """Public modules, classes and functions of a package that lack a docstring ('file:name')."""
    missing = []
    for f in sorted(p for p in pkg_dir.rglob("*.py") if "tests" not in p.relative_to(pkg_dir).parts):
        name = f.relative_to(pkg_dir).as_posix()
        tree = ast.parse(f.read_text(encoding="utf-8"))
        if not ast.get_docstring(tree):
            missing.append(f"{name}:<module>")
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if not ast.get_docstring(node) and not _trivial(node):
                    missing.append(f"{name}:{node.name}")
    return missing


def _trivial(node) -> bool:
    """Dataclasses documented by their field comments and one-line functions need no docstring."""
    if isinstance(node, ast.ClassDef):
        return any(getattr(d, "id", getattr(d, "attr", "")) == "dataclass" for d in node.decorator_list)
    return len(node.body) == 1


def results_section(root: Path, days: list[int], sprint: int) -> str:
    """The README block: a table of each day's reference metrics and every figure, with its command."""
    begin, end = markers(sprint)
    info = curriculum.sprint_info(sprint)
    lines = [begin, "", f"## Sprint {sprint} results: {info['title']}", "",
             "Numbers from each day's committed reference run on the 2-core CPU machine "
             f"(`days/dayNN/reference.json`); regenerate this section with `make day {sprint * 10}`.", "",
             "| Day | Focus | Key results | Training: dtype, tokens/s, MFU | Reproduce |", "|---:|---|---|---|---|"]
    figures = []
    for n in days:
        ref = DayFiles(root, n).reference()
        shown = "not run yet" if ref is None else "<br>".join(
            f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
            for k, v in key_metrics(ref["metrics"], ref.get("key_metrics")))
        lines.append(f"| {n} | {curriculum.day(n).focus} | {shown} | {throughput_cell(ref)} | `make day {n}` |")
        figures += [(n, p) for p in DayFiles(root, n).plots()]
    lines += ["", f"### Sprint {sprint} figures", ""]
    for n, p in figures:
        lines += [f"**Day {n}, {p.stem.split('_', 1)[1].replace('_', ' ')}** (`make day {n}`)", "",
                  f"![{p.stem}](plots/{p.name})", ""]
    lines += [end]
    return "\n".join(lines)


def throughput_cell(ref: dict | None) -> str:
    """The day's main training run (most steps) from its reference: dtype, tokens/s and MFU; — if it trains none."""
    rows = [r for r in (ref or {}).get("throughput", []) if r.get("mfu") is not None]
    if not rows:
        return "—"
    r = max(rows, key=lambda r: r["steps"])
    return f"{r['dtype']}, {r['tokens_per_s']:,.0f} tok/s, MFU {r['mfu']:.1%}"


def key_metrics(metrics: dict, keys: list[str] | None = None, n: int = 5) -> list[tuple]:
    """The metrics a day names in `KEY_METRICS` (recorded in its reference), else its first `n`."""
    keys = [k for k in (keys or list(metrics)[:n]) if k in metrics]
    return [(k, metrics[k]) for k in keys]


def replace_section(text: str, section: str, sprint: int) -> str:
    """Swap the sprint's marked section in `text` (append it if the markers are absent)."""
    begin, end = markers(sprint)
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + section + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + section + "\n"


def sprint_days(spec: str) -> list[int]:
    """'31-40' (or '35') -> the list of days it names (day 10's `day_range` exercise, for the later wraps)."""
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def save_yaml(path: Path, header: str, obj) -> dict:
    """Write `obj` as YAML under a comment `header`, atomically, and return what reading the file back gives."""
    from omegaconf import OmegaConf

    from common.run import atomic

    atomic.write_text(path, header + OmegaConf.to_yaml(OmegaConf.create(obj)))
    return OmegaConf.to_container(OmegaConf.load(path))


def run_wrap(ctx, sprint: int, days: list[int], update_readme: bool = True) -> dict:
    """The body of a sprint-wrap day: config.yaml, docstring audit, README section; returns metrics.

    The reference run writes `days/dayNN/config.yaml` and the README section; any other run (the
    learner's, a variant, `--quick`) writes both into its own folder (`README_sprintN.md`), so the
    tracked README only ever shows the reference results.
    """

    from common.run import atomic

    d, reference = ctx.deliverable, ctx.kind == "reference"
    begin, end = markers(sprint)
    configs = collect_configs(ctx.root, days)
    cfg_path = ctx.day_dir / "config.yaml"
    header = (f"# Sprint {sprint}: every day's config under each named preset, as the runner resolves it.\n"
              f"# Generated by `make day {ctx.day}` from the days' Config dataclasses and PRESETS; edit those, "
              "not this.\n# Any value can be overridden on the command line: make day N ARGS=\"key=value\".\n")
    round_trip = save_yaml(cfg_path, header, configs) == configs
    d.section("One config file")
    d.text(f"`{cfg_path.name}` holds {len(configs)} days × their presets ({sum(len(v) for v in configs.values())} "
           f"resolved configs); reloading it gives {'the same' if round_trip else 'DIFFERENT'} values.")
    rows = [{"day": k, "presets": ", ".join(v), "fields": len(next(iter(v.values())))} for k, v in configs.items()]
    d.table(rows)
    if rows:
        most = max(rows, key=lambda r: r["fields"])
        d.text(f"What to look at: one row per day of the sprint; `presets` are the sizes it can run at (`nano` for "
               f"tests, `cpu` the default, `gpu` the seed plan's size) and `fields` the knobs of its config "
               f"({most['day']} has the most, {most['fields']}). Every one of them can be overridden on the command "
               "line; the file is a record of the defaults, not a second source of truth.")

    missing = docstring_audit(ctx.root / "common")
    d.section("Docstring audit of common/")
    d.text(f"{len(missing)} public module(s)/class(es)/function(s) without a docstring"
           + (": " + ", ".join(f"`{m}`" for m in missing) if missing else ".")
           + (" What to look at: nothing to fix; the audit walks every public name in `common/` with `ast`, so a new "
              "function without a docstring shows up here at the next wrap-up." if not missing else
              " What to look at: each name listed is public API a learner may call without a word on what it does."))

    section = results_section(ctx.root, days, sprint)
    readme = ctx.root / "README.md"
    target = readme if (reference and update_readme) else ctx.out / f"README_sprint{sprint}.md"
    base = readme.read_text(encoding="utf-8") if target == readme and readme.is_file() else ""
    atomic.write_text(target, replace_section(base, section, sprint))
    n_ref = sum(DayFiles(ctx.root, n).reference_path.is_file() for n in days)
    d.section(f"Sprint {sprint} results")
    d.text(f"Written to `{target.name}`: {n_ref} of {len(days)} days have a committed reference run. What to look "
           "at: each row shows at most five key metrics of the day's reference run (its `KEY_METRICS`; the rest are "
           "in its deliverable) and the command that reproduces them; these are the numbers your own runs are "
           "compared with.")
    d.text(section.replace(begin, "").replace(end, "").replace("](plots/", "](../../plots/"))
    return {"days_with_reference": n_ref, "configs_exported": len(configs), "config_round_trip": round_trip,
            "missing_docstrings": len(missing)}
