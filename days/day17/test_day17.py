"""Day 17: stable formulas stay finite where naive ones do not; every guard of the loop fires."""

import math

import pytest
import torch

from common.lab import numerics
from common.run import runner
from common.train import non_finite
from days.day17 import run


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_stable_logsumexp_and_log_softmax_match_torch_at_extremes(dtype):
    z = torch.tensor([[1e4, -1e4, 0.0, 5e3], [-3e4, -3e4, -3e4, -3e4], [0.1, 0.2, 0.3, 0.4]], dtype=dtype)
    assert torch.isfinite(numerics.logsumexp(z)).all() and torch.isfinite(numerics.log_softmax(z)).all()
    torch.testing.assert_close(numerics.logsumexp(z.double()), torch.logsumexp(z.double(), -1))
    torch.testing.assert_close(numerics.log_softmax(z.double()), torch.log_softmax(z.double(), -1))
    assert not torch.isfinite(run.naive_lse(z.float())).all()  # exp(1e4) overflows


def test_all_minus_inf_row_is_minus_inf_not_nan():
    z = torch.full((2, 3), -math.inf)
    assert torch.equal(numerics.logsumexp(z), torch.full((2,), -math.inf))


def test_log_softmax_gradient():
    z = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: numerics.log_softmax(t), (z,))


def test_non_finite_names_the_loss_or_the_first_bad_gradient():
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    assert non_finite(torch.tensor(1.0), m) is None
    assert "loss" in non_finite(torch.tensor(math.nan), m)
    m[1].weight.grad[0, 1] = math.inf
    m[1].bias.grad[0] = math.nan
    assert "gradient of 1.weight" in non_finite(torch.tensor(1.0), m)  # the first offender, by name
    assert non_finite(torch.tensor(1.0), m, check_grads=False) is None


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["stable_failures"] == 0 and m["naive_failures"] > 0
    assert m["guards_as_designed"] == m["guards_total"] == 6
    text = (tmp_path / "deliverable.md").read_text()
    assert "gradient of blocks.0.mlp.fc.weight" in text and "skipped steps [3]" in text
