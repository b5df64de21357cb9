"""Position information for a decoder: sinusoidal tables, RoPE and ALiBi.

A transformer's attention is blind to order, so every model picks one of `POSITIONS`:

- "learned":    a trainable (block_size, d) table added to the token embeddings (GPT-2).
                It is an `nn.Embedding` in `common/nn/model.py`; nothing to compute here.
- "sinusoidal": a fixed table of sines and cosines added to the embeddings (Vaswani et al. 2017).
- "rope":       rotate each query/key pair of features by an angle proportional to the position
                (Su et al. 2021), so q.k depends only on the *distance* between the tokens.
- "alibi":      no embedding at all; add -slope * distance to the attention scores
                (Press et al. 2021), one slope per head.
- "none":       nothing (a causal decoder can still infer position from the mask, weakly).

Unlike `common/nn/attention.py`, which *uses* these (RoPE on q and k, ALiBi as the score bias),
this file only holds the tables and is pure tensor math without modules or parameters.
"""

import math

import torch

POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")


def sinusoidal_table(T, d, base=10000.0, device=None, dtype=torch.float32):
    """The fixed (T, d) table of "Attention Is All You Need".

    PE[t, 2i] = sin(t / base^(2i/d)) and PE[t, 2i+1] = cos(t / base^(2i/d)): sines and cosines
    interleaved, wavelengths from 2*pi to base*2*pi. An odd d drops the last cosine column.

    >>> sinusoidal_table(2, 4)
    tensor([[0.0000, 1.0000, 0.0000, 1.0000],
            [0.8415, 0.5403, 0.0100, 0.9999]])
    """
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)  # (ceil(d/2),)
    angles = pos * inv_freq  # (T, ceil(d/2))
    table = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (T, ceil(d/2), 2)
    return table.flatten(1)[:, :d].to(dtype)  # (T, d): sin, cos, sin, cos, ...


# ----------------------------------------------------------------------------- RoPE
# Convention: "rotate half" (GPT-NeoX, Llama in Hugging Face, nanochat). Feature i is paired with
# feature i + head_dim/2, and that pair is rotated by angle t * base^(-2i/head_dim). The other
# common convention pairs neighbours (2i, 2i+1) as in the RoFormer paper; the two give the same
# model up to a fixed permutation of the q/k features, but checkpoints are not interchangeable.


def rope_cos_sin(T, head_dim, base=10000.0, device=None, dtype=torch.float32):
    """cos and sin of the rotation angles, each (T, head_dim // 2), computed in float32.

    Row t holds the angles t * theta_i with theta_i = base^(-2i/head_dim), i < head_dim/2:
    fast rotations for the first pairs, slow (long-range) ones for the last.
    """
    # >>> exercise day09.rope_angles: cos and sin of t * base^(-2i/head_dim), (T, head_dim // 2), in float32
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv_freq)  # (T, hd/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)
    # <<< exercise day09.rope_angles


def apply_rope(x, cos, sin):
    """Rotate x (..., T, head_dim) by the angles of cos/sin (T, head_dim // 2); same shape out.

    With x = (x1, x2) split in halves: (x1 cos - x2 sin, x1 sin + x2 cos), the 2-D rotation
    of every pair (x1[i], x2[i]). A rotation keeps norms, and R_m^T R_n = R_(n-m), so
    <R_m q, R_n k> depends on m - n only. cos/sin are cast to x's dtype.
    """
    # >>> exercise day09.apply_rope: rotate each pair (x1[i], x2[i]) of the two halves by its angle
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)  # (..., T, hd/2) each
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (..., T, hd)
    # <<< exercise day09.apply_rope


# ----------------------------------------------------------------------------- ALiBi


def alibi_slopes(n_head):
    """The per-head slopes of ALiBi, a list of n_head floats.

    For n a power of 2: the geometric sequence start, start^2, ..., start^n with start = 2^(-8/n)
    (n = 8 gives 1/2, 1/4, ..., 1/256). Otherwise, as in the paper's code: the slopes of the
    closest power of 2 below, m, then every other slope of 2m until there are n_head.

    >>> alibi_slopes(4)
    [0.25, 0.0625, 0.015625, 0.00390625]
    >>> alibi_slopes(3)
    [0.0625, 0.00390625, 0.25]
    """
    def power_of_2(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    m = 2 ** math.floor(math.log2(n_head))
    if m == n_head:
        return power_of_2(n_head)
    return power_of_2(m) + power_of_2(2 * m)[0::2][: n_head - m]


def alibi_bias(n_head, T, S=None, device=None, dtype=torch.float32):
    """Additive attention bias (n_head, T, S): bias[h, i, j] = -slope_h * (pos_i - j).

    Query i sits at absolute position pos_i = S - T + i (the last T of S keys, as with a KV
    cache). Future keys (j > pos_i) get a positive bias, which the causal mask removes anyway.
    """
    # >>> exercise day09.alibi_bias: bias[h, i, j] = -slope_h * (pos_i - j), queries the last T of S positions
    S = T if S is None else S
    slopes = torch.tensor(alibi_slopes(n_head), device=device, dtype=torch.float32)  # (H,)
    q_pos = torch.arange(S - T, S, device=device, dtype=torch.float32)  # (T,)
    k_pos = torch.arange(S, device=device, dtype=torch.float32)  # (S,)
    distance = q_pos[:, None] - k_pos[None, :]  # (T, S)
    return (-slopes[:, None, None] * distance).to(dtype)  # (H, T, S)
    # <<< exercise day09.alibi_bias
