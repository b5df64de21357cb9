"""common/lab/curvature.py: HVPs against explicit Hessians, eigen-solvers against eigvalsh."""

import pytest
import torch

from common.lab import curvature as cv


def quadratic(n=12, seed=0):
    """f(x) = 1/2 x^T A x + b^T x with a symmetric indefinite A: H = A everywhere."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = (M + M.T) / 2
    b = torch.randn(n, generator=g, dtype=torch.float64)
    x = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
    return A, b, x, (lambda: 0.5 * x @ A @ x + b @ x)


def tiny_mlp(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(2, (16,))
    names = [n for n, _ in model.named_parameters()]

    def f(ps):  # pure function of the parameter tuple
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, dict(zip(names, ps)), (x,)), y)
    return model, cv.params_of(model), f, (lambda: f(tuple(model.parameters())))


def test_flatten_unflatten_roundtrip():
    ts = [torch.randn(2, 3), torch.randn(4), torch.randn(1, 1, 2)]
    flat = cv.flatten(ts)
    assert flat.shape == (12,)
    for a, b in zip(ts, cv.unflatten(flat, ts)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        cv.unflatten(torch.zeros(11), ts)


def test_hvp_of_a_quadratic_is_A_v():
    A, _, x, loss = quadratic()
    v = torch.randn(12, dtype=torch.float64)
    torch.testing.assert_close(cv.hvp(loss, [x], v), A @ v)
    torch.testing.assert_close(cv.hessian_from_hvp(lambda u: cv.hvp(loss, [x], u), 12), A)


def test_hvp_routes_agree_with_the_explicit_hessian_of_an_mlp():
    model, params, f, loss = tiny_mlp()
    P = sum(p.numel() for p in params)
    H = torch.autograd.functional.hessian(lambda flat: f(tuple(cv.unflatten(flat, params))),
                                          cv.flatten([p.detach() for p in params]))
    assert H.shape == (P, P)
    for seed in range(3):
        v = torch.randn(P, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        torch.testing.assert_close(cv.hvp(loss, params, v), H @ v, atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(cv.hvp_func(f, params, v), H @ v, atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(cv.hvp_fd(loss, params, v, eps=1e-5), H @ v, atol=1e-6, rtol=1e-5)
    before = cv.flatten([p.detach() for p in params]).clone()
    cv.hvp_fd(loss, params, torch.ones(P, dtype=torch.float64))
    torch.testing.assert_close(cv.flatten([p.detach() for p in params]), before, atol=1e-15, rtol=0)


def test_power_iteration_and_lanczos_match_eigvalsh():
    A, _, x, loss = quadratic(n=30, seed=1)
    ev = torch.linalg.eigvalsh(A)
    mv = lambda u: A @ u  # noqa: E731
    lam, v, hist = cv.power_iteration(mv, 30, iters=2000, tol=1e-12, dtype=torch.float64)
    big = ev[ev.abs().argmax()]
    assert lam == pytest.approx(float(big), rel=1e-6)
    torch.testing.assert_close(A @ v, lam * v, atol=1e-3, rtol=0)
    top1 = cv.top_eigenvalue(mv, 30, iters=3000, tol=1e-13, dtype=torch.float64)
    assert top1 == pytest.approx(float(ev[-1]), rel=1e-5)
    top = cv.lanczos(mv, 30, k=4, m=30, dtype=torch.float64)
    torch.testing.assert_close(top, ev.flip(0)[:4], atol=1e-8, rtol=1e-8)


def test_top_eigenvalue_handles_a_dominant_negative_eigenvalue():
    A = torch.diag(torch.tensor([-10.0, 3.0, 1.0, 0.5], dtype=torch.float64))
    lam, _, _ = cv.power_iteration(lambda u: A @ u, 4, iters=500, tol=1e-12, dtype=torch.float64)
    assert lam == pytest.approx(-10.0, rel=1e-6)
    top1 = cv.top_eigenvalue(lambda u: A @ u, 4, iters=2000, tol=1e-14, dtype=torch.float64)
    assert top1 == pytest.approx(3.0, rel=1e-5)
