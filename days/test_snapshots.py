"""The cheap guard against silent drift: every day's quick run against its committed snapshot.

Each built day runs at the nano preset (one Torch thread, as `make snapshot` took it) and every
exact metric must equal `days/dayNN/snapshot.json` to the printed precision; timings are only
ratios. A change to `common/` that moves a day's numbers fails here. When the change is meant,
rewrite the snapshots with `make snapshot N` and the full references with `make reproduce N`
followed by `python -m days.dayNN.run --update-reference` on a clean tree.
"""

import ast
import importlib

import pytest

from common import ROOT
from common.course import reproduce
from common.data import DataError
from common.run import runner
from common.run.dayfiles import DayFiles, built_days
from common.run.tracking import read_metrics
from conftest import missing_data

DAYS = built_days(ROOT)


def trains(day: int) -> bool:
    """Does the day call the training loop (`train(...)` or `ctx.train(...)`) in its run.py?"""
    tree = ast.parse((DayFiles(ROOT, day).dir / "run.py").read_text())
    return any(isinstance(n, ast.Call) and ((isinstance(n.func, ast.Name) and n.func.id == "train") or
                                            (isinstance(n.func, ast.Attribute) and n.func.attr == "train"
                                             and getattr(n.func.value, "id", "") == "ctx"))
               for n in ast.walk(tree))


@pytest.mark.parametrize("day", DAYS, ids=[f"day{d:02d}" for d in DAYS])
def test_quick_run_matches_its_snapshot(day, tmp_path):
    module = importlib.import_module(DayFiles(ROOT, day).module)
    try:
        summary = runner.quick(module, tmp_path)
    except DataError as e:
        missing_data(str(e))
    if trains(day):  # every curve is logged: a day that trains leaves its loss curves for TensorBoard
        names = {r["name"] for r in read_metrics(tmp_path / "logs" / f"day{day:02d}" / summary["run_id"])}
        assert any(n.endswith("train/loss") for n in names), f"day {day} trains but logged no train/loss curve"
    rows = reproduce.check_snapshot(ROOT, day, summary)
    bad = [f"{r['metric']}: snapshot {r['reference']}, now {r['now']} ({r['verdict']})" for r in rows if not r["ok"]]
    assert not bad, f"day {day} drifted from snapshot.json (make snapshot {day} if intended):\n" + "\n".join(bad)


def test_every_metric_kind_is_valid():
    for day in DAYS:
        module = importlib.import_module(DayFiles(ROOT, day).module)
        kinds = getattr(module, "METRIC_KINDS", {})
        for value in kinds.values():  # each declaration must parse
            reproduce.kind_of("x", {"x": value})
