"""The configurable decoder-only transformer: GPT-2 style to Llama style by config, not by class.

`GPTConfig` is one flat dataclass; `PRESETS` names the sizes every day uses, and
`gpt_config("baby", dropout=0.1)` builds one with overrides. `GPT` is embeddings -> `Block`s ->
final norm -> tied output head, with GPT-2's initialisation. `count_params_formula` is the
closed-form parameter count the tests check against the model.

The building blocks live in `common/nn/layers.py` (norms, MLP, block), `common/nn/attention.py`
(attention, masks, KV-cache protocol) and `common/nn/positional.py` (position schemes).
"""

import dataclasses
import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.nn.attention import ATTENTION_FNS
from common.nn.layers import MLP_ACTS, NORMS, Block, make_norm, mlp_hidden_dim
from common.nn.positional import POSITIONS, sinusoidal_table

ATTN_KINDS = ("mha", "mla", "linear")  # the attention a Block builds (common/nn/attention.py)


@dataclass
class GPTConfig:
    vocab_size: int = 65  # 65 characters of tiny Shakespeare; a GPU run pads to a multiple of 64
    block_size: int = 256  # context length: attention cost grows as its square
    n_layer: int = 6  # depth: more layers compose more steps, but run strictly in sequence
    n_head: int = 6  # more heads = more attention patterns, each of n_embd / n_head dims
    n_embd: int = 384  # width: params and FLOPs grow as its square
    n_kv_head: int | None = None  # None = n_head (MHA); fewer = GQA, 1 = MQA: smaller KV cache
    dropout: float = 0.0  # regularises small data; 0 for big data and for benchmarks
    bias: bool = False  # biases in Linear/LayerNorm (GPT-2: True); without: fewer params, as good
    pos: str = "learned"  # one of POSITIONS; learned caps the length at block_size, rope/alibi don't
    norm: str = "layer"  # "layer" (GPT-2) or "rms" (Llama): RMS skips centring, slightly cheaper
    mlp: str = "gelu"  # "gelu" (exact erf), "gelu_tanh" (GPT-2) or "swiglu" (Llama, 2/3 width)
    mlp_ratio: float = 4  # MLP hidden width / n_embd
    attn_backend: str = "sdpa"  # "sdpa" (fused kernels, fast) or "manual" (readable, returns weights)
    tie_weights: bool = True  # lm_head shares wte's matrix: V * n_embd fewer params, no loss in quality
    rope_base: float = 10000.0  # RoPE's longest wavelength / 2 pi; larger suits longer contexts
    init_std: float = 0.02  # GPT-2's init; residual projections get init_std / sqrt(2 n_layer)
    # sprint 4: attention and MLP variants (days 31-39), all off by default
    attn: str = "mha"  # "mha" (MHA/GQA/MQA by n_kv_head), "mla" (latent KV, DeepSeek-V2) or "linear" (no softmax)
    kv_lora_rank: int = 0  # MLA: latent features cached per token and layer (instead of 2 n_kv_head head_dim)
    rope_head_dim: int = 0  # MLA with pos="rope": size of the decoupled rotated key shared by all heads
    window: int | None = None  # sliding-window attention: each query sees its last `window` keys (+ globals)
    n_global: int = 0  # with a window: the first n_global tokens stay visible to every query
    n_expert: int = 0  # > 0: a top-k mixture of n_expert MLPs in every block instead of one MLP
    expert_top_k: int = 2  # experts run per token
    moe_aux_weight: float = 0.01  # weight of the load-balancing loss added to the training loss

    def __post_init__(self):
        choices = {"pos": POSITIONS, "norm": NORMS, "mlp": MLP_ACTS, "attn_backend": ATTENTION_FNS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {list(allowed)}")
        n_kv = self.n_head if self.n_kv_head is None else self.n_kv_head
        if self.n_embd % self.n_head or self.n_head % n_kv:
            raise ValueError(f"need n_embd divisible by n_head and n_head by n_kv_head, got n_embd="
                             f"{self.n_embd}, n_head={self.n_head}, n_kv_head={self.n_kv_head}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"RoPE needs an even head size, got {self.n_embd // self.n_head}")
        if self.attn not in ATTN_KINDS:
            raise ValueError(f"attn={self.attn!r} is not one of {list(ATTN_KINDS)}")
        if self.attn == "mla" and (self.kv_lora_rank < 1 or self.n_kv_head not in (None, self.n_head)):
            raise ValueError("attn='mla' needs kv_lora_rank >= 1 and no n_kv_head "
                             "(every head is rebuilt from the latent)")
        if self.attn != "mla" and (self.kv_lora_rank or self.rope_head_dim):
            raise ValueError("kv_lora_rank and rope_head_dim are MLA settings: set attn='mla' to use them")
        if self.window is not None and (self.window < 1 or self.attn == "linear"):
            raise ValueError(f"window must be >= 1 and needs softmax attention, got window={self.window}, "
                             f"attn={self.attn!r}")
        if self.n_global and self.window is None:
            raise ValueError("n_global (global tokens) only has a meaning with a sliding window: set window")
        if self.n_expert and not 1 <= self.expert_top_k <= self.n_expert:
            raise ValueError(f"need 1 <= expert_top_k <= n_expert, got {self.expert_top_k} and {self.n_expert}")


PRESETS = {
    "nano": dict(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32),  # tests: seconds
    # nanoGPT's CPU "baby Shakespeare" (README), ~0.80M params: the laptop default
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False),
    # nanoGPT's train_shakespeare_char (GPU), ~10.65M params without position embeddings
    "shakespeare": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False),
}
PRESETS["cpu"], PRESETS["gpu"] = PRESETS["baby"], PRESETS["shakespeare"]  # the day-config names


def gpt_config(name, **overrides):
    """PRESETS[name] with overrides on top, e.g. gpt_config("nano", pos="rope")."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}, choose from {list(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown GPTConfig field(s) {unknown}; valid: {sorted(fields)}")
    return GPTConfig(**{**PRESETS[name], **overrides})


def gpt_config_for(day_cfg, preset="baby", **overrides):
    """A GPTConfig from a day's flat config: every field the two share (n_layer, n_embd, ...) is
    taken from `day_cfg`, the rest from `preset`; `overrides` (e.g. vocab_size) win."""
    shared = {f.name: getattr(day_cfg, f.name) for f in dataclasses.fields(GPTConfig) if hasattr(day_cfg, f.name)}
    return gpt_config(preset, **{**shared, **overrides})


# The named shapes the course trains or budgets: sprint 1's presets and sprint 3's pretraining
# candidates (a CPU size, and 20-50M-parameter GPU sizes with a 16k/32k SentencePiece vocabulary).
# Day 24 counts and exports them; days 23, 25 and 30 build them by name.
SHAPES = {
    "nano": gpt_config("nano"),
    "day07_default": gpt_config("baby", n_embd=64),
    "baby": gpt_config("baby"),
    "shakespeare_gpu": gpt_config("shakespeare"),
    "pretrain_cpu": GPTConfig(vocab_size=16000, block_size=256, n_layer=4, n_head=4, n_embd=256),
    "pretrain_27m": GPTConfig(vocab_size=16000, block_size=512, n_layer=6, n_head=8, n_embd=512),
    "pretrain_42m": GPTConfig(vocab_size=32000, block_size=512, n_layer=8, n_head=8, n_embd=512),
    "pretrain_48m_llama": GPTConfig(vocab_size=32000, block_size=1024, n_layer=8, n_head=8, n_embd=576,
                                    n_kv_head=4, pos="rope", norm="rms", mlp="swiglu"),
}


VARIANTS = ("mha", "gqa", "mqa", "mla", "sliding", "moe")  # sprint 4's named variants (days 31-40)


def variant_fields(name: str, *, kv_groups: int = 2, mla_rank: int = 48, mla_rope_dim: int = 8, window: int = 32,
                   n_global: int = 4, n_expert: int = 4) -> dict:
    """The GPTConfig fields that turn an MHA model (with pos="rope") into sprint 4's variant `name`.

    gqa: `kv_groups` key/value heads; mqa: one; mla: a latent of `mla_rank` plus a rotated key of
    `mla_rope_dim`; sliding: a `window` with `n_global` global tokens; moe: `n_expert` experts, top-2,
    each half as wide as the dense MLP (the same active FLOPs per token). Days 39 and 40 build from it.
    """
    table = {
        "mha": {},
        "gqa": dict(n_kv_head=kv_groups),
        "mqa": dict(n_kv_head=1),
        "mla": dict(attn="mla", kv_lora_rank=mla_rank, rope_head_dim=mla_rope_dim),
        "sliding": dict(window=window, n_global=n_global),
        "moe": dict(n_expert=n_expert, expert_top_k=2, mlp_ratio=2),
    }
    if name not in table:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return table[name]


class GPT(nn.Module):
    """Decoder-only language model: idx (B, T) -> logits (B, T, vocab_size)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.pos == "learned":
            self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        elif cfg.pos == "sinusoidal":  # fixed, so a buffer; rebuilt on load, not saved
            self.register_buffer("wpe_table", sinusoidal_table(cfg.block_size, cfg.n_embd),
                                 persistent=False)  # (block_size, n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = make_norm(cfg.norm, cfg.n_embd, cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:  # one matrix both reads tokens in and scores them out
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: each residual branch adds to the stream 2 * n_layer times in all; scale its
        # output projection so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.proj.weight")):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None, kv_cache=None, start_pos=0):
        """idx (B, T) token ids at positions start_pos.. -> (logits (B, T, V), loss or None).

        targets (B, T): next-token ids, -1 to ignore; the loss is the mean cross-entropy.
        kv_cache: an object with `update(layer_idx, k, v)` (see `common/nn/attention.py`).
        """
        B, T = idx.shape
        cfg = self.cfg
        x = self.wte(idx)  # (B, T, C)
        if cfg.pos == "learned":
            if start_pos + T > cfg.block_size:
                raise ValueError(f"positions up to {start_pos + T} exceed block_size={cfg.block_size} "
                                 "of the learned position table; crop the input to the last "
                                 f"{cfg.block_size} tokens or use pos='rope'/'alibi'")
            x = x + self.wpe(torch.arange(start_pos, start_pos + T, device=idx.device))  # (T, C)
        elif cfg.pos == "sinusoidal":
            if start_pos + T > self.wpe_table.shape[0]:  # fixed formula: extend on demand
                table = sinusoidal_table(2 * (start_pos + T), cfg.n_embd, device=idx.device)
                self.wpe_table = table.to(self.wpe_table.dtype)
            x = x + self.wpe_table[start_pos:start_pos + T]  # (T, C)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, kv_cache=kv_cache, start_pos=start_pos)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T), ignore_index=-1)
            if cfg.n_expert and self.training:  # load balancing, in training only: eval losses stay pure CE
                loss = loss + cfg.moe_aux_weight * sum(b.mlp.aux_loss for b in self.blocks)
        return logits, loss

    def num_params(self, non_embedding=False):
        """Unique parameters (a tied matrix counts once).

        non_embedding=True drops the learned position table, as nanoGPT reports its "10.65M"; the
        token embedding stays, since tied it is also the output layer.
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() yields shared ones once
        if non_embedding and self.cfg.pos == "learned":
            n -= self.wpe.weight.numel()
        return n

    def configure_optimizer(self, weight_decay, lr, betas=(0.9, 0.95), device_type="cpu"):
        """AdamW with weight decay on every >= 2-D tensor (matmul weights and embeddings), none on
        biases and norm gains.

        Embeddings are decayed, as in nanoGPT, so runs compare with it; Llama-style recipes often
        exempt them. The fused kernel (one op for all tensors) is used on CUDA and CPU when
        available, else the multi-tensor foreach path.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        fused_ok = "fused" in inspect.signature(torch.optim.AdamW).parameters
        fused = fused_ok and device_type in ("cuda", "cpu")
        kwargs = {"fused": True} if fused else {"foreach": True}
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **kwargs)


def attn_matmul_shapes(cfg):
    """(in_features, out_features) of each Linear in one attention layer of GPT(cfg).

    MHA/GQA/MQA/linear: the fused qkv (C -> (H + 2 Hkv) hs) and the output projection (C -> C).
    MLA: queries C -> H (hs + dR), the down-projection C -> r + dR, the up-projection
    r -> 2 H hs, and the output projection.
    """
    C, H = cfg.n_embd, cfg.n_head
    hs = C // H
    if cfg.attn == "mla":
        r, dr = cfg.kv_lora_rank, cfg.rope_head_dim
        return [(C, H * (hs + dr)), (C, r + dr), (r, 2 * H * hs), (C, C)]
    return [(C, (H + 2 * (cfg.n_kv_head or H)) * hs), (C, C)]


def count_params_formula(cfg, non_embedding=False):
    """The parameter count of GPT(cfg), in closed form from the config."""
    # >>> exercise day24.param_count: count every weight of GPT(cfg) from the config: blocks, norms, embeddings
    C, V, L = cfg.n_embd, cfg.vocab_size, cfg.n_layer
    outs = attn_matmul_shapes(cfg)  # (in, out) of every attention matmul
    attn = sum(i * o + (o if cfg.bias else 0) for i, o in outs)
    if cfg.attn == "mla":
        attn += cfg.kv_lora_rank  # the latent's RMSNorm gain
    hidden = mlp_hidden_dim(C, cfg.mlp_ratio, cfg.mlp)
    fc_out = MLP_ACTS[cfg.mlp][0] * hidden
    mlp = C * fc_out + hidden * C + (fc_out + C if cfg.bias else 0)  # fc and proj
    if cfg.n_expert:
        mlp = cfg.n_expert * mlp + C * cfg.n_expert  # E experts and a bias-free router
    norm = 2 * C if cfg.norm == "layer" and cfg.bias else C
    total = L * (attn + mlp + 2 * norm) + norm + V * C  # blocks, final norm, token embedding
    if not cfg.tie_weights:
        total += V * C  # a separate lm_head
    if cfg.pos == "learned" and not non_embedding:
        total += cfg.block_size * C
    return total
    # <<< exercise day24.param_count


def flops_per_token(cfg, seq_len=None, training=True):
    """Matmul FLOPs per token of GPT(cfg) at context `seq_len` (default block_size), in closed form.

    Forward: 2 per weight of every matrix multiply (q, k, v, output, MLP, lm_head) plus the
    attention scores and the weighted sum, 2 * T * C each per layer (all T keys, as computed
    without skipping the masked half). Training (forward + backward) is 3x forward. Norms,
    softmax and elementwise ops are left out: they are a few percent at these sizes. Equals
    `torch.utils.flop_counter.FlopCounterMode` on the forward pass (tested).
    """
    # >>> exercise day24.flops_per_token: 2 FLOPs per matmul weight plus 4 T C per layer for attention; x3 for training
    C, L, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    T = seq_len or cfg.block_size
    hidden = mlp_hidden_dim(C, cfg.mlp_ratio, cfg.mlp)
    mlp = C * MLP_ACTS[cfg.mlp][0] * hidden + hidden * C
    if cfg.n_expert:  # the router, and k experts per token
        mlp = C * cfg.n_expert + cfg.expert_top_k * mlp
    matmul_weights = L * (sum(i * o for i, o in attn_matmul_shapes(cfg)) + mlp) + V * C
    forward = 2 * matmul_weights + L * attention_flops_per_token(cfg, T)
    return 3 * forward if training else forward
    # <<< exercise day24.flops_per_token


def attention_flops_per_token(cfg, T):
    """Forward FLOPs per token and layer of the attention itself (scores and weighted sum), context T.

    Softmax attention: 2 T H (hs + dR) for the scores (dR = 0 except MLA) and 2 T H hs for the
    weighted sum of values, over all T keys as computed (masked entries included). With a window
    and T > 2 window the band is computed instead (`sliding_window_attention`): on average fewer
    than 2 window + n_global keys per query, counted chunk by chunk here.
    Linear attention (chunks of 64): the masked quadratic form inside a chunk (4 * chunk * C), then
    reading and updating the (hs x hs) state of each head (4 * C * hs) and the normaliser (2 C).
    """
    C, H = cfg.n_embd, cfg.n_head
    hs = C // H
    if cfg.attn == "linear":
        return 4 * min(64, T) * C + 4 * C * hs + 2 * C
    keys = T
    if cfg.window is not None and T > 2 * cfg.window:
        w, g = cfg.window, cfg.n_global
        total = sum((min(c + w, T) - c) * (min(g, max(0, c - w + 1)) + min(c + w, T) - max(0, c - w + 1))
                    for c in range(0, T, w))  # keys read by each chunk's queries, as sliding_window_attention
        keys = total / T
    return 2 * keys * H * (hs + cfg.rope_head_dim) + 2 * keys * C


def non_embedding_params(cfg) -> int:
    """Parameters outside the token table(s) and the learned position table (Kaplan's N, day 23)."""
    return count_params_formula(cfg, non_embedding=True) - cfg.vocab_size * cfg.n_embd * (1 if cfg.tie_weights else 2)
