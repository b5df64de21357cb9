"""Checks across all built days: what the course machinery reads from committed files is current.

The sprint wrap-ups export each day's presets and key metrics from its `reference.json` (the
course never imports a day), so a reference must describe the day's code as it is now: the same
presets as resolved today, and the KEY_METRICS and METRIC_KINDS the day declares. A day may import
only `common/`, never another day.
"""

import ast
import fnmatch
import importlib
import json

import pytest

from common import ROOT
from common.course import curriculum
from common.run import runner
from common.run.dayfiles import DayFiles, built_days

DAYS = built_days(ROOT)


@pytest.mark.parametrize("day", DAYS, ids=[f"day{d:02d}" for d in DAYS])
def test_reference_describes_the_current_code(day):
    files = DayFiles(ROOT, day)
    mod = importlib.import_module(files.module)
    ref = files.reference()
    assert ref is not None, f"day {day} has no reference.json"
    assert ref.get("presets") == runner.resolved_presets(mod.Config, mod.PRESETS), \
        f"day {day}: presets changed since reference.json; regenerate it"
    assert ref.get("key_metrics", []) == list(getattr(mod, "KEY_METRICS", [])), f"day {day}: KEY_METRICS changed"
    kinds = json.loads(json.dumps(dict(getattr(mod, "METRIC_KINDS", {}))))  # as stored (tuples become lists)
    assert ref.get("metric_kinds", {}) == kinds, f"day {day}: METRIC_KINDS changed"
    assert set(getattr(mod, "KEY_METRICS", [])) <= set(ref["metrics"]), f"day {day}: a KEY_METRIC is not emitted"
    gpu_only = {t.metric for t in curriculum.targets(day) if t.needs}  # absent from a CPU reference by design
    unused = [k for k in getattr(mod, "METRIC_KINDS", {})
              if not fnmatch.filter(ref["metrics"], k) and k not in gpu_only]
    assert not unused, f"day {day}: METRIC_KINDS entries that name no metric: {unused}"


@pytest.mark.parametrize("day", DAYS, ids=[f"day{d:02d}" for d in DAYS])
def test_a_day_imports_only_common(day):
    files = DayFiles(ROOT, day)
    for f in files.dir.glob("*.py"):
        if f.name.startswith("test_"):
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                if n.startswith("days"):
                    assert n.startswith(f"days.{files.name}"), f"{f.relative_to(ROOT)} imports {n}"


@pytest.mark.parametrize("day", DAYS, ids=[f"day{d:02d}" for d in DAYS])
def test_every_target_names_a_metric_the_day_emits(day):
    """A target the run never reports would read "pending" forever: CPU targets must be in the
    reference run's metrics, GPU targets must be emitted by the day's CUDA/gpu-preset code path."""
    files = DayFiles(ROOT, day)
    source, ref = (files.dir / "run.py").read_text(), files.reference_metrics()
    for t in curriculum.targets(day):
        if t.needs:
            assert f'"{t.metric}"' in source, f"day {day}: GPU target {t.metric!r} is emitted nowhere in run.py"
        else:
            assert t.metric in ref, f"day {day}: target {t.metric!r} is not among the reference run's metrics"
