"""The pieces of a transformer block besides attention: norms, GELU, the MLP, and the block.

Each fast module (calling PyTorch's fused kernel) sits next to a `*_reference` function that
spells out the math; the tests check one against the other. Variants are names looked up in
dicts (`NORMS`, `MLP_ACTS`), chosen by config fields: `norm="layer"|"rms"`,
`mlp="gelu"|"gelu_tanh"|"swiglu"`.

`common/nn/attention.py` holds the attention sub-layer; `common/nn/model.py` stacks `Block`s into a GPT.
"""

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.nn.attention import LatentAttention, MultiHeadAttention

_LOW_PRECISION = (torch.float16, torch.bfloat16)

# ----------------------------------------------------------------------------- norms


def layer_norm_reference(x, weight=None, bias=None, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim (biased variance, as torch).

    float16/bfloat16 inputs are normalised in float32 and returned in their own dtype.
    """
    # >>> exercise day06.layer_norm: normalise over the last dim with the biased variance, then weight and bias
    xf = x.float() if x.dtype in _LOW_PRECISION else x
    mean = xf.mean(dim=-1, keepdim=True)
    var = ((xf - mean) ** 2).mean(dim=-1, keepdim=True)
    y = (xf - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.to(x.dtype)
    # <<< exercise day06.layer_norm


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nn.LayerNorm's bias=False came late; GPT-2 used one).

    Runs F.layer_norm, whose CPU and CUDA kernels accumulate mean and variance in float32 for
    float16/bfloat16 inputs and return the input dtype, like `layer_norm_reference`.
    """

    def __init__(self, dim, eps=1e-5, bias=True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


def rms_norm_reference(x, weight=None, eps=1e-6):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without centring and without bias."""
    xf = x.float() if x.dtype in _LOW_PRECISION else x
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (y if weight is None else y * weight).to(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019, used by Llama): a learned scale, no bias, via F.rms_norm."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


NORMS = {"layer": LayerNorm, "rms": RMSNorm}


def make_norm(name, dim, bias=True):
    """NORMS[name] for `dim` features; `bias` only concerns LayerNorm (RMSNorm never has one)."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}, choose from {list(NORMS)}")
    return LayerNorm(dim, bias=bias) if name == "layer" else NORMS[name](dim)


# ----------------------------------------------------------------------------- GELU


def gelu_reference(x, approximate="none"):
    """GELU(x) = x * Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel 2016).

    "none": exact, Phi(x) = (1 + erf(x / sqrt 2)) / 2 (nn.GELU's default, used by nanoGPT).
    "tanh": GPT-2's approximation, Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2.
    """
    # >>> exercise day08.gelu: x Phi(x), exact (erf) or GPT-2's tanh approximation
    if approximate == "none":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if approximate == "tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    # <<< exercise day08.gelu


class GELU(nn.Module):
    """GELU through the fused F.gelu; same math as `gelu_reference`."""

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)


# ----------------------------------------------------------------------------- MLP


def swiglu(h):
    """silu(gate) * value, with gate and value the two halves of h's last dim."""
    gate, value = h.chunk(2, dim=-1)  # (..., hidden) each
    return F.silu(gate) * value


# activation name -> (number of hidden branches fed by `fc`, function of fc's output)
MLP_ACTS = {
    "gelu": (1, F.gelu),  # exact erf GELU, as nn.GELU() in nanoGPT
    "gelu_tanh": (1, partial(F.gelu, approximate="tanh")),  # GPT-2's original
    "swiglu": (2, swiglu),
}


def mlp_hidden_dim(d, mlp_ratio, act):
    """Hidden width: mlp_ratio * d for GELU; for SwiGLU 2/3 of that, rounded up to a multiple of 8.

    SwiGLU has three matrices instead of two, so Llama shrinks the hidden width by 2/3 to keep
    the parameter count (and FLOPs) of the GELU MLP it replaces.
    """
    hidden = int(mlp_ratio * d)
    if MLP_ACTS[act][0] == 2:
        hidden = 8 * math.ceil(2 * hidden / 3 / 8)
    return hidden


class MLP(nn.Module):
    """Position-wise feed-forward: proj(act(fc(x))), then dropout.

    "swiglu" makes fc twice as wide and splits its output into a gate and a value,
    silu(gate) * value (Shazeer 2020): one matmul for both instead of two.
    """

    def __init__(self, d, hidden, bias=False, dropout=0.0, act="gelu"):
        super().__init__()
        if act not in MLP_ACTS:
            raise ValueError(f"unknown MLP activation {act!r}, choose from {list(MLP_ACTS)}")
        n_branches, self.act = MLP_ACTS[act]
        self.fc = nn.Linear(d, n_branches * hidden, bias=bias)
        self.proj = nn.Linear(hidden, d, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.proj(self.act(self.fc(x))))


class MoE(nn.Module):
    """A top-k mixture-of-experts MLP: a router sends each token to k of `n_expert` MLPs.

    router logits (N, E) -> softmax probs p; each token keeps its k largest, renormalised to sum
    to 1 (the gates), and its output is sum_k gate_k * expert_k(x). Only k experts run per token,
    so parameters grow with E while FLOPs per token grow with k. `aux_loss` after a forward is
    the Switch Transformer's load-balancing loss E * sum_e f_e * P_e, with f_e the share of the
    N * k assignments that went to expert e and P_e the mean router probability of e: 1 when
    both are uniform (1/E), larger when the router favours a few experts.
    """

    def __init__(self, d, hidden, n_expert, top_k=2, bias=False, dropout=0.0, act="gelu"):
        super().__init__()
        if not 1 <= top_k <= n_expert:
            raise ValueError(f"need 1 <= expert_top_k <= n_expert, got top_k={top_k}, n_expert={n_expert}")
        self.n_expert, self.top_k = n_expert, top_k
        self.router = nn.Linear(d, n_expert, bias=False)
        self.experts = nn.ModuleList(MLP(d, hidden, bias=bias, dropout=0.0, act=act) for _ in range(n_expert))
        self.dropout = nn.Dropout(dropout)
        self.aux_loss = torch.zeros(())
        self.last_load = torch.zeros(n_expert)  # share of assignments per expert in the last forward

    def forward(self, x):
        # >>> exercise day39.moe: route each token to its top-k experts, gate-weighted sum, load-balancing loss
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, d)
        probs = F.softmax(self.router(x).float(), dim=-1)  # (N, E), float32 for the routing
        top_p, top_i = probs.topk(self.top_k, dim=-1)  # (N, k)
        gates = (top_p / top_p.sum(-1, keepdim=True)).to(x.dtype)  # (N, k), rows sum to 1
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows, slot = (top_i == e).nonzero(as_tuple=True)  # tokens sent to e, and in which of their k slots
            if rows.numel():
                out.index_add_(0, rows, gates[rows, slot, None] * expert(x[rows]))
        load = F.one_hot(top_i, self.n_expert).float().sum((0, 1)) / top_i.numel()  # f_e, (E,)
        self.aux_loss = self.n_expert * (load * probs.mean(0)).sum()
        self.last_load = load.detach()
        return self.dropout(out.view(shape))
        # <<< exercise day39.moe


# ----------------------------------------------------------------------------- block


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)).

    Reads these fields of a GPTConfig (`common/nn/model.py`): n_embd, n_head, n_kv_head, bias,
    dropout, attn_backend, pos, rope_base, block_size, norm, mlp, mlp_ratio, and the sprint-4
    variants: attn ("mha" | "mla" | "linear"), kv_lora_rank, rope_head_dim, window, n_global,
    n_expert, expert_top_k (an MoE in place of the MLP when n_expert > 0). Residual dropout
    is applied at the end of each sub-layer (inside `MultiHeadAttention` and `MLP`), as nanoGPT.
    """

    def __init__(self, cfg, layer_idx=0):
        super().__init__()
        self.layer_idx = layer_idx
        self.ln_1 = make_norm(cfg.norm, cfg.n_embd, cfg.bias)
        common = dict(bias=cfg.bias, dropout=cfg.dropout, backend=cfg.attn_backend, pos=cfg.pos,
                      rope_base=cfg.rope_base, max_seq_len=cfg.block_size, window=cfg.window, n_global=cfg.n_global)
        if cfg.attn == "mla":
            self.attn = LatentAttention(cfg.n_embd, cfg.n_head, cfg.kv_lora_rank, cfg.rope_head_dim, **common)
        else:
            self.attn = MultiHeadAttention(cfg.n_embd, cfg.n_head, cfg.n_kv_head, kind=cfg.attn, **common)
        self.ln_2 = make_norm(cfg.norm, cfg.n_embd, cfg.bias)
        hidden = mlp_hidden_dim(cfg.n_embd, cfg.mlp_ratio, cfg.mlp)
        if cfg.n_expert:
            self.mlp = MoE(cfg.n_embd, hidden, cfg.n_expert, cfg.expert_top_k, bias=cfg.bias, dropout=cfg.dropout,
                           act=cfg.mlp)
        else:
            self.mlp = MLP(cfg.n_embd, hidden, bias=cfg.bias, dropout=cfg.dropout, act=cfg.mlp)

    def forward(self, x, mask=None, kv_cache=None, start_pos=0):
        """x (B, T, n_embd) -> (B, T, n_embd); always causal, optionally with an extra keep-mask."""
        # >>> exercise day07.block: pre-norm residual block: x + attn(ln_1(x)), then x + mlp(ln_2(x))
        x = x + self.attn(self.ln_1(x), mask=mask, kv_cache=kv_cache, layer_idx=self.layer_idx,
                          start_pos=start_pos)
        return x + self.mlp(self.ln_2(x))
        # <<< exercise day07.block
