"""Day 15: the hand-written gradient and Hessian against autograd, convexity, and the two solvers."""

import torch

from common.run import runner
from days.day15 import run
from days.day15.run import blobs, grad, gradient_descent, hessian, loss, newton


def data(n=100, stretch=2.0, seed=0):
    return blobs(n, 3, 1.0, seed, stretch=stretch)


def test_gradient_matches_autograd():
    X, y = data()
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(loss(w, X, y, 0.01), w)
    torch.testing.assert_close(grad(w.detach(), X, y, 0.01), g, atol=1e-12, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda v: loss(v, X, y, 0.01), (w,))


def test_hessian_matches_autograd_and_is_psd():
    X, y = data()
    w = torch.randn(4, dtype=torch.float64)
    H = torch.autograd.functional.hessian(lambda v: loss(v, X, y, 0.01), w)
    torch.testing.assert_close(hessian(w, X, y, 0.01), H, atol=1e-12, rtol=1e-10)
    assert torch.linalg.eigvalsh(hessian(w, X, y, 0.0)).min() >= -1e-12      # PSD without L2
    assert torch.linalg.eigvalsh(hessian(w, X, y, 0.01)).min() >= 0.01 - 1e-12  # >= lam with L2


def test_loss_is_convex_along_random_lines():
    X, y = data()
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        w0, d = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
        ts = torch.linspace(-5, 5, 101, dtype=torch.float64)
        f = torch.stack([loss(w0 + t * d, X, y, 0.0) for t in ts])
        second_diff = f[:-2] - 2 * f[1:-1] + f[2:]
        assert (second_diff >= -1e-12).all()
        assert second_diff.max() > 0  # and not linear: a test that can fail


def test_gd_and_newton_reach_the_same_optimum():
    X, y = data(200)
    w_gd, h_gd = gradient_descent(X, y, 1e-3, 1e-9, 20000)
    w_nt, h_nt = newton(X, y, 1e-3, 1e-9, 50)
    assert h_gd[-1][1] < 1e-9 and h_nt[-1][1] < 1e-9
    torch.testing.assert_close(w_gd, w_nt, atol=1e-7, rtol=0)
    assert len(h_nt) - 1 <= 10 < len(h_gd) - 1
    gn = [h[1] for h in h_nt]
    assert gn[-1] < gn[-2] ** 1.5  # quadratic phase: the last step squares (at least) the error


def test_separable_data_has_no_finite_optimum():
    X, y = blobs(100, 2, 8.0, 0, std=0.5)
    _, h = gradient_descent(X, y, 0.0, 0.0, 2000)
    assert h[2000][2] > h[200][2] > h[20][2]  # |w| keeps growing
    assert h[2000][0] < h[200][0] < h[20][0] and h[2000][0] < 1e-3  # loss -> 0


def test_quick_run(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["solution_dist"] < 1e-6 and m["grad_norm_newton"] < 1e-8 and m["iters_newton"] < 10
    assert m["hess_min_eig"] > 0 and m["lda_dist"] < 0.2
    assert (tmp_path / "deliverable.md").is_file()
    for name in ("convergence", "separable"):
        assert (tmp_path / "plots" / f"day15_{name}.png").is_file()
