"""Day 12: the update rules equal torch.optim, the schedule is what we say, and the run works."""

import math

import pytest
import torch

from common.run import runner
from common.train import TrainConfig, lr_at
from common.train.optim import ScratchOptimizer
from days.day12 import run


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw"])
def test_each_rule_matches_torch(name):
    assert run.match_torch(name, 100) <= 1e-10


def test_adam_first_step_is_lr_times_sign():
    """After one step, m_hat = g and v_hat = g^2, so Adam moves every coordinate by lr (up to eps)."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    opt = ScratchOptimizer([p], "adam", lr=0.1)
    p.grad = torch.tensor([0.5, -3.0, 1e-3], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9, 2.9], dtype=torch.float64), atol=1e-5, rtol=0)


def test_cosine_schedule_closed_form():
    c = TrainConfig(max_iters=200, lr=1.0, min_lr=0.1, warmup_iters=20, schedule="cosine")
    for t in (20, 65, 110, 155, 199):
        expected = 0.1 + 0.5 * (1 + math.cos(math.pi * (t - 20) / 180)) * 0.9
        assert lr_at(t, c) == pytest.approx(expected)
    c.schedule = "constant"
    assert [lr_at(t, c) for t in (0, 19, 20, 199)] == pytest.approx([0.05, 1.0, 1.0, 1.0])


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    assert s["metrics"]["all_match"] is True and s["metrics"]["max_param_diff"] <= 1e-10
    for name in ("loss_by_optimizer", "loss_vs_steps", "lr_schedule"):
        assert (tmp_path / "plots" / f"day12_{name}.png").is_file()
