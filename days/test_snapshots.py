"""The cheap guard against silent drift: every day's quick run against its committed snapshot.

Each built day runs at the nano preset (one Torch thread, as `make snapshot` took it) and every
exact metric must equal `days/dayNN/snapshot.json` to the printed precision; timings are only
ratios. A change to `common/` that moves a day's numbers fails here. When the change is meant,
rewrite the snapshots with `make snapshot N` and the full references with `make reproduce N`
followed by `python -m days.dayNN.run --update-reference` on a clean tree.
"""

import importlib

import pytest

from common import ROOT
from common.course import reproduce
from common.data import DataError
from common.run import runner
from common.run.dayfiles import DayFiles, built_days
from conftest import missing_data

DAYS = built_days(ROOT)


@pytest.mark.parametrize("day", DAYS, ids=[f"day{d:02d}" for d in DAYS])
def test_quick_run_matches_its_snapshot(day, tmp_path):
    module = importlib.import_module(DayFiles(ROOT, day).module)
    try:
        summary = runner.quick(module, tmp_path)
    except DataError as e:
        missing_data(str(e))
    rows = reproduce.check_snapshot(ROOT, day, summary)
    bad = [f"{r['metric']}: snapshot {r['reference']}, now {r['now']} ({r['verdict']})" for r in rows if not r["ok"]]
    assert not bad, f"day {day} drifted from snapshot.json (make snapshot {day} if intended):\n" + "\n".join(bad)


def test_every_metric_kind_is_valid():
    for day in DAYS:
        module = importlib.import_module(DayFiles(ROOT, day).module)
        kinds = getattr(module, "METRIC_KINDS", {})
        for value in kinds.values():  # each declaration must parse
            reproduce.kind_of("x", {"x": value})
