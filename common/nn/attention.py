"""Scaled dot-product attention, from scratch and through PyTorch, and the multi-head layer.

Two functions with the same signature compute softmax(q k^T * scale + bias, masked) v:
`attention_reference` spells out every step (the one to read, and what the tests trust);
`attention_sdpa` hands the same work to `F.scaled_dot_product_attention` (the fast path, fused
kernels on CPU and CUDA). `ATTENTION_FNS` maps a backend name to one of them, and
`MultiHeadAttention` looks its function up by name: a backend is a config value, not a subclass.

`common/nn/positional.py` holds the RoPE and ALiBi math this file applies; `common/nn/layers.py`
wraps `MultiHeadAttention` into a transformer block.

Conventions, used everywhere below:
- shapes: q (B, H, T, D); k, v (B, Hkv, S, D) with H a multiple of Hkv (Hkv = H: multi-head,
  Hkv = 1: multi-query, in between: grouped-query). Query head h reads key/value head
  h // (H // Hkv), the same grouping as `F.scaled_dot_product_attention(enable_gqa=True)`.
- masks are bool, True = may attend, broadcastable to (B, H, T, S). (Careful: the attn_mask
  and key_padding_mask of `torch.nn.MultiheadAttention` use True = blocked.)
- causal with S > T keys (a KV cache): query i sits at absolute position S - T + i and sees
  keys 0..S-T+i ("bottom-right" alignment). `F.scaled_dot_product_attention(is_causal=True)`
  aligns top-left instead, so `attention_sdpa` builds an explicit mask whenever T != S.
- a query whose every key is masked gets all-zero attention weights, so its output is zero,
  not NaN. Both backends do this: the row has nothing to attend to, and a zero keeps a padded
  batch finite in both forward and backward.

KV-cache protocol (the cache object lives in `common/nn/kv_cache.py`):
    k_all, v_all = kv_cache.update(layer_idx, k, v)
k, v are this call's new keys/values (B, Hkv, T_new, D), already rotated by RoPE; the cache
stores them after what layer `layer_idx` stored before and returns everything it holds,
(B, Hkv, S, D). The new queries are the last T_new of those S positions.
"""

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.nn.positional import POSITIONS, alibi_bias, apply_rope, rope_cos_sin

# ----------------------------------------------------------------------------- masks


def causal_mask(T, S=None, device=None):
    """Bool (T, S), True = may attend: query i (at absolute position S - T + i) sees keys j <= S - T + i.

    >>> causal_mask(2, 3).int()
    tensor([[1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    S = T if S is None else S
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def window_mask(T, S=None, window=None, n_global=0, device=None):
    """Bool (T, S), True = may attend: causal, and within the last `window` positions or global.

    Query i sits at absolute position p = S - T + i (as in `causal_mask`) and sees key j when
    j <= p and (p - j < window or j < n_global): a band of `window` keys ending at itself
    (Longformer's local attention, Mistral's sliding window) plus the first `n_global` tokens,
    which every query may read (global tokens; "attention sinks" in a causal decoder).
    window=None is plain causal attention.

    >>> window_mask(4, window=2, n_global=1).int()
    tensor([[1, 0, 0, 0],
            [1, 1, 0, 0],
            [1, 1, 1, 0],
            [1, 0, 1, 1]], dtype=torch.int32)
    """
    # >>> exercise day33.window_mask: causal keys within the last `window` positions, plus the first n_global keys
    S = T if S is None else S
    keep = causal_mask(T, S, device)  # j <= p, with p = S - T + i
    if window is None:
        return keep
    band = keep.triu(diagonal=S - T - window + 1)  # also j >= p - window + 1, i.e. p - j < window
    band[:, :n_global] |= keep[:, :n_global]  # the global keys, where causality allows
    return band  # bool only: no (T, S) integer temporaries, which at 32k would take gigabytes
    # <<< exercise day33.window_mask


def padding_mask(lengths, S):
    """Bool (B, 1, 1, S), True for the real tokens: key j of row b is real when j < lengths[b].

    >>> padding_mask(torch.tensor([1, 3]), 3).int().flatten(1)
    tensor([[1, 0, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    keep = torch.arange(S, device=lengths.device)[None, :] < lengths[:, None]  # (B, S)
    return keep[:, None, None, :]  # (B, 1, 1, S)


def masked_softmax(scores, mask=None, dim=-1):
    """Numerically stable softmax over `dim`, with masked entries (mask False) given weight 0.

    - stable: subtract the row max before exp, so logits of +-1e4 give no inf and no NaN;
    - float16/bfloat16 scores are upcast to float32 for the exp and the sum (a sum of exps can
      overflow float16 past 65504 keys, and loses precision far sooner), and the weights come
      back in the input dtype;
    - a row whose every entry is masked returns all zeros (not NaN): its max is -inf, so the
      max is clamped to a finite number and the sum (0 there, >= 1 in every other row, since
      the max entry contributes exp(0) = 1) is clamped to at least 1.
    """
    # >>> exercise day01.softmax: a stable softmax over `dim` that gives masked entries weight 0
    x = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    if mask is not None:
        x = x.masked_fill(~mask, float("-inf"))
    row_max = x.amax(dim=dim, keepdim=True).clamp_min(torch.finfo(x.dtype).min)
    e = torch.exp(x - row_max)
    return (e / e.sum(dim=dim, keepdim=True).clamp_min(1.0)).to(scores.dtype)
    # <<< exercise day01.softmax


def repeat_kv(x, n_rep):
    """(B, Hkv, S, D) -> (B, Hkv * n_rep, S, D): each key/value head serves n_rep query heads."""
    if n_rep == 1:
        return x
    B, Hkv, S, D = x.shape
    x = x[:, :, None, :, :].expand(B, Hkv, n_rep, S, D)  # (B, Hkv, n_rep, S, D), no copy yet
    return x.reshape(B, Hkv * n_rep, S, D)  # (B, H, S, D)


def _check_shapes(q, k, v):
    H, Hkv = q.shape[1], k.shape[1]
    if k.shape[:-1] != v.shape[:-1] or q.shape[-1] != k.shape[-1] or H % Hkv:
        raise ValueError(f"need k, v with the same heads and length, k's head size equal to q's and "
                         f"heads dividing q's; got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    return H // Hkv


def _keep_mask(mask, is_causal, T, S, device):
    """Combine an optional bool mask with the causal mask; None when there is nothing to mask."""
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be bool (True = may attend), got {mask.dtype}; "
                        "pass additive float masks as bias")
    if is_causal:
        causal = causal_mask(T, S, device)  # (T, S)
        return causal if mask is None else mask & causal
    return mask


# ----------------------------------------------------------------------------- attention


def attention_reference(q, k, v, mask=None, bias=None, is_causal=False, scale=None,
                        dropout_p=0.0, training=False, return_weights=False):
    """softmax(q k^T * scale + bias, masked) v, step by step; out (B, H, T, D).

    mask: bool, True = keep, broadcastable to (B, H, T, S); bias: float, added to the scores
    (ALiBi); is_causal: also apply `causal_mask(T, S)`; scale: default 1/sqrt(D); dropout on the
    weights only when training. With return_weights, also return the (B, H, T, S) weights.
    """
    # >>> exercise day01.attention: scores, scale, bias and mask, softmax, weighted sum of values
    n_rep = _check_shapes(q, k, v)
    T, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, S, D)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, T, D) x (B, H, D, S) -> (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    weights = masked_softmax(scores, _keep_mask(mask, is_causal, T, S, q.device))  # (B, H, T, S)
    dropped = F.dropout(weights, dropout_p) if training and dropout_p > 0 else weights
    out = dropped @ v  # (B, H, T, S) x (B, H, S, D) -> (B, H, T, D)
    return (out, weights) if return_weights else out
    # <<< exercise day01.attention


def attention_sdpa(q, k, v, mask=None, bias=None, is_causal=False, scale=None,
                   dropout_p=0.0, training=False):
    """Same contract as `attention_reference` (without weights), via F.scaled_dot_product_attention.

    Plain causal self-attention (no mask, no bias, T == S) takes the `is_causal=True` kernel,
    the fast path used in training. Anything else becomes one attn_mask: the bool keep-mask,
    or the bias with -inf where the keep-mask is False. Rows with no key left are zeroed
    explicitly, so the result does not depend on what a given kernel does with them.
    """
    _check_shapes(q, k, v)
    T, S = q.shape[-2], k.shape[-2]
    gqa = q.shape[1] != k.shape[1]
    dropout_p = dropout_p if training else 0.0
    is_causal = is_causal and T > 1  # one query at the end sees every key: nothing to mask
    if mask is None and bias is None and (not is_causal or T == S):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=is_causal,
                                              scale=scale, enable_gqa=gqa)
    keep = _keep_mask(mask, is_causal, T, S, q.device)
    attn_mask = keep
    if bias is not None:
        bias = bias.to(q.dtype)
        attn_mask = bias if keep is None else bias.masked_fill(~keep, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                         scale=scale, enable_gqa=gqa)  # (B, H, T, D)
    if keep is not None:
        out = out.masked_fill(~keep.any(dim=-1, keepdim=True), 0.0)  # empty rows -> 0
    return out


ATTENTION_FNS = {"manual": attention_reference, "sdpa": attention_sdpa}


def sliding_window_attention(q, k, v, window, n_global=0, scale=None, attn_fn=attention_sdpa):
    """Causal self-attention restricted to `window_mask(T, T, window, n_global)`, computing only the band.

    Same result as `attn_fn(q, k, v, mask=window_mask(...))` (tested), but the queries go in chunks
    of `window`: chunk [c, e) reads keys [c - window + 1, e) and the first n_global keys, so the
    work is O(T * (2 window + n_global)) instead of O(T^2). q, k, v (B, H|Hkv, T, D); T == S.
    """
    # >>> exercise day33.sliding_window: per query chunk, attend only to its band of keys plus the global ones
    T = q.shape[-2]
    outs = []
    for c in range(0, T, window):
        e = min(c + window, T)
        lo = max(0, c - window + 1)
        g = min(n_global, lo)  # global keys that are not already inside the band
        k_pos = torch.cat([torch.arange(g), torch.arange(lo, e)]).to(q.device)  # (S_c,)
        kk = torch.cat([k[..., :g, :], k[..., lo:e, :]], dim=-2)  # (B, Hkv, S_c, D)
        vv = torch.cat([v[..., :g, :], v[..., lo:e, :]], dim=-2)
        q_pos = torch.arange(c, e, device=q.device)[:, None]  # (T_c, 1)
        keep = (k_pos[None, :] <= q_pos) & ((q_pos - k_pos[None, :] < window) | (k_pos[None, :] < n_global))
        outs.append(attn_fn(q[..., c:e, :], kk, vv, mask=keep, scale=scale))  # (B, H, T_c, D)
    return torch.cat(outs, dim=-2)
    # <<< exercise day33.sliding_window


# ----------------------------------------------------------------------------- linear attention


def elu_feature_map(x):
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al. 2020): a positive feature map for linear attention."""
    return F.elu(x) + 1.0


def linear_attention_reference(q, k, v, eps=1e-6):
    """Causal linear attention in its quadratic form, the one to read.

    out_i = sum_{j<=i} (phi(q_i).phi(k_j)) v_j / sum_{j<=i} phi(q_i).phi(k_j): softmax's exp(q.k)
    replaced by the kernel phi(q).phi(k), written with the (T, T) matrix so it reads like attention.
    q, k, v (B, H|Hkv, T, D) -> (B, H, T, D).
    """
    n_rep = _check_shapes(q, k, v)
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    fq, fk = elu_feature_map(q), elu_feature_map(k)
    T = q.shape[-2]
    a = (fq @ fk.transpose(-2, -1)).masked_fill(~causal_mask(T, T, q.device), 0.0)  # (B, H, T, T)
    return (a @ v) / (a.sum(-1, keepdim=True) + eps)


def linear_attention(q, k, v, chunk=64, eps=1e-6):
    """Causal linear attention in O(T D^2): a running state instead of a (T, T) matrix.

    With S_i = sum_{j<=i} phi(k_j) v_j^T (D x D) and z_i = sum_{j<=i} phi(k_j) (D), the output is
    phi(q_i) S_i / (phi(q_i) . z_i): the cost per token no longer grows with T. Computed chunk by
    chunk: inside a chunk the small masked quadratic form, across chunks the carried S and z (the
    chunked form of Katharopoulos et al. and of later linear-attention and SSM kernels).
    """
    # >>> exercise day33.linear_attention: carry S = sum phi(k) v^T and z = sum phi(k) over chunks, quadratic inside
    n_rep = _check_shapes(q, k, v)
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    fq, fk = elu_feature_map(q), elu_feature_map(k)
    B, H, T, D = q.shape
    state = q.new_zeros(B, H, D, v.shape[-1])  # S: (B, H, D, Dv)
    z = q.new_zeros(B, H, D)  # (B, H, D)
    outs = []
    for c in range(0, T, chunk):
        qc, kc, vc = fq[..., c:c + chunk, :], fk[..., c:c + chunk, :], v[..., c:c + chunk, :]
        Tc = qc.shape[-2]
        a = (qc @ kc.transpose(-2, -1)).masked_fill(~causal_mask(Tc, Tc, q.device), 0.0)  # (B, H, Tc, Tc)
        num = a @ vc + qc @ state  # (B, H, Tc, Dv)
        den = a.sum(-1) + (qc @ z[..., None]).squeeze(-1)  # (B, H, Tc)
        outs.append(num / (den[..., None] + eps))
        state = state + kc.transpose(-2, -1) @ vc
        z = z + kc.sum(-2)
    return torch.cat(outs, dim=-2)
    # <<< exercise day33.linear_attention


# ----------------------------------------------------------------------------- the layer


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with n_kv_head <= n_head key/value heads (MHA, GQA, MQA).

    One fused projection `qkv` makes all queries, keys and values in a single matmul,
    (B, T, d_model) -> (B, T, (n_head + 2 * n_kv_head) * head_dim); `proj` mixes the heads back.
    `pos` selects what happens to positions here: "rope" rotates q and k, "alibi" adds a
    distance bias to the scores, anything else is handled outside (embeddings) or not at all.
    `dropout` applies to the attention weights and to the output (residual dropout).
    """

    def __init__(self, d_model, n_head, n_kv_head=None, bias=True, dropout=0.0, backend="sdpa",
                 pos="learned", rope_base=10000.0, max_seq_len=1024, window=None, n_global=0, kind="mha"):
        super().__init__()
        if kind not in ("mha", "linear"):
            raise ValueError(f"MultiHeadAttention computes kind 'mha' or 'linear', got {kind!r}")
        self.window, self.n_global, self.kind = window, n_global, kind
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        if d_model % n_head or n_head % n_kv_head:
            raise ValueError(f"need n_head | d_model and n_kv_head | n_head, got d_model={d_model}, "
                             f"n_head={n_head}, n_kv_head={n_kv_head}")
        if backend not in ATTENTION_FNS:
            raise ValueError(f"unknown attention backend {backend!r}, choose from {list(ATTENTION_FNS)}")
        if pos not in POSITIONS:
            raise ValueError(f"unknown position scheme {pos!r}, choose from {POSITIONS}")
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, d_model // n_head
        self.dropout, self.backend, self.pos, self.rope_base = dropout, backend, pos, rope_base
        self.rope_dim = self.head_dim  # the features RoPE rotates
        self.attn_fn = ATTENTION_FNS[backend]
        self.qkv = nn.Linear(d_model, (n_head + 2 * n_kv_head) * self.head_dim, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        if pos == "rope":  # computed once; not saved in checkpoints (persistent=False)
            cos, sin = rope_cos_sin(max_seq_len, self.head_dim, rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, hd/2)
            self.register_buffer("rope_sin", sin, persistent=False)

    def _rope(self, start, T):
        """cos, sin for positions start..start+T-1, growing the cached table when needed."""
        if start + T > self.rope_cos.shape[0]:
            n = max(start + T, 2 * self.rope_cos.shape[0])
            cos, sin = rope_cos_sin(n, self.rope_dim, self.rope_base, device=self.rope_cos.device)
            self.rope_cos, self.rope_sin = cos.to(self.rope_cos.dtype), sin.to(self.rope_sin.dtype)
        return self.rope_cos[start:start + T], self.rope_sin[start:start + T]  # (T, hd/2)

    def forward(self, x, mask=None, is_causal=True, kv_cache=None, layer_idx=0, start_pos=0):
        """x (B, T, d_model) -> (B, T, d_model).

        mask: optional bool keep-mask broadcastable to (B, n_head, T, S), e.g. `padding_mask`;
        is_causal: add the causal mask (offset by the cache); kv_cache/layer_idx: see the module
        docstring; start_pos: absolute position of x's first token (RoPE needs it with a cache).
        """
        B, T, C = x.shape
        H, Hkv, hs = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.qkv(x).split([H * hs, Hkv * hs, Hkv * hs], dim=-1)  # (B, T, .) each
        q = q.view(B, T, H, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, Hkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, Hkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if self.pos == "rope":
            cos, sin = self._rope(start_pos, T)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(layer_idx, k, v)  # (B, nkv, S, hs)
        y = self._attend(q, k, v, mask, is_causal, kv_cache is not None)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, nh * hs): heads side by side
        return self.resid_dropout(self.proj(y))

    def _attend(self, q, k, v, mask, is_causal, cached):
        """The attention of already projected (and rotated) q, k, v, by kind, window and position scheme."""
        T, S = q.shape[-2], k.shape[-2]
        if self.kind == "linear":
            if cached or mask is not None or not is_causal:
                raise ValueError("linear attention here is causal self-attention only: no KV cache, no extra mask")
            return linear_attention(q, k, v)
        bias = alibi_bias(self.n_head, T, S, device=q.device, dtype=q.dtype) if self.pos == "alibi" else None
        attn_fn = partial(self.attn_fn, dropout_p=self.dropout, training=self.training)
        if self.window is not None:
            if not cached and mask is None and bias is None and is_causal and T > 2 * self.window:
                return sliding_window_attention(q, k, v, self.window, self.n_global, attn_fn=attn_fn)
            keep = window_mask(T, S, self.window, self.n_global, q.device)  # (T, S), causal included
            mask = keep if mask is None else mask & keep
        return attn_fn(q, k, v, mask=mask, bias=bias, is_causal=is_causal)


class LatentAttention(MultiHeadAttention):
    """Multi-head latent attention (DeepSeek-V2's MLA): cache one small latent per token, not K and V.

    Per token the layer computes a latent c = W_dkv x of `kv_lora_rank` (r) features and, when
    rope_head_dim (d_R) > 0, one shared key of d_R features that carries RoPE ("decoupled RoPE").
    Only these r + d_R numbers per layer go into the KV cache, against 2 * n_kv_head * head_dim
    for MHA/GQA. Every head's key and value are re-made from the latent by one up-projection,
    k_h = [W_uk,h c ; RoPE(W_kr x)] and v_h = W_uv,h c, and the query is [W_q,h x ; RoPE(W_qr,h x)],
    so scores use head size head_dim + d_R. (DeepSeek also compresses the queries; here they
    stay full rank, to keep the idea bare.)

    Cache layout: `kv_cache.update(layer, latent, empty)` with latent (B, 1, T, r + d_R) and an
    empty (B, 1, T, 0) value: `KVCache.for_model` sizes it from `kv_layout(cfg)`. Decoding
    up-projects every cached latent each step; real kernels fold W_uk into the query and W_uv into
    the output projection ("weight absorption") instead, which this layer leaves out.

    The latent is RMS-normalised (a learned gain of r numbers, no bias), as in DeepSeek-V2. Without it
    the keys and values are products of two freshly initialised matrices, far smaller than MHA's at the
    start, and in our runs MLA then learned an induction copy much later than MHA (day 39).
    """

    def __init__(self, d_model, n_head, kv_lora_rank, rope_head_dim=0, bias=True, dropout=0.0, backend="sdpa",
                 pos="learned", rope_base=10000.0, max_seq_len=1024, window=None, n_global=0):
        nn.Module.__init__(self)
        if d_model % n_head:
            raise ValueError(f"need n_head | d_model, got d_model={d_model}, n_head={n_head}")
        if kv_lora_rank < 1:
            raise ValueError(f"MLA needs kv_lora_rank >= 1, got {kv_lora_rank}")
        if rope_head_dim and (pos != "rope" or rope_head_dim % 2):
            raise ValueError(f"rope_head_dim={rope_head_dim} is MLA's decoupled RoPE: it needs pos='rope' "
                             "and an even size; use rope_head_dim=0 with other position schemes")
        if pos == "rope" and not rope_head_dim:
            raise ValueError("MLA with pos='rope' rotates a decoupled key part: set rope_head_dim > 0 "
                             "(e.g. head_dim / 2)")
        if backend not in ATTENTION_FNS:
            raise ValueError(f"unknown attention backend {backend!r}, choose from {list(ATTENTION_FNS)}")
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_head, d_model // n_head
        self.kv_lora_rank, self.rope_head_dim = kv_lora_rank, rope_head_dim
        self.rope_dim = rope_head_dim  # only the decoupled key part is rotated (MultiHeadAttention._rope)
        self.dropout, self.backend, self.pos, self.rope_base = dropout, backend, pos, rope_base
        self.window, self.n_global, self.kind = window, n_global, "mla"
        self.attn_fn = ATTENTION_FNS[backend]
        H, hs, r, dr = n_head, self.head_dim, kv_lora_rank, rope_head_dim
        self.q = nn.Linear(d_model, H * (hs + dr), bias=bias)  # [q_nope (H*hs) ; q_rope (H*dR)]
        self.kv_down = nn.Linear(d_model, r + dr, bias=bias)  # [latent c (r) ; shared rope key (dR)]
        self.kv_norm = nn.RMSNorm(r, eps=1e-6)  # on the latent, as DeepSeek-V2: see the class docstring
        self.kv_up = nn.Linear(r, 2 * H * hs, bias=bias)  # c -> [k_nope (H*hs) ; v (H*hs)]
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        if pos == "rope":
            cos, sin = rope_cos_sin(max_seq_len, dr, rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, dR/2)
            self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, x, mask=None, is_causal=True, kv_cache=None, layer_idx=0, start_pos=0):
        """x (B, T, d_model) -> (B, T, d_model); same arguments as `MultiHeadAttention.forward`."""
        # >>> exercise day39.mla: latent (+ rotated shared key) per token, cached; up-project to per-head k and v
        B, T, C = x.shape
        H, hs, r, dr = self.n_head, self.head_dim, self.kv_lora_rank, self.rope_head_dim
        q = self.q(x).view(B, T, H, hs + dr).transpose(1, 2)  # (B, H, T, hs + dR)
        latent = self.kv_down(x)[:, None]  # (B, 1, T, r + dR): what the cache keeps
        latent = torch.cat([self.kv_norm(latent[..., :r]), latent[..., r:]], dim=-1) if dr else self.kv_norm(latent)
        if dr:
            cos, sin = self._rope(start_pos, T)
            q = torch.cat([q[..., :hs], apply_rope(q[..., hs:], cos, sin)], dim=-1)
            latent = torch.cat([latent[..., :r], apply_rope(latent[..., r:], cos, sin)], dim=-1)
        if kv_cache is not None:
            latent, _ = kv_cache.update(layer_idx, latent, latent[..., :0])  # (B, 1, S, r + dR)
        S = latent.shape[-2]
        kv = self.kv_up(latent[:, 0, :, :r]).view(B, S, 2, H, hs)  # (B, S, 2, H, hs)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)  # (B, H, S, hs) each
        if dr:  # the one rotated key part, shared by every head
            k = torch.cat([k, latent[..., r:].expand(B, H, S, dr)], dim=-1)  # (B, H, S, hs + dR)
        y = self._attend(q, k, v, mask, is_causal, kv_cache is not None)  # (B, H, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))
        # <<< exercise day39.mla


def copy_from_torch_mha(ours, ref):
    """Load the weights of `torch.nn.MultiheadAttention(d, n_head, batch_first=True)` into `ours`.

    Both stack q, k, v row-wise in one (3d, d) input projection and use one (d, d) output
    projection, so the copy is one-to-one when n_kv_head == n_head and the bias settings agree.
    """
    if ours.n_kv_head != ours.n_head or ref.in_proj_weight is None:
        raise ValueError("copy needs n_kv_head == n_head and a torch MHA with packed in_proj_weight")
    if (ours.qkv.bias is None) != (ref.in_proj_bias is None):
        raise ValueError("bias settings differ between the two layers")
    with torch.no_grad():
        ours.qkv.weight.copy_(ref.in_proj_weight)  # (3d, d): rows [W_q; W_k; W_v]
        ours.proj.weight.copy_(ref.out_proj.weight)
        if ours.qkv.bias is not None:
            ours.qkv.bias.copy_(ref.in_proj_bias)
            ours.proj.bias.copy_(ref.out_proj.bias)
    return ours
