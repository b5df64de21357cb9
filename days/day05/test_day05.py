"""Day 5: finite-difference checks of LayerNorm and GELU, the Jacobians of the notes, the eps trade-off,
and the quick end-to-end run."""

import math
import warnings

import pytest
import torch

from common.lab import numerics as nm
from common.nn.layers import gelu_reference, layer_norm_reference
from common.run import runner
from days.day05 import run


def inputs(rows=6, dim=10, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64).to(dtype) for s in ((rows, dim), (dim,), (dim,))]


@pytest.mark.parametrize("name", ["layer_norm", "gelu"])
def test_float64_check_passes_at_the_suggested_step(name):
    x, w, b = inputs()
    fn = (lambda t: layer_norm_reference(t, w, b)) if name == "layer_norm" else gelu_reference
    f = nm.projected(fn, x, seed=1)
    c = nm.gradient_errors(f, x, nm.suggested_eps(torch.float64), tiny=1e-6)  # floor: ignore ~0 gradients
    assert c.rel_err.max() < nm.THRESHOLDS[torch.float64]


@pytest.mark.parametrize("name", ["layer_norm", "gelu"])
def test_float32_passes_its_threshold_but_not_the_float64_one(name):
    x, w, b = inputs(dtype=torch.float32)
    fn = (lambda t: layer_norm_reference(t, w, b)) if name == "layer_norm" else gelu_reference
    c = nm.gradient_errors(nm.projected(fn, x, seed=1), x, 1e-2, tiny=1e-3)
    assert c.rel_err.max() < nm.THRESHOLDS[torch.float32]
    assert c.rel_err.max() > nm.THRESHOLDS[torch.float64]  # float32 cannot meet float64's bar


def test_gelu_derivative_closed_form_against_finite_differences():
    x = torch.linspace(-4, 4, 33, dtype=torch.float64)
    phi = torch.exp(-x ** 2 / 2) / math.sqrt(2 * math.pi)
    closed = 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * phi  # Phi(x) + x phi(x)
    fd = nm.numerical_grad(lambda t: gelu_reference(t).sum(), x, 1e-5)
    assert torch.allclose(fd, closed, atol=1e-9)


def test_layer_norm_jacobian_matrix_form():
    """J = (1/sigma) (I - 1 1^T / n - xhat xhat^T / n) for one row, no affine."""
    x, n = inputs(1, 7)[0][0], 7
    eps = 1e-5
    sigma = torch.sqrt(x.var(unbiased=False) + eps)
    xhat = (x - x.mean()) / sigma
    closed = (torch.eye(n) - torch.ones(n, n) / n - torch.outer(xhat, xhat) / n) / sigma
    jac = torch.autograd.functional.jacobian(lambda t: layer_norm_reference(t, eps=eps), x)
    assert torch.allclose(jac, closed.double(), atol=1e-10)
    # LayerNorm ignores a shift of the row, and (up to eps) a scaling of it: J 1 = 0, J x ~ 0
    assert torch.allclose(jac @ torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64), atol=1e-12)
    assert (jac @ (x - x.mean())).abs().max() < 1e-4


def test_hand_written_backward_matches_and_planted_bugs_are_caught():
    x, w, _ = inputs()
    f = nm.projected(lambda t: layer_norm_reference(t, w), x, seed=2)
    num = nm.numerical_grad(f, x, 1e-5)
    assert torch.allclose(run.ln_backward(x, w, f.r), nm.autograd_grad(f, x), atol=1e-12)
    assert nm.relative_error(run.ln_backward(x, w, f.r), num, tiny=1e-6).max() < 1e-7
    for drop in ("mean", "variance"):
        assert nm.relative_error(run.ln_backward(x, w, f.r, drop=drop), num).median() > 1e-2


def test_gradcheck_needs_float64():
    for dtype, expected in ((torch.float64, True), (torch.float32, False)):
        x = inputs(dtype=dtype)[0].requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert torch.autograd.gradcheck(gelu_reference, (x,), raise_exception=False) is expected


def test_quick_run(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["gradcheck_float64_all_pass"] == "yes"
    assert m["layer_norm_float64_median_rel_err"] < 1e-8 and m["gelu_float64_median_rel_err"] < 1e-8
    assert m["layer_norm_float32_median_rel_err"] < 1e-2 and m["gelu_float32_median_rel_err"] < 1e-2
    assert m["layer_norm_float32_best_eps"] > m["layer_norm_float64_best_eps"]  # float32 needs a larger step
    assert m["manual_ln_backward_max_rel_err"] < 1e-6
    assert "planted bugs" in (tmp_path / "deliverable.md").read_text()
    for name in ("error_vs_eps", "grad_error_hist_layer_norm", "grad_error_hist_gelu"):
        assert (tmp_path / "plots" / f"day05_{name}.png").is_file()
