"""Day 11: the hand-derived Jacobians against autograd and gradcheck, the structure checks able to
catch a wrong formula, and the quick end-to-end run."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

from common.lab import jacobians as jac
from common.run import runner
from days.day11 import run

F64 = torch.float64


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("n", [4, 64])
def test_softmax_and_layer_norm_jacobians_match_autograd(n):
    z, x, w = 3 * randn(n), 2 * randn(n, seed=1) + 0.5, randn(n, seed=2)
    assert (jac.softmax_jacobian(z) - jacobian(lambda t: torch.softmax(t, -1), z)).abs().max() < 1e-14
    ref = jacobian(lambda t: F.layer_norm(t, (n,), w, None, 1e-5), x)
    assert (jac.layer_norm_jacobian(x, w, 1e-5) - ref).abs().max() < 1e-12


def test_manual_vjp_passes_gradcheck_as_a_custom_backward():
    class Softmax(torch.autograd.Function):  # forward by torch, backward by the notes' formula
        @staticmethod
        def forward(ctx, z):
            p = torch.softmax(z, -1)
            ctx.save_for_backward(p)
            return p

        @staticmethod
        def backward(ctx, g):
            (p,) = ctx.saved_tensors
            return jac.softmax_vjp(p, g)

    assert torch.autograd.gradcheck(Softmax.apply, (randn(3, 5).requires_grad_(),))


def test_structure_check_fails_for_a_wrong_formula():
    z = 2 * randn(8)
    assert run.structure(z, 1e-12)["pass"] == "pass"
    p = torch.softmax(z, -1)
    wrong = torch.diag(p) - torch.outer(p, p.flip(0))  # a plausible typo: not symmetric, rows do not sum to 0
    assert (wrong - wrong.T).abs().max() > 1e-3
    assert (wrong - jacobian(lambda t: torch.softmax(t, -1), z)).abs().max() > 1e-3


def test_softmax_jacobian_eigenvalues_interlace_the_probabilities():
    # diag(p) - p p^T is a rank-one downdate of diag(p): its eigenvalues lie between consecutive sorted p's
    p = torch.softmax(randn(6), -1)
    ev = torch.linalg.eigvalsh(torch.diag(p) - torch.outer(p, p))
    ps = p.sort().values
    assert abs(ev[0]) < 1e-15
    assert ((ev[1:] >= ps[:-1] - 1e-15) & (ev[1:] <= ps[1:] + 1e-15)).all()


def test_layer_norm_jacobian_is_singular_only_without_eps():
    x = randn(10)
    assert torch.linalg.matrix_rank(jac.layer_norm_jacobian(x, None, 0.0)) == 8  # 1 and xh both in the null space
    assert torch.linalg.matrix_rank(jac.layer_norm_jacobian(x, None, 1.0)) == 9  # eps lifts the xh direction


def test_quick_run(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["all_pass"] == "yes" and m["checks_passed"] == m["checks_total"]
    assert m["softmax_jac_max_err"] < 1e-14 and m["layernorm_jac_max_err"] < 1e-12
    assert (tmp_path / "deliverable.md").exists()
    assert (tmp_path / "plots" / "day11_softmax_jacobian.png").exists()
    assert (tmp_path / "plots" / "day11_layernorm_jacobian.png").exists()
