"""Sprint 4's attention and MLP variants as GPTConfig values: windows, linear attention, MLA, MoE, KV bytes."""

import pytest
import torch

from common.nn.attention import (
    attention_reference,
    causal_mask,
    linear_attention,
    linear_attention_reference,
    sliding_window_attention,
    window_mask,
)
from common.nn.generate import generate
from common.nn.kv_cache import KVCache, kv_bytes_per_token, kv_cache_bytes
from common.nn.layers import MLP, MoE
from common.nn.model import GPT, count_params_formula, gpt_config
from common.run.errors import UserError


def qkv(B=2, H=4, Hkv=2, T=70, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, T, D, generator=g), torch.randn(B, Hkv, T, D, generator=g),
            torch.randn(B, Hkv, T, D, generator=g))


def test_window_mask_rows_by_hand():
    keep = window_mask(6, window=3, n_global=1)
    for i in range(6):
        seen = {j for j in range(6) if keep[i, j]}
        assert seen == {j for j in range(i + 1) if i - j < 3 or j < 1}
    assert torch.equal(window_mask(5, window=None), causal_mask(5))
    assert torch.equal(window_mask(5, window=5), causal_mask(5))  # a window as long as the sequence is no window
    cached = window_mask(2, 6, window=2)  # the last 2 queries of 6 positions, as with a KV cache
    assert cached.int().tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]]


@pytest.mark.parametrize("window,n_global", [(1, 0), (7, 0), (16, 3), (35, 1), (70, 0)])
def test_banded_sliding_window_equals_the_masked_one(window, n_global):
    q, k, v = qkv()
    masked = attention_reference(q, k, v, mask=window_mask(70, 70, window, n_global))
    torch.testing.assert_close(sliding_window_attention(q, k, v, window, n_global), masked, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(sliding_window_attention(q, k, v, window, n_global, attn_fn=attention_reference),
                               masked, atol=2e-6, rtol=1e-5)


def test_linear_attention_chunked_equals_quadratic_and_is_causal():
    q, k, v = qkv(T=150)
    ref = linear_attention_reference(q, k, v)
    for chunk in (1, 16, 64, 200):
        torch.testing.assert_close(linear_attention(q, k, v, chunk=chunk), ref, atol=1e-5, rtol=1e-5)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    k2[..., 100:, :] += 5.0  # change the future: outputs before it must not move
    v2[..., 100:, :] -= 3.0
    torch.testing.assert_close(linear_attention(q2, k2, v2)[..., :100, :], linear_attention(q, k, v)[..., :100, :])


def test_linear_attention_is_a_weighted_mean_of_values():
    q, k, _ = qkv(T=40)
    const = torch.full((2, 2, 40, 8), 3.0)  # positive weights summing to 1 average a constant to itself
    torch.testing.assert_close(linear_attention(q, k, const), torch.full((2, 4, 40, 8), 3.0), atol=1e-4, rtol=1e-4)


VARIANTS = {
    "mqa": dict(n_kv_head=1),
    "mla_rope": dict(attn="mla", kv_lora_rank=8, rope_head_dim=8, pos="rope"),
    "mla_alibi": dict(attn="mla", kv_lora_rank=12, pos="alibi", bias=True),
    "window": dict(window=6, n_global=2, pos="rope"),
    "linear": dict(attn="linear", pos="rope"),
    "moe": dict(n_expert=4, expert_top_k=2, mlp="swiglu"),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_param_count_closed_form_and_causality(name):
    torch.manual_seed(0)
    model = GPT(gpt_config("nano", **VARIANTS[name])).eval()
    assert model.num_params() == count_params_formula(model.cfg)
    x = torch.randint(0, 65, (2, 32))
    y = x.clone()
    y[:, 20:] = (y[:, 20:] + 1) % 65
    with torch.no_grad():
        a, b = model(x)[0], model(y)[0]
    torch.testing.assert_close(a[:, :20], b[:, :20])  # nothing after position 19 reaches it
    assert not torch.allclose(a[:, 20:], b[:, 20:])


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "linear"])
def test_variant_cached_decoding_equals_recomputing(name):
    torch.manual_seed(0)
    model = GPT(gpt_config("nano", **VARIANTS[name]))
    prompt = torch.randint(0, 65, (2, 4))
    fast = generate(model, prompt, 24, temperature=0, use_cache=True)
    slow = generate(model, prompt, 24, temperature=0, use_cache=False)
    assert torch.equal(fast, slow)


def test_linear_attention_has_no_kv_cache():
    model = GPT(gpt_config("nano", **VARIANTS["linear"]))
    with pytest.raises(UserError, match="running state"):
        KVCache.for_model(model, 1, 8)
    assert kv_bytes_per_token(model.cfg) == 0


def test_kv_bytes_closed_forms_and_the_cache_tensors():
    cfg = gpt_config("nano", n_layer=3, n_head=4, n_embd=32)  # head_dim 8
    assert kv_bytes_per_token(cfg, 2) == 2 * 3 * 4 * 8 * 2  # 2 (k, v) x layers x heads x head_dim x bytes
    assert kv_bytes_per_token(gpt_config("nano", n_layer=3, n_head=4, n_embd=32, n_kv_head=2), 2) == 2 * 3 * 2 * 8 * 2
    mla = gpt_config("nano", n_layer=3, n_head=4, n_embd=32, attn="mla", kv_lora_rank=6, rope_head_dim=4, pos="rope")
    assert kv_bytes_per_token(mla, 2) == 3 * (6 + 4) * 2
    for c in (cfg, mla):
        cache = KVCache.for_model(GPT(c), batch=3, max_len=50)
        assert cache.nbytes() == kv_cache_bytes(c, 50, batch=3, bytes_per_elem=4)
    win = gpt_config("nano", window=16, n_global=4, pos="rope")
    assert kv_cache_bytes(win, 1000) == kv_bytes_per_token(win) * 20
    assert kv_cache_bytes(win, 1000, rolling=False) == kv_bytes_per_token(win) * 1000


def test_mla_latent_is_what_the_cache_holds():
    torch.manual_seed(0)
    model = GPT(gpt_config("nano", **VARIANTS["mla_rope"])).eval()
    cache = KVCache.for_model(model, 2, 16)
    x = torch.randint(0, 65, (2, 10))
    with torch.no_grad():
        model(x, kv_cache=cache)
    assert cache.k.shape[-1] == 8 + 8 and cache.v.shape[-1] == 0 and cache.seq_len == 10


def test_mla_shared_rope_key_keeps_scores_relative():
    """Shifting every position by the same offset leaves MLA's outputs unchanged (RoPE is relative)."""
    torch.manual_seed(0)
    model = GPT(gpt_config("nano", **VARIANTS["mla_rope"])).eval()
    x = torch.randint(0, 65, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(x, kv_cache=None, start_pos=37)[0], atol=1e-5, rtol=1e-5)


def test_moe_with_one_expert_is_the_dense_mlp():
    torch.manual_seed(0)
    moe, mlp = MoE(16, 32, n_expert=1, top_k=1), MLP(16, 32)
    mlp.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(moe(x), mlp(x))
    assert moe.aux_loss.item() == pytest.approx(1.0)


def test_moe_routes_to_top_k_with_gates_summing_to_one():
    torch.manual_seed(0)
    moe = MoE(8, 16, n_expert=4, top_k=2)
    x = torch.randn(50, 8)
    out = moe(x)
    probs = torch.softmax(moe.router(x), -1)
    top_p, top_i = probs.topk(2, -1)
    gates = top_p / top_p.sum(-1, keepdim=True)
    expect = torch.stack([sum(gates[n, s] * moe.experts[top_i[n, s]](x[n]) for s in range(2)) for n in range(50)])
    torch.testing.assert_close(out, expect, atol=1e-6, rtol=1e-5)
    assert moe.last_load.sum().item() == pytest.approx(1.0)


def test_moe_balance_loss_is_one_when_uniform_and_grows_with_collapse():
    moe = MoE(8, 16, n_expert=4, top_k=1)
    torch.nn.init.zeros_(moe.router.weight)  # uniform router probabilities: loss = E * sum_e f_e / E = 1
    moe(torch.randn(40, 8))
    assert moe.aux_loss.item() == pytest.approx(1.0)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 10.0  # every positive-sum token goes to expert 0 with probability ~1
    moe(torch.ones(40, 8))
    assert moe.aux_loss.item() == pytest.approx(4.0, rel=1e-3)  # E * 1 * 1: all load and all probability on one


def test_moe_aux_loss_enters_training_loss_only():
    torch.manual_seed(0)
    model = GPT(gpt_config("nano", n_expert=4, moe_aux_weight=0.5))
    x = torch.randint(0, 65, (2, 16))
    model.train()
    _, train_loss = model(x, x)
    aux = sum(b.mlp.aux_loss for b in model.blocks)
    model.eval()
    _, eval_loss = model(x, x)
    torch.testing.assert_close(train_loss, eval_loss + 0.5 * aux)


def test_bad_variant_settings_are_refused():
    for bad in (dict(attn="flash"), dict(attn="mla"), dict(attn="mla", kv_lora_rank=8, n_kv_head=1),
                dict(kv_lora_rank=8), dict(window=0), dict(n_global=2), dict(attn="linear", window=8),
                dict(n_expert=2, expert_top_k=3), dict(attn="mla", kv_lora_rank=8, pos="rope")):
        with pytest.raises(ValueError):
            GPT(gpt_config("nano", **bad))


@pytest.mark.parametrize("pos", ["alibi", "learned"])
def test_mla_with_identity_latent_is_mha(pos):
    """A latent as wide as the model with kv_down = I makes MLA compute exactly MHA's attention (on inputs of
    unit RMS, where the latent's RMSNorm with its initial gain of one is the identity)."""
    from common.nn.attention import LatentAttention, MultiHeadAttention

    torch.manual_seed(0)
    d, H = 32, 4
    mha = MultiHeadAttention(d, H, pos=pos).eval()
    mla = LatentAttention(d, H, kv_lora_rank=d, pos=pos).eval()
    wq, wk, wv = mha.qkv.weight.split(d)
    bq, bk, bv = mha.qkv.bias.split(d)
    with torch.no_grad():
        mla.q.weight.copy_(wq), mla.q.bias.copy_(bq)
        mla.kv_down.weight.copy_(torch.eye(d)), mla.kv_down.bias.zero_()
        mla.kv_up.weight.copy_(torch.cat([wk, wv])), mla.kv_up.bias.copy_(torch.cat([bk, bv]))
        mla.proj.load_state_dict(mha.proj.state_dict())
        x = torch.nn.functional.rms_norm(torch.randn(2, 9, d), (d,), eps=1e-6)
        torch.testing.assert_close(mla(x), mha(x), atol=1e-5, rtol=1e-5)
