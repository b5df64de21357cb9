"""Day 1: attention shapes and masks against PyTorch, the softmax / cross-entropy gradients of the
notes, the 1/sqrt(d) scaling, and the quick end-to-end run."""

import math

import pytest
import torch
import torch.nn.functional as F

from common.nn.attention import attention_reference, masked_softmax
from common.run import runner
from days.day01 import run

CFG = run.Config(seq_len=8, head_dim=8)


@pytest.mark.parametrize("i", range(len(run.function_cases(CFG, torch.device("cpu")))))
def test_every_case_matches_torch_sdpa(i):
    torch.manual_seed(i)
    case, _, q, k, v, kw, theirs = run.function_cases(CFG, torch.device("cpu"))[i]
    ours = attention_reference(q, k, v, **kw)
    assert ours.shape == q.shape, case  # out (B, H, T, D): T queries, D from v
    assert torch.allclose(ours, theirs(), atol=1e-5), case


def test_mha_matches_torch_multihead_attention_in_every_mask_setting():
    torch.manual_seed(0)
    rows = run.mha_rows(CFG, torch.device("cpu"))
    assert len(rows) == 8 and {r["mask"] for r in rows} == {"none", "causal", "padding", "causal & padding"}
    assert max(r["max abs err vs nn.MultiheadAttention"] for r in rows) <= 1e-5


def test_checks_pass_and_their_contrasts_fail():
    torch.manual_seed(0)
    rows, leak = run.checks(CFG, torch.device("cpu"))
    assert leak == 0.0
    by = {r["check"]: r["value"] for r in rows}
    assert all(v > 1e-3 for c, v in by.items() if "no mask" in c)  # without the mask the future leaks in
    assert by["total attention weight on padded keys"] == 0.0
    assert by["NaN count with a fully masked row, ours (both backends)"] == 0
    assert by["NaN count with a fully masked row, naive softmax(masked_fill(-inf))"] == CFG.seq_len
    assert all(v == 0 for c, v in by.items() if "ours (row max" in c)
    assert all(v > 0 for c, v in by.items() if "naive exp" in c)


def test_softmax_jacobian_is_diag_p_minus_p_pT():
    z = torch.randn(6, dtype=torch.float64)
    p = torch.softmax(z, -1)
    jac = torch.autograd.functional.jacobian(lambda t: masked_softmax(t), z)
    assert torch.allclose(jac, torch.diag(p) - torch.outer(p, p), atol=1e-12)
    assert torch.allclose(jac.sum(0), torch.zeros(6, dtype=torch.float64), atol=1e-12)  # weights sum to 1


def test_cross_entropy_gradient_is_p_minus_y():
    z = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([3, 0, 9, 3])
    F.cross_entropy(z, y, reduction="sum").backward()
    assert torch.allclose(z.grad, torch.softmax(z.detach(), -1) - F.one_hot(y, 10).double(), atol=1e-12)


def test_masking_enters_the_logits_not_the_weights():
    """-inf on the logits before the softmax renormalises over the kept keys; zeroing weights after does not."""
    z, keep = torch.randn(5), torch.tensor([True, True, False, True, False])
    p = masked_softmax(z, keep)
    assert torch.allclose(p[keep], torch.softmax(z[keep], -1)) and (p[~keep] == 0).all()
    assert (torch.softmax(z, -1) * keep).sum() < 1  # the wrong way loses probability mass


@pytest.mark.parametrize("d", [16, 256])
def test_scaling_by_one_over_sqrt_d_keeps_score_variance_near_one(d):
    g = torch.Generator().manual_seed(d)
    q, k = torch.randn(4000, d, generator=g), torch.randn(4000, d, generator=g)
    raw = (q * k).sum(-1)  # a sum of d products of unit-variance terms: variance d
    assert abs(raw.var().item() / d - 1) < 0.1
    assert abs((raw / math.sqrt(d)).var().item() - 1) < 0.1


def test_heatmap_head_is_causal_and_normalised(tmp_path):
    class Ctx:
        seed = 0
        plot_path = staticmethod(lambda what: tmp_path / f"{what}.png")

    path, share, above = run.heatmap(run.Config(), Ctx)
    assert path.is_file() and above == 0.0 and 0.5 < share <= 1.0


def test_quick_run(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["mha_max_abs_err"] <= 1e-5 and m["sdpa_max_abs_err"] <= 1e-5 and m["causal_leak"] == 0.0
    assert m["manual_over_sdpa_time"] > 0
    text = (tmp_path / "deliverable.md").read_text()
    assert "nn.MultiheadAttention" in text and "| mha_max_abs_err " in text
    assert (tmp_path / "plots" / "day01_attention_heatmap.png").is_file()
