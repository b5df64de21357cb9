"""Tests of common/lab/numerics.py: finite differences against closed forms and torch.autograd.gradcheck."""

import doctest
import math

import pytest
import torch

from common.lab import numerics as nm


def x64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_numerical_grad_matches_closed_form():
    x = x64(3, 5)
    g = nm.numerical_grad(lambda t: torch.sin(t).sum(), x, eps=1e-5)
    assert g.shape == x.shape and g.dtype == torch.float64
    assert torch.allclose(g, torch.cos(x), atol=1e-9)


def test_central_difference_is_exact_for_quadratics_and_leaves_x_alone():
    x = x64(4)
    before = x.clone()
    g = nm.numerical_grad(lambda t: (3 * t ** 2 + t).sum(), x, eps=1e-2)  # truncation term f''' = 0
    assert torch.allclose(g, 6 * x + 1, atol=1e-10)
    assert torch.equal(x, before)


def test_step_below_half_an_ulp_gives_zero_not_inf():
    x = torch.tensor([1.0], dtype=torch.float32)
    assert nm.numerical_grad(lambda t: (t * 5).sum(), x, eps=1e-9).item() == 0.0  # 1 + 1e-9 == 1 in float32


def test_relative_error_properties():
    a, b = x64(100, seed=1), x64(100, seed=2)
    e = nm.relative_error(a, b)
    assert torch.equal(e, nm.relative_error(b, a))  # symmetric
    assert (e >= 0).all() and (e <= 2).all()
    assert (nm.relative_error(a, a) == 0).all()
    assert nm.relative_error(torch.zeros(3), torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]  # no NaN
    assert nm.relative_error(torch.tensor([1e-13]), torch.tensor([0.0]), tiny=1e-12).item() == pytest.approx(0.1)


def test_projected_gradient_is_the_vector_jacobian_product():
    x = x64(2, 3)
    fn = lambda t: torch.tanh(t) * t.sum(-1, keepdim=True)  # noqa: E731  couples the elements of a row
    f = nm.projected(fn, x, seed=3)
    _, vjp = torch.autograd.functional.vjp(fn, x, f.r)
    assert torch.allclose(nm.autograd_grad(f, x), vjp, atol=1e-12)
    state = torch.get_rng_state()
    nm.projected(fn, x, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is not consumed


def test_gradient_errors_pass_correct_and_flag_wrong_gradients():
    x = x64(4, 6)
    f = nm.projected(torch.tanh, x)
    good = nm.gradient_errors(f, x, eps=nm.suggested_eps(torch.float64))
    assert good.stats(1e-7)["frac_above"] == 0 and good.stats(1e-7)["median"] < 1e-9
    wrong = nm.gradient_errors(f, x, eps=1e-6, analytic=1.01 * good.analytic)
    assert wrong.rel_err.median().item() == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert wrong.stats(1e-7)["frac_above"] == 1.0


def test_directional_check_agrees_and_catches_a_bug():
    x = x64(8, 16)
    f = nm.projected(torch.nn.functional.softplus, x)
    assert nm.directional_errors(f, x, 1e-5, n_dirs=6, seed=1).max() < 1e-8
    g = nm.autograd_grad(f, x).clone()
    g[3, 5] += 0.5  # one wrong element: a random direction still sees it
    assert nm.directional_errors(f, x, 1e-5, n_dirs=6, analytic=g, seed=1).min() > 1e-3


class WrongSquare(torch.autograd.Function):
    """x^2 with a backward that is off by 10%."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2.2 * x * g


def test_agrees_with_torch_gradcheck():
    x = x64(5).requires_grad_()
    good, bad = (lambda t: t.exp() * t), WrongSquare.apply
    assert torch.autograd.gradcheck(good, (x,))
    assert not torch.autograd.gradcheck(bad, (x,), raise_exception=False)
    eps = nm.suggested_eps(torch.float64)
    assert nm.gradient_errors(nm.projected(good, x), x, eps).rel_err.max() < nm.THRESHOLDS[torch.float64]
    assert nm.gradient_errors(nm.projected(bad, x), x, eps).rel_err.min() > 0.05


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_error_is_v_shaped_in_eps(dtype):
    """Truncation wins at large steps, round-off at small ones; the suggested step beats both ends."""
    x = x64(64).to(dtype)
    f = nm.projected(torch.sin, x)
    err = {e: nm.gradient_errors(f, x, e).rel_err.median().item() for e in (1e-1, nm.suggested_eps(dtype), 1e-9)}
    mid = err[nm.suggested_eps(dtype)]
    assert mid < err[1e-1] and mid < err[1e-9] and mid < nm.THRESHOLDS[dtype]
    # the error model: truncation ~ eps^2 |f'''| / 6, relative to |f'| (f = sin: f''' = -f')
    assert err[1e-1] == pytest.approx(1e-2 / 6, rel=0.05)


def test_best_eps_and_suggested_eps():
    assert nm.best_eps({1e-2: 3.0, 1e-4: 1.0, 1e-6: 2.0}) == 1e-4
    assert nm.best_eps({1e-2: 1.0, 1e-4: 1.0}) == 1e-2  # ties: the larger, safer step
    assert nm.suggested_eps(torch.float64) == pytest.approx(math.pow(2.0 ** -52, 1 / 3))
    assert nm.suggested_eps(torch.float32, scale=10) == pytest.approx(10 * math.pow(2.0 ** -23, 1 / 3))


def test_docstring_examples():
    assert doctest.testmod(nm).failed == 0
