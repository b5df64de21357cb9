"""Day 16: HVPs of a model against its explicit Hessian; eigen-solvers; the run end to end."""


import pytest
import torch

from common.lab import curvature as cv
from common.run import runner
from conftest import need_data
from days.day16 import run
from days.day16.run import mlp_problem


def explicit(f, ps):
    return torch.autograd.functional.hessian(lambda flat: f(tuple(cv.unflatten(flat, ps))), cv.flatten(ps).detach())


def test_hvp_is_the_explicit_hessian_times_v_and_symmetric():
    f, ps, loss = mlp_problem(5, 0)
    H = explicit(f, ps)
    torch.testing.assert_close(H, H.T, atol=1e-12, rtol=0)
    P = H.shape[0]
    u, v = torch.randn(P, dtype=torch.float64), torch.randn(P, dtype=torch.float64)
    Hv = cv.hvp(loss, ps, v)
    torch.testing.assert_close(Hv, H @ v, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(cv.hvp_func(f, ps, v), Hv, atol=1e-12, rtol=1e-10)
    assert torch.dot(u, Hv).item() == pytest.approx(torch.dot(v, cv.hvp(loss, ps, u)).item(), rel=1e-10)  # u'Hv = v'Hu
    torch.testing.assert_close(cv.hvp(loss, ps, 3 * u + v), 3 * cv.hvp(loss, ps, u) + Hv)  # linear in v


def test_finite_difference_error_shrinks_like_eps_squared():
    f, ps, loss = mlp_problem(5, 1)
    H = explicit(f, ps)
    v = torch.randn(H.shape[0], dtype=torch.float64)
    e1, e2 = (((cv.hvp_fd(loss, ps, v, eps) - H @ v).norm() / (H @ v).norm()).item() for eps in (1e-2, 1e-3))
    assert e2 < e1 / 30  # O(eps^2): 100x in theory, truncation-dominated at these steps


def test_top_eigenvalue_and_lanczos_match_eigvalsh_on_an_mlp():
    f, ps, loss = mlp_problem(6, 2)
    ev = torch.linalg.eigvalsh(explicit(f, ps))
    mv = lambda u: cv.hvp(loss, ps, u)  # noqa: E731
    assert cv.top_eigenvalue(mv, len(ev), iters=2000, tol=1e-12, dtype=torch.float64) == pytest.approx(
        ev[-1].item(), rel=1e-5)
    torch.testing.assert_close(cv.lanczos(mv, len(ev), k=3, m=len(ev), dtype=torch.float64), ev.flip(0)[:3])


def test_quick_run(tmp_path):
    need_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["hvp_max_err"] < 1e-10 and m["top_eig_rel_err"] < 1e-4 and m["gpt_hvp_func_err"] < 1e-10
    assert m["top_eig_final"] > 0 and m["two_over_lr"] == 4.0
    assert (tmp_path / "deliverable.md").is_file() and (tmp_path / "plots" / "day16_sharpness.png").is_file()
