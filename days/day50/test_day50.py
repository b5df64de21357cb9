"""Day 50: the decision rule, the candidates read from day 49's metrics, and the wrap's quick run."""

import json

from common.run import runner
from days.day50 import run

M49 = {"win_rate": 0.52, "win_rate_low": 0.49, "win_rate_high": 0.55, "alignment_tax": 0.01, "default_beta": 0.1,
       "win_rate_dpo_0.1": 0.52, "kl_dpo_0.1": 0.3, "tax_dpo_0.1": 0.01, "win_low_dpo_0.1": 0.49,
       "win_rate_dpo_1": 0.51, "kl_dpo_1": 0.1, "tax_dpo_1": 0.0,
       "win_rate_grpo_0": 0.58, "kl_grpo_0": 2.0, "tax_grpo_0": 0.3,
       "win_rate_ppo_0.05": 0.53, "kl_ppo_0.05": 0.4, "tax_ppo_0.05": 0.02}


def test_candidates_read_every_sweep_point():
    c = {(x["method"], x["strength"]): x for x in run.candidates(M49)}
    assert set(c) == {("dpo", 0.1), ("dpo", 1.0), ("grpo", 0.0), ("ppo", 0.05)}
    assert c[("dpo", 0.1)]["low"] == 0.49 and c[("ppo", 0.05)]["low"] == 0.53  # no win_low_ metric: the point


def test_choose_follows_its_rule():
    cands = run.candidates(M49)
    pick = run.choose(cands, max_tax=0.1, min_low=0.5)
    assert (pick["method"], pick["strength"]) == ("ppo", 0.05)  # grpo wins more but pays a 30% tax
    assert run.choose(cands, max_tax=0.5, min_low=0.5)["method"] == "grpo"
    assert run.choose(cands, max_tax=0.1, min_low=0.9)["method"] == "sft"
    tie = [{"method": "a", "strength": 1.0, "win_rate": 0.6, "low": 0.6, "kl": 0.5, "tax": 0.0},
           {"method": "b", "strength": 1.0, "win_rate": 0.6, "low": 0.6, "kl": 0.2, "tax": 0.0}]
    assert run.choose(tie, 0.1, 0.5)["method"] == "b"  # equal win rates: the smaller KL


def test_quick_run_end_to_end(tmp_path):
    out = runner.quick(run, tmp_path)
    m = out["metrics"]
    assert m["chosen_method"] in ("sft", "dpo", "ppo", "grpo")
    assert (tmp_path / "posttraining.yaml").is_file() and (tmp_path / "README_sprint5.md").is_file()
    assert json.loads(json.dumps(m))  # plain values
