"""Day 45: GAE and GRPO's advantages by hand and against the library, and a quick run."""

import pytest
import torch

from common.run import runner
from common.train import alignment
from days.day45 import run


def test_gae_by_hand_closed_forms_and_library():
    r, v = [0.0, 0.0, 1.0], [0.2, 0.4, 0.5]
    # lambda = 1, gamma = 1: A_t = (sum of rewards from t) - V_t (Monte Carlo return minus the baseline)
    assert run.gae_by_hand(r, v, 1.0, 1.0) == pytest.approx([1 - 0.2, 1 - 0.4, 1 - 0.5])
    # lambda = 0: A_t = delta_t = r_t + V_{t+1} - V_t (one-step TD error)
    assert run.gae_by_hand(r, v, 1.0, 0.0) == pytest.approx([0.4 - 0.2, 0.5 - 0.4, 1 - 0.5])
    g = torch.Generator().manual_seed(0)
    rr, vv = torch.randn(6, generator=g), torch.randn(6, generator=g)
    lib, _ = alignment.gae(rr[None], vv[None], torch.ones(1, 6, dtype=torch.bool), 0.9, 0.8)
    assert run.gae_by_hand(rr.tolist(), vv.tolist(), 0.9, 0.8) == pytest.approx(lib[0].tolist(), abs=1e-5)


def test_group_advantages_by_hand_and_library():
    assert run.group_advantages([1.0, 0.0, 0.0, 1.0]) == pytest.approx([1, -1, -1, 1], abs=1e-5)
    assert run.group_advantages([1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]  # nothing to learn from a unanimous group
    r = torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0, 1.0]])
    assert run.group_advantages(r[0].tolist()) == pytest.approx(alignment.grpo_advantages(r)[0].tolist(), abs=1e-6)
    assert sum(run.group_advantages([0.0, 1.0, 0.0])) == pytest.approx(0.0, abs=1e-6)


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    for algo in ("sft", "ppo", "grpo"):
        assert 0 <= m[f"reward_{algo}"] <= 1
    assert m["reward_gain_ppo"] == pytest.approx(m["reward_ppo"] - m["reward_sft"], abs=2e-4)
    assert abs(m["kl_ppo"]) < 50 and abs(m["kl_grpo"]) < 50
