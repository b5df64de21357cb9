"""common/lab/jacobians.py: every closed form against autograd, plus the structure the notes derive."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

from common.lab import jacobians as jac
from common.nn.layers import gelu_reference

F64 = torch.float64


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("n", [1, 3, 17])
def test_softmax_jacobian_matches_autograd(n):
    z = 2 * randn(n)
    assert torch.allclose(jac.softmax_jacobian(z), jacobian(lambda t: torch.softmax(t, -1), z), atol=1e-14)


def test_softmax_jacobian_batched_and_structured():
    z = 3 * randn(5, 8)
    j = jac.softmax_jacobian(z)
    assert j.shape == (5, 8, 8)
    for b in range(5):
        assert torch.allclose(j[b], jac.softmax_jacobian(z[b]))
    assert torch.allclose(j, j.transpose(-1, -2))
    assert j.sum(-1).abs().max() < 1e-15
    ev = torch.linalg.eigvalsh(j)
    assert ev.min() > -1e-15 and (ev.max(-1).values <= torch.softmax(z, -1).max(-1).values + 1e-15).all()
    assert (torch.linalg.matrix_rank(j) == 7).all()


def test_softmax_vjp_is_jacobian_transpose_times_g():
    z, g = randn(4, 6), randn(4, 6, seed=1)
    expect = (jac.softmax_jacobian(z).transpose(-1, -2) @ g.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(jac.softmax_vjp(torch.softmax(z, -1), g), expect, atol=1e-15)


@pytest.mark.parametrize("n,eps", [(2, 1e-5), (16, 1e-5), (16, 0.5)])
def test_layer_norm_jacobian_matches_autograd(n, eps):
    x, w, b = 3 * randn(n) + 1, randn(n, seed=1), randn(n, seed=2)
    ref = jacobian(lambda t: F.layer_norm(t, (n,), w, b, eps), x)
    assert torch.allclose(jac.layer_norm_jacobian(x, w, eps), ref, atol=1e-12)
    assert torch.allclose(jac.layer_norm_jacobian(x, None, eps), jacobian(lambda t: F.layer_norm(t, (n,), eps=eps), x),
                          atol=1e-12)


def test_layer_norm_jacobian_null_space():
    x, w, eps = randn(3, 10), randn(10, seed=1), 0.1
    j = jac.layer_norm_jacobian(x, w, eps)
    assert (j @ torch.ones(10, dtype=F64)).abs().max() < 1e-14  # shift invariance
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    s = (var + eps).rsqrt()
    xh = (x - mu) * s
    got = (j @ xh.unsqueeze(-1)).squeeze(-1)  # eps breaks scale invariance by exactly this much
    assert torch.allclose(got, s * eps / (var + eps) * w * xh, atol=1e-14)


def test_gelu_jacobian_matches_autograd():
    x = torch.linspace(-5, 5, 21, dtype=F64)
    assert torch.allclose(jac.gelu_jacobian(x), jacobian(gelu_reference, x), atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_grad_matches_autograd(reduction, smoothing):
    z, y = 2 * randn(6, 11), torch.tensor([0, 3, 10, 3, 5, 1])
    zl = z.clone().requires_grad_()
    F.cross_entropy(zl, y, reduction=reduction, label_smoothing=smoothing).backward()
    assert torch.allclose(jac.cross_entropy_grad(z, y, reduction, smoothing), zl.grad, atol=1e-15)


def test_cross_entropy_grad_rows_sum_to_zero_and_rejects_none():
    g = jac.cross_entropy_grad(randn(4, 7), torch.tensor([1, 2, 3, 4]))
    assert g.sum(-1).abs().max() < 1e-15
    with pytest.raises(ValueError):
        jac.cross_entropy_grad(randn(2, 3), torch.tensor([0, 1]), reduction="none")
