"""Day 60: the gate rule on hand-made task facts, the facts read from day 57's metrics, and the wrap's quick run."""

import pytest

from common.run import runner
from days.day60 import run

FACTS = [{"task": "a", "decided": 0.5, "ci_width": 0.05, "spread": 0.10},      # in
         {"task": "b", "decided": 0.95, "ci_width": 0.05, "spread": 0.10},     # decided in advance
         {"task": "c", "decided": 0.5, "ci_width": 0.30, "spread": 0.10},      # too noisy
         {"task": "d", "decided": 0.5, "ci_width": 0.05, "spread": 0.001},     # models all alike
         {"task": "bpb", "decided": None, "ci_width": 0.2, "spread": 14.0},    # no decided share
         {"task": "missing", "decided": None, "ci_width": None, "spread": None}]


def test_gate_follows_its_rule():
    assert run.gate(FACTS, 0.9, 0.15, 0.02) == ["a"]
    assert run.gate(FACTS, 0.9, 0.25, 0.02) == ["a", "bpb"]
    assert run.gate(FACTS, 0.99, 0.15, 0.0) == ["a", "b", "d"]


def test_task_facts_read_day57_metrics():
    f = {x["task"]: x for x in run.task_facts({"decided_share_instruct": 0.8, "ci_width_instruct": 0.03,
                                                "spread_instruct": 0.16})}
    assert f["instruct"] == {"task": "instruct", "decided": 0.8, "ci_width": 0.03, "spread": 0.16}
    assert f["story_xsum"]["ci_width"] is None


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path):
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["gate_tasks"] >= 0 and (tmp_path / "evaluation.yaml").is_file()
    assert (tmp_path / "README_sprint6.md").is_file()
