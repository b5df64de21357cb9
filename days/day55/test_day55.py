"""Day 55: the regression rule by hand and against the suite, the damage is seeded, and a quick run."""

import pytest
import torch

from common.eval import suite
from common.nn.model import GPT, GPTConfig
from common.run import runner
from days.day55 import run


def test_regressed_by_hand():
    assert run.regressed(0.50, 0.48, True, 0.01) and not run.regressed(0.50, 0.495, True, 0.01)
    assert not run.regressed(0.50, 0.60, True, 0.01)                 # better is never a regression
    assert run.regressed(2.0, 2.1, False, 0.01)                      # bits per byte up 5%
    assert not run.regressed(2.0, 2.01, False, 0.01) and not run.regressed(2.0, 1.5, False, 0.01)


@pytest.mark.parametrize("before,after,higher", [(0.5, 0.3, True), (0.5, 0.505, True), (2.0, 2.5, False),
                                                 (2.0, 1.0, False)])
def test_regressed_agrees_with_the_suite(before, after, higher):
    rec = lambda v: {"tasks": {"t": {"version": 1, "config_hash": "x", "metrics": {"m": v},  # noqa: E731
                                     "higher_is_better": {"m": higher}}}}
    status = suite.compare(rec(before), rec(after), 0.01)[0]["status"]
    assert run.regressed(before, after, higher, 0.01) == (status == "regression")


def test_damage_is_seeded_and_leaves_the_original_alone():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, b = run.damaged(model, 0.1, seed=3), run.damaged(model, 0.1, seed=3)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in before)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert suite.weights_hash(a) != suite.weights_hash(model)


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["exit_first"] == 0 and m["exit_second"] == 0 and m["identical_reruns"] == 1.0
    assert m["exit_damaged"] == (1 if m["regressions_damaged"] else 0) and m["regressed_agrees"] == 1.0
