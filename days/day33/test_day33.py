"""Day 33: the window mask by hand, the band against the mask, chunked linear attention against its
quadratic form and its recurrence, the crossover in closed form, and a quick end-to-end run."""

import math
import re

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from common.nn.attention import (
    attention_reference,
    causal_mask,
    elu_feature_map,
    linear_attention,
    linear_attention_reference,
    sliding_window_attention,
    window_mask,
)
from common.nn.model import GPT, flops_per_token, gpt_config
from common.run import runner
from days.day33 import run


def qkv(B=2, H=4, Hkv=2, T=70, D=8, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, h, T, D, generator=g).requires_grad_(grad) for h in (H, Hkv, Hkv)]


@pytest.mark.parametrize("T,S,window,n_global", [(6, 6, 3, 1), (9, 9, 2, 0), (3, 8, 4, 2), (5, 5, 1, 5), (4, 4, 9, 0)])
def test_window_mask_matches_the_rule_by_hand(T, S, window, n_global):
    keep = window_mask(T, S, window, n_global)
    assert keep.shape == (T, S) and keep.dtype == torch.bool
    for i in range(T):
        p = S - T + i  # absolute position of query i (bottom-right, as with a KV cache)
        for j in range(S):
            assert bool(keep[i, j]) == (j <= p and (p - j < window or j < n_global)), (i, j)


def test_window_mask_edge_cases():
    assert torch.equal(window_mask(7, window=None), causal_mask(7))
    assert torch.equal(window_mask(7, window=7), causal_mask(7))  # a window as long as the sequence is no window
    assert window_mask(7, window=1).int().sum().item() == 7  # each query sees itself only
    assert window_mask(5, window=2, n_global=1).int().tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0],
                                                                   [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]]


@pytest.mark.parametrize("window,n_global", [(1, 0), (5, 2), (16, 3), (33, 0), (80, 4)])
def test_banded_window_equals_the_masked_one_forward_and_backward(window, n_global):
    a, b = qkv(grad=True), qkv(grad=True)
    masked = attention_reference(*a, mask=window_mask(70, 70, window, n_global))
    banded = sliding_window_attention(*b, window, n_global)
    torch.testing.assert_close(banded, masked, atol=2e-6, rtol=1e-5)
    dout = torch.randn_like(masked)
    masked.backward(dout)
    banded.backward(dout)
    for x, y in zip(a, b):
        torch.testing.assert_close(y.grad, x.grad, atol=1e-5, rtol=1e-4)


class LargestTensor(TorchDispatchMode):
    """Records the most elements of any tensor an op makes inside the block."""

    def __init__(self):
        super().__init__()
        self.most = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.most = max(self.most, t.numel())
        return out


def test_banded_window_never_builds_a_length_squared_tensor():
    T, w, g = 512, 16, 2
    q, k, v = qkv(B=1, H=1, Hkv=1, T=T, D=4)
    with LargestTensor() as band:
        sliding_window_attention(q, k, v, w, g, attn_fn=attention_reference)
    with LargestTensor() as full:
        attention_reference(q, k, v, mask=window_mask(T, T, w, g))
    assert full.most >= T * T
    assert band.most <= max(T * 4, w * (2 * w + g))  # q, k, v or output, or one chunk's (w, 2w + g) scores


@pytest.mark.parametrize("chunk", [1, 7, 64, 500])
def test_linear_chunked_equals_quadratic_forward_and_backward(chunk):
    a, b = qkv(T=150, grad=True), qkv(T=150, grad=True)
    ref, out = linear_attention_reference(*a), linear_attention(*b, chunk=chunk)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    dout = torch.randn_like(ref)
    ref.backward(dout)
    out.backward(dout)
    for x, y in zip(a, b):
        torch.testing.assert_close(y.grad, x.grad, atol=1e-4, rtol=1e-4)


def test_linear_attention_is_the_recurrence_over_a_fixed_state():
    """out_i = phi(q_i) S_i / phi(q_i).z_i with S_i = S_{i-1} + phi(k_i) v_i^T, z_i = z_{i-1} + phi(k_i): an RNN."""
    q, k, v = qkv(B=1, H=2, Hkv=2, T=40, D=5)
    fq, fk = elu_feature_map(q[0]), elu_feature_map(k[0])  # (H, T, D)
    S, z, outs = torch.zeros(2, 5, 5), torch.zeros(2, 5), []
    for i in range(40):
        S = S + fk[:, i, :, None] * v[0, :, i, None, :]  # (H, D, D)
        z = z + fk[:, i]
        outs.append((fq[:, i, None, :] @ S)[:, 0] / (fq[:, i] * z).sum(-1, keepdim=True))
    torch.testing.assert_close(linear_attention(q, k, v, chunk=8)[0], torch.stack(outs, 1), atol=1e-5, rtol=1e-5)


def test_linear_attention_is_causal():
    q, k, v = qkv(T=96)
    k2, v2 = k.clone(), v.clone()
    k2[..., 60:, :] += 4.0
    v2[..., 60:, :] *= -2.0
    torch.testing.assert_close(linear_attention(q, k2, v2, 32)[..., :60, :], linear_attention(q, k, v, 32)[..., :60, :])


def test_crossover_length_closed_form():
    for n_layer, n_embd, vocab in ((2, 128, 65), (4, 256, 1000), (1, 32, 65)):
        cfg = gpt_config("baby", n_layer=n_layer, n_embd=n_embd, n_head=4, vocab_size=vocab, pos="rope")
        t_star = run.crossover_length(cfg)
        assert t_star == pytest.approx(6 * n_embd + vocab / (2 * n_layer))  # 24 C^2 L + 2 V C = 4 C L T*
        assert run.attention_share(cfg, t_star) == pytest.approx(0.5)
        assert run.attention_share(cfg, 2 * t_star, keys_fraction=0.5) == pytest.approx(0.5)
        fwd = flops_per_token(cfg, 3000, training=False)  # the share is attention's 4 T C L over the forward
        assert run.attention_share(cfg, 3000) == pytest.approx(4 * 3000 * n_embd * n_layer / fwd)


def test_crossover_length_of_a_real_model_counts_its_flops():
    cfg = gpt_config("nano", pos="rope", attn_backend="manual")  # the counter has no formula for SDPA's CPU kernel
    model = GPT(cfg).eval()
    t_star = round(run.crossover_length(cfg))
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, t_star, dtype=torch.long))
    per_token = fc.get_total_flops() / t_star  # every matmul, the attention's two included
    assert per_token == pytest.approx(flops_per_token(cfg, t_star, training=False), rel=1e-6)


def test_log_crossing_and_budget():
    assert run.log_crossing([1, 4], [0.0, 1.0]) == pytest.approx(2.0)  # halfway in log x
    assert run.log_crossing([1, 2, 4], [0.6, 0.7, 0.9]) is None
    assert run.over_budget(4, 1, 4, 1024, 1536) is None  # 4 x 16 MiB
    assert "skipped" in run.over_budget(4, 1, 4, 8192, 1536)  # 4 x 1 GiB


def test_quick_run_end_to_end(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["banded_matches_mask"] is True and m["linear_chunked_matches_quadratic"] is True
    assert m["predicted_crossover_T"] == round(6 * 32 + 65 / 2)  # nano: C = 32, V = 65, L = 1
    assert m["linear_attn_speedup"] > 0 and m["linear_vs_sdpa_speedup"] > 0
    assert m["kv_mib_window_at_max"] < m["kv_mib_softmax_at_max"]
    text = (tmp_path / "deliverable.md").read_text()
    body = text.split("## Throughput and precision")[0]
    blocks = [b.strip() for b in re.split(r"\n\s*\n", body) if b.strip()]
    for i, b in enumerate(blocks):  # every table and plot is followed by what to look at
        if b.startswith("|") or b.startswith("!["):
            nxt = blocks[i + 2] if b.startswith("![") else blocks[i + 1]  # a plot has a caption line first
            assert nxt.startswith("What to look at"), b[:60]
    assert len(list((tmp_path / "plots").glob("day33_*.png"))) == 3
    assert math.isfinite(m["attn_flop_ratio_at_target"])
