"""Tests of common/nn/attention.py and common/nn/positional.py: references, masks, properties."""

import doctest
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.nn import attention, positional
from common.nn.attention import (
    ATTENTION_FNS,
    MultiHeadAttention,
    attention_reference,
    attention_sdpa,
    causal_mask,
    copy_from_torch_mha,
    masked_softmax,
    padding_mask,
)
from common.nn.positional import alibi_bias, alibi_slopes, apply_rope, rope_cos_sin, sinusoidal_table

BACKENDS = list(ATTENTION_FNS)


class DictCache:
    """The KV-cache protocol at its smallest: per layer, concatenate along the time axis."""

    def __init__(self):
        self.kv = {}

    def update(self, layer_idx, k, v):
        if layer_idx in self.kv:
            k0, v0 = self.kv[layer_idx]
            k, v = torch.cat((k0, k), dim=2), torch.cat((v0, v), dim=2)  # (B, Hkv, S, D)
        self.kv[layer_idx] = (k, v)
        return k, v


def qkv(B=2, H=4, Hkv=4, T=5, S=5, D=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, T, D, generator=g, dtype=dtype),
            torch.randn(B, Hkv, S, D, generator=g, dtype=dtype),
            torch.randn(B, Hkv, S, D, generator=g, dtype=dtype))


# ----------------------------------------------------------------------------- masks and softmax


def test_causal_mask_square_and_with_cache_offset():
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    # 2 new queries after 3 cached keys: they sit at positions 3 and 4
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 5), expected)


def test_padding_mask_marks_real_tokens():
    m = padding_mask(torch.tensor([2, 4, 0]), 4)
    assert m.shape == (3, 1, 1, 4) and m.dtype == torch.bool
    assert m.flatten(1).sum(1).tolist() == [2, 4, 0]
    assert m[0, 0, 0].tolist() == [True, True, False, False]


def test_masked_softmax_equals_softmax_and_masks():
    x = torch.randn(3, 7)
    assert torch.allclose(masked_softmax(x), torch.softmax(x, -1), atol=1e-7)
    mask = torch.rand(3, 7) > 0.4
    mask[:, 0] = True
    w = masked_softmax(x, mask)
    assert torch.allclose(w, torch.softmax(x.masked_fill(~mask, -math.inf), -1), atol=1e-7)
    assert (w[~mask] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_extreme_logits_stay_finite(dtype):
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    w = masked_softmax(x)
    assert w.dtype == dtype and torch.isfinite(w).all()
    assert torch.allclose(w.float().sum(-1), torch.ones(3), atol=1e-2)  # bf16 rounds 1/3
    assert torch.allclose(w[0].float(), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(w[2].float(), torch.tensor([0.5, 0.5, 0.0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_rows_give_zeros_not_nan(backend):
    q, k, v = qkv(T=4, S=4)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 2] = False  # query 2 of batch 0 may see nothing
    q.requires_grad_(True)
    out = ATTENTION_FNS[backend](q, k, v, mask=mask)
    assert torch.isfinite(out).all()
    assert (out[0, :, 2] == 0).all() and (out[0, :, 1] != 0).any()
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    assert (masked_softmax(torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.bool)) == 0).all()


def test_padding_keys_get_zero_weight():
    q, k, v = qkv(T=5, S=5)
    mask = padding_mask(torch.tensor([3, 5]), 5)
    _, w = attention_reference(q, k, v, mask=mask, is_causal=True, return_weights=True)
    assert (w[0, ..., 3:] == 0).all() and (w[1, :, 4, 4] > 0).all()
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, 5))
    v2 = v.clone()
    v2[0, :, 3:] = 1e3  # changing padded values must not change anything
    for fn in ATTENTION_FNS.values():
        assert torch.allclose(fn(q, k, v, mask=mask), fn(q, k, v2, mask=mask), atol=1e-6)


# ----------------------------------------------------------------------------- reference vs torch


def random_keep(B, H, T, S, seed=1):
    keep = torch.rand(B, H, T, S, generator=torch.Generator().manual_seed(seed)) > 0.5
    keep[..., 0] = True  # every row keeps a key: torch's kernels are then fully defined
    return keep


@pytest.mark.parametrize("case", ["none", "causal", "mask", "bias", "gqa", "mqa_causal"])
def test_reference_matches_torch_sdpa(case):
    Hkv = {"gqa": 2, "mqa_causal": 1}.get(case, 4)
    q, k, v = qkv(H=4, Hkv=Hkv, T=6, S=6)
    causal = case in ("causal", "mqa_causal")
    mask = random_keep(2, 4, 6, 6) if case in ("mask", "gqa") else None
    bias = torch.randn(4, 6, 6) if case == "bias" else None
    ours = attention_reference(q, k, v, mask=mask, bias=bias, is_causal=causal)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask if bias is None else bias,
                                            is_causal=causal, enable_gqa=Hkv != 4)
    assert ours.shape == (2, 4, 6, 8)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("Hkv", [4, 2, 1])
@pytest.mark.parametrize("T,S", [(6, 6), (1, 6), (3, 7)])
def test_sdpa_backend_matches_reference(Hkv, T, S):
    q, k, v = qkv(H=4, Hkv=Hkv, T=T, S=S)
    mask = padding_mask(torch.tensor([S, S - 1]), S)
    bias = alibi_bias(4, T, S)
    for kw in ({"is_causal": True}, {"mask": mask}, {"mask": mask, "bias": bias, "is_causal": True},
               {"bias": bias}, {"scale": 0.3}):
        assert torch.allclose(attention_sdpa(q, k, v, **kw), attention_reference(q, k, v, **kw),
                              atol=1e-5), kw


def test_gqa_equals_mha_with_repeated_heads():
    q, k, v = qkv(H=4, Hkv=2)
    k_rep, v_rep = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)  # (B, 4, S, D)
    for fn in ATTENTION_FNS.values():
        assert torch.allclose(fn(q, k, v, is_causal=True), fn(q, k_rep, v_rep, is_causal=True), atol=1e-6)


def test_attention_dropout_only_in_training():
    q, k, v = qkv()
    for fn in ATTENTION_FNS.values():
        assert torch.equal(fn(q, k, v, dropout_p=0.5), fn(q, k, v))
        assert not torch.allclose(fn(q, k, v, dropout_p=0.5, training=True), fn(q, k, v))


# ----------------------------------------------------------------------------- the module


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal,pad", [(False, False), (True, False), (False, True), (True, True)])
def test_mha_matches_torch_multihead_attention(bias, causal, pad):
    torch.manual_seed(0)
    B, T, d, nh = 2, 6, 16, 4
    ref = nn.MultiheadAttention(d, nh, bias=bias, batch_first=True).eval()
    ours = copy_from_torch_mha(MultiHeadAttention(d, nh, bias=bias).eval(), ref)
    x = torch.randn(B, T, d)
    keep = padding_mask(torch.tensor([T, 3]), T) if pad else None
    expected, _ = ref(x, x, x, need_weights=False,
                      attn_mask=~causal_mask(T) if causal else None,  # torch: True = blocked
                      key_padding_mask=~keep[:, 0, 0] if pad else None)
    got = ours(x, mask=keep, is_causal=causal)
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_manual_backend_equals_sdpa_backend(pos, n_kv_head):
    torch.manual_seed(0)
    a = MultiHeadAttention(32, 4, n_kv_head, backend="manual", pos=pos)
    b = MultiHeadAttention(32, 4, n_kv_head, backend="sdpa", pos=pos)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 7, 32)
    assert a.qkv.weight.shape == ((4 + 2 * n_kv_head) * 8, 32)
    assert torch.allclose(a(x), b(x), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_mha_never_sees_the_future(backend, pos):
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 2, backend=backend, pos=pos).eval()
    x = torch.randn(1, 8, 16)
    x2 = x.clone()
    x2[:, 5:] = torch.randn(1, 3, 16)
    y, y2 = attn(x), attn(x2)
    assert torch.allclose(y[:, :5], y2[:, :5], atol=1e-6)
    assert not torch.allclose(y[:, 5:], y2[:, 5:], atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_kv_cache_decode_equals_full_forward(backend, pos):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, n_kv_head=2, backend=backend, pos=pos).eval()
    x = torch.randn(2, 9, 32)
    full = attn(x)
    cache = DictCache()
    outs = [attn(x[:, :4], kv_cache=cache, layer_idx=3)]  # prefill 4 tokens
    for t in range(4, 9):  # then one token at a time
        outs.append(attn(x[:, t:t + 1], kv_cache=cache, layer_idx=3, start_pos=t))
    assert cache.kv[3][0].shape == (2, 2, 9, 8)
    assert torch.allclose(torch.cat(outs, dim=1), full, atol=1e-5)


def test_rope_table_grows_on_demand():
    torch.manual_seed(0)
    small = MultiHeadAttention(16, 2, pos="rope", max_seq_len=4)
    big = MultiHeadAttention(16, 2, pos="rope", max_seq_len=64)
    big.load_state_dict(small.state_dict())
    x = torch.randn(1, 10, 16)
    assert torch.allclose(small(x), big(x), atol=1e-6)
    assert small.rope_cos.shape[0] >= 10
    assert "rope_cos" not in small.state_dict()  # non-persistent


def test_mha_rejects_bad_config():
    for kwargs in ({"d_model": 10, "n_head": 4}, {"d_model": 12, "n_head": 4, "n_kv_head": 3},
                   {"d_model": 8, "n_head": 2, "backend": "flash9"}, {"d_model": 8, "n_head": 2, "pos": "x"}):
        with pytest.raises(ValueError):
            MultiHeadAttention(**kwargs)
    with pytest.raises(TypeError):
        attention_reference(*qkv(), mask=torch.zeros(5, 5))  # float masks go in `bias`


# ----------------------------------------------------------------------------- positional


def test_sinusoidal_table_formula():
    T, d = 11, 6
    table = sinusoidal_table(T, d)
    t = torch.arange(T, dtype=torch.float32)
    for i in range(d // 2):
        angle = t / 10000 ** (2 * i / d)
        assert torch.allclose(table[:, 2 * i], angle.sin(), atol=1e-6)
        assert torch.allclose(table[:, 2 * i + 1], angle.cos(), atol=1e-6)
    assert sinusoidal_table(3, 5).shape == (3, 5)


def test_rope_is_a_rotation_that_encodes_relative_position():
    torch.manual_seed(0)
    hd = 8
    cos, sin = rope_cos_sin(32, hd)
    q, k = torch.randn(hd), torch.randn(hd)

    def rot(x, m):
        return apply_rope(x[None], cos[m:m + 1], sin[m:m + 1])[0]

    assert torch.allclose(rot(q, 0), q)  # position 0: no rotation
    assert torch.allclose(rot(q, 13).norm(), q.norm(), atol=1e-5)  # norm preserved
    dots = [rot(q, m) @ rot(k, n) for m, n in [(5, 2), (12, 9), (30, 27)]]  # all m - n = 3
    assert torch.allclose(torch.stack(dots), dots[0].expand(3), atol=1e-4)
    assert not torch.allclose(rot(q, 5) @ rot(k, 2), rot(q, 5) @ rot(k, 3), atol=1e-3)


def test_rope_matches_complex_multiplication():
    # rotate-half pairs feature i with i + hd/2: z_i = x_i + i x_(i+hd/2), times e^(i t theta_i)
    hd, T = 8, 6
    x = torch.randn(T, hd, dtype=torch.float64)
    cos, sin = rope_cos_sin(T, hd, base=100.0, dtype=torch.float64)
    z = torch.complex(x[:, : hd // 2], x[:, hd // 2:])
    theta = 100.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    zr = z * torch.polar(torch.ones(T, hd // 2, dtype=torch.float64),
                         torch.arange(T, dtype=torch.float64)[:, None] * theta)
    assert torch.allclose(apply_rope(x, cos, sin), torch.cat((zr.real, zr.imag), dim=-1))


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8) == [2.0 ** -(i + 1) for i in range(8)]
    assert alibi_slopes(1) == [2.0 ** -8]
    # 6 heads: the 4-head slopes, then every other 8-head slope: 2^-1, 2^-3
    assert alibi_slopes(6) == [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]
    assert len(alibi_slopes(12)) == 12 and len(set(alibi_slopes(12))) == 12


def test_alibi_bias_is_minus_slope_times_distance():
    b = alibi_bias(4, 5)
    slopes = torch.tensor(alibi_slopes(4))
    assert b.shape == (4, 5, 5)
    assert torch.allclose(b[:, 4, 1], -slopes * 3) and (b.diagonal(dim1=1, dim2=2) == 0).all()
    assert torch.allclose(alibi_bias(4, 2, 5), b[:, 3:])  # with a cache: the last rows


def test_docstring_examples():
    for module in (attention, positional):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
