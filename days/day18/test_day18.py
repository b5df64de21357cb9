"""Day 18: the cross-entropy gradient against autograd and gradcheck, its properties, the
finite-difference trade-off the day measures, and the quick end-to-end run."""

import pytest
import torch
import torch.nn.functional as F

from common.lab import jacobians as jac
from common.lab import numerics as nm
from common.run import runner
from days.day18 import run

F64 = torch.float64


def logits(b, k, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(b, k, generator=g, dtype=F64), torch.randint(0, k, (b,), generator=g)


@pytest.mark.parametrize("b,k", [(1, 2), (7, 13), (16, 1000)])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_grad_matches_cross_entropy_backward(b, k, smoothing):
    z, y = logits(b, k)
    zl = z.clone().requires_grad_()
    F.cross_entropy(zl, y, label_smoothing=smoothing).backward()
    assert (jac.cross_entropy_grad(z, y, "mean", smoothing) - zl.grad).abs().max() < 1e-16 * k


def test_grad_as_custom_backward_passes_gradcheck():
    y = torch.tensor([2, 0, 4])

    class CE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return F.cross_entropy(z, y)

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            return g * jac.cross_entropy_grad(z, y)

    assert torch.autograd.gradcheck(CE.apply, (logits(3, 5)[0].requires_grad_(),))


def test_forgetting_the_batch_mean_is_caught():
    z, y = logits(4, 6)
    zl = z.clone().requires_grad_()
    F.cross_entropy(zl, y).backward()
    wrong = jac.cross_entropy_grad(z, y, "sum")  # the classic bug: no 1/B
    assert (wrong - zl.grad).abs().max() > 1e-2
    assert torch.allclose(wrong / 4, zl.grad)


def test_gradient_properties():
    z, y = logits(5, 9)
    g = jac.cross_entropy_grad(z, y, "sum")
    assert g.sum(-1).abs().max() < 1e-15                     # softmax and onehot both sum to 1
    assert (g.gather(1, y[:, None]) < 0).all()               # the true class is pushed up ...
    mask = torch.ones_like(g, dtype=torch.bool).scatter(1, y[:, None], False)
    assert (g[mask] > 0).all()                               # ... every other class down
    assert (g.abs() <= 1).all()


def test_third_derivative_used_by_the_error_bound():
    z, y = logits(2, 4)
    b, i, h = 1, 2, 1e-3
    # numeric third derivative along coordinate (b, i) vs p (1 - p)(1 - 2 p) / B
    e = torch.zeros_like(z)
    e[b, i] = 1.0
    L = lambda t: float(F.cross_entropy(z + t * e, y))  # noqa: E731
    num = (L(2 * h) - 2 * L(h) + 2 * L(-h) - L(-2 * h)) / (2 * h ** 3)
    p = torch.softmax(z, -1)[b, i]
    assert abs(num - float(p * (1 - p) * (1 - 2 * p) / 2)) < 1e-5


def test_error_bound_is_tight_for_truncation_and_holds_for_round_off():
    z, y = logits(3, 6)
    exact, u = jac.cross_entropy_grad(z, y), torch.finfo(F64).eps
    ratio = {}
    for eps in (1e-2, 1e-12):
        num = nm.numerical_grad(lambda t: F.cross_entropy(t, y), z, eps)
        ratio[eps] = (num - exact).abs() / run.error_bound(z, y, eps, u)
    assert ((ratio[1e-2] - 1).abs() < 1e-2).all()  # eps^2 L'''/6 is the leading term of the truncation error
    assert ratio[1e-12].max() <= 1 and ratio[1e-12].median() > 1e-2  # round-off: below the bound, not far below


def test_float64_beats_float32_at_their_best_steps():
    z, y = logits(2, 5)
    exact = jac.cross_entropy_grad(z, y)
    err = {}
    for dt in (torch.float64, torch.float32):
        num = nm.numerical_grad(lambda t: F.cross_entropy(t, y), z.to(dt), nm.suggested_eps(dt))
        err[dt] = nm.relative_error(num, exact, 1e-3 * exact.abs().max().item()).median().item()
    assert err[torch.float64] < 1e-8 < 1e-6 < err[torch.float32] < 1e-3


def test_quick_run(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["ce_grad_max_err"] < 1e-15
    assert 1e-7 <= m["best_eps_float64"] <= 1e-4 and 1e-4 <= m["best_eps_float32"] <= 1e-1
    assert m["min_median_rel_err_float64"] < 1e-8 and m["min_median_rel_err_float32"] < 1e-3
    assert (tmp_path / "deliverable.md").exists()
    assert (tmp_path / "plots" / "day18_error_vs_eps.png").exists()
