"""Day 31: MQA's parameter saving in closed form, its KV cache, and attention with shared K/V heads."""

import pytest
import torch
import torch.nn.functional as F

from common.nn.attention import attention_reference, causal_mask, repeat_kv
from common.nn.kv_cache import KVCache
from common.nn.model import GPT, count_params_formula, gpt_config
from common.run import runner
from days.day31 import run


@pytest.mark.parametrize("shape", [dict(n_head=8, n_embd=128, n_layer=4, bias=False),
                                   dict(n_head=6, n_embd=96, n_layer=3, bias=True),
                                   dict(n_head=4, n_embd=32, n_layer=2, bias=False, pos="rope", norm="rms",
                                        mlp="swiglu")])
def test_param_difference_is_the_dropped_kv_rows(shape):
    mha = gpt_config("nano", **shape)
    for n_kv in (h for h in range(1, mha.n_head + 1) if mha.n_head % h == 0):
        gqa = gpt_config("nano", **shape, n_kv_head=n_kv)
        counted = GPT(mha).num_params() - GPT(gqa).num_params()
        assert run.param_difference(mha, n_kv) == counted == count_params_formula(mha) - count_params_formula(gqa)
    hs = mha.n_embd // mha.n_head  # MQA without bias: 2 (H - 1) hs C L
    if not mha.bias:
        assert run.param_difference(mha, 1) == 2 * (mha.n_head - 1) * hs * mha.n_embd * mha.n_layer
    assert run.param_difference(mha, mha.n_head) == 0


@pytest.mark.parametrize("H,Hkv", [(4, 1), (8, 2), (4, 4)])
def test_shared_kv_attention_matches_repeated_kv_and_sdpa(H, Hkv):
    g = torch.Generator().manual_seed(0)
    B, T, S, D = 2, 5, 7, 8
    q = torch.randn(B, H, T, D, generator=g)
    k, v = torch.randn(B, Hkv, S, D, generator=g), torch.randn(B, Hkv, S, D, generator=g)
    ours = run.shared_kv_attention(q, k, v, is_causal=True)  # bottom-right causal: T queries are the last of S
    ref = attention_reference(q, repeat_kv(k, H // Hkv), repeat_kv(v, H // Hkv), is_causal=True)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, S), enable_gqa=True)
    torch.testing.assert_close(ours, sdpa, rtol=1e-5, atol=1e-6)
    # the K/V head a query head reads: change K/V head 0 and only query heads 0 .. H/Hkv - 1 move
    k2 = k.clone()
    k2[:, 0] += 1.0
    moved = (run.shared_kv_attention(q, k2, v, is_causal=True) - ours).abs().amax(dim=(0, 2, 3)) > 0
    assert moved.tolist() == [h < H // Hkv for h in range(H)]


def test_shared_kv_attention_keeps_the_mask_and_bias_contract():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 4, 3, 8, generator=g)
    k, v = torch.randn(1, 1, 3, 8, generator=g), torch.randn(1, 1, 3, 8, generator=g)
    keep = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    bias = torch.randn(4, 3, 3, generator=g)
    out = run.shared_kv_attention(q, k, v, mask=keep, bias=bias)
    torch.testing.assert_close(out, attention_reference(q, repeat_kv(k, 4), repeat_kv(v, 4), mask=keep, bias=bias))
    assert torch.equal(out[:, :, 1], torch.zeros(1, 4, 8))  # a query with no key left gives zeros, not NaN


def test_mqa_model_runs_through_the_readable_path():
    cfg = gpt_config("nano", n_head=4, n_kv_head=1)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (2, 16))
    with torch.no_grad():
        ref = model(x)[0]
        with run.attention_fn(model, run.shared_kv_attention):
            ours = model(x)[0]
        assert torch.equal(model(x)[0], ref)  # the SDPA backend is back after the block
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_mqa_cache_is_n_head_times_smaller():
    caches = {}
    for n_kv in (None, 1):
        torch.manual_seed(0)
        model = GPT(gpt_config("nano", n_head=4, n_kv_head=n_kv))
        caches[n_kv] = KVCache.for_model(model, batch=3, max_len=32)
        with torch.no_grad():
            model(torch.zeros(3, 32, dtype=torch.long), kv_cache=caches[n_kv])
    assert caches[None].nbytes() == 4 * caches[1].nbytes()
    assert caches[1].k.shape == (2, 3, 1, 32, 8)  # (layers, B, one K/V head, T, head_dim)


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["param_diff"] == m["param_diff_formula"] == m["params_mha"] - m["params_mqa"] > 0
    assert m["kv_reduction"] == 4 and m["kv_bytes_per_token_mha"] == 4 * m["kv_bytes_per_token_mqa"]
    assert 0 < m["val_loss_mha"] < 4.2 and 0 < m["val_loss_mqa"] < 4.2  # below a uniform guess over 65 chars
    assert m["step_speedup"] > 0 and (tmp_path / "plots" / "day31_val_loss.png").is_file()
