"""Weights in and out of Hugging Face `transformers`: GPT-2 and Llama checkpoints <-> our `GPT`.

    cfg = gpt_config_from_hf(hf_model.config)       # a GPTConfig with the same architecture
    ours = gpt_from_hf(hf_model)                    # a GPT holding hf_model's weights
    hf = gpt_to_hf(ours)                            # and back: GPT2LMHeadModel or LlamaForCausalLM

Two families, one mapping table each, read in both directions:

- **GPT-2** (`GPT2LMHeadModel`): biases everywhere, LayerNorm, tanh GELU, learned positions, tied
  output head. GPT-2 stores its linear layers as `Conv1D`, weight shape (in, out), the transpose of
  `nn.Linear`'s (out, in); `c_attn` already fuses q, k and v in our `qkv` order.
- **Llama** (`LlamaForCausalLM`): no biases, RMSNorm, SwiGLU, RoPE, grouped-query attention. Our
  `qkv` is HF's q_proj, k_proj and v_proj stacked; our `mlp.fc` is gate_proj over up_proj (the
  first half of its output is the gate, see `layers.swiglu`).

RoPE conventions. A rotary embedding rotates pairs of coordinates of each head; which pairs is a
convention. We rotate (x[i], x[i + d/2]) (the "half split", `positional.apply_rope`), as HF's Llama
does (`rotate_half`), so HF weights copy over unchanged. Meta's original Llama code rotates
adjacent pairs (x[2i], x[2i+1]); HF's conversion script permutes the rows of q_proj and k_proj
once, head by head, to move from one to the other, and a checkpoint in Meta's layout would need
that same permutation (`interleaved_to_half`) before it matches us. The test of this module checks
both: HF weights give our logits unchanged, and Meta-layout weights do only after the permutation.

`transformers` is imported only inside the functions (it is slow to import).
"""

from __future__ import annotations

import dataclasses

import torch

from common.nn.layers import mlp_hidden_dim
from common.nn.model import GPT, GPTConfig

# (our name, HF name, transpose?) per block; {i} is the layer index.
GPT2_BLOCK = [("ln_1.weight", "ln_1.weight", False), ("ln_1.bias", "ln_1.bias", False),
              ("attn.qkv.weight", "attn.c_attn.weight", True), ("attn.qkv.bias", "attn.c_attn.bias", False),
              ("attn.proj.weight", "attn.c_proj.weight", True), ("attn.proj.bias", "attn.c_proj.bias", False),
              ("ln_2.weight", "ln_2.weight", False), ("ln_2.bias", "ln_2.bias", False),
              ("mlp.fc.weight", "mlp.c_fc.weight", True), ("mlp.fc.bias", "mlp.c_fc.bias", False),
              ("mlp.proj.weight", "mlp.c_proj.weight", True), ("mlp.proj.bias", "mlp.c_proj.bias", False)]
GPT2_TOP = [("wte.weight", "transformer.wte.weight"), ("wpe.weight", "transformer.wpe.weight"),
            ("ln_f.weight", "transformer.ln_f.weight"), ("ln_f.bias", "transformer.ln_f.bias")]
LLAMA_BLOCK = [("ln_1.weight", "input_layernorm.weight"), ("ln_2.weight", "post_attention_layernorm.weight"),
               ("attn.proj.weight", "self_attn.o_proj.weight"), ("mlp.proj.weight", "mlp.down_proj.weight")]
LLAMA_TOP = [("wte.weight", "model.embed_tokens.weight"), ("ln_f.weight", "model.norm.weight")]


def family(hf_config) -> str:
    """'gpt2' or 'llama' from a transformers config; anything else is not mapped."""
    kind = getattr(hf_config, "model_type", "")
    if kind not in ("gpt2", "llama"):
        raise ValueError(f"no weight mapping for model_type {kind!r}; supported: gpt2, llama")
    return kind


def gpt_config_from_hf(hf_config) -> GPTConfig:
    """The GPTConfig whose model has exactly the architecture of `hf_config`."""
    if family(hf_config) == "gpt2":
        c = hf_config
        if c.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"GPT-2 activation {c.activation_function!r} has no GPTConfig equivalent")
        return GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                         n_embd=c.n_embd, bias=True, pos="learned", norm="layer", mlp="gelu_tanh",
                         mlp_ratio=(c.n_inner or 4 * c.n_embd) / c.n_embd, tie_weights=c.tie_word_embeddings)
    c = hf_config
    theta = (getattr(c, "rope_parameters", None) or {}).get("rope_theta", getattr(c, "rope_theta", 10000.0))
    cfg = GPTConfig(vocab_size=c.vocab_size, block_size=c.max_position_embeddings, n_layer=c.num_hidden_layers,
                    n_head=c.num_attention_heads, n_embd=c.hidden_size, n_kv_head=c.num_key_value_heads,
                    bias=False, pos="rope", norm="rms", mlp="swiglu", mlp_ratio=4,
                    tie_weights=c.tie_word_embeddings, rope_base=float(theta))
    if mlp_hidden_dim(cfg.n_embd, cfg.mlp_ratio, "swiglu") != c.intermediate_size:
        # our width rule is 8 * ceil(2/3 * ratio * d / 8); pick the ratio that lands on HF's width
        cfg = dataclasses.replace(cfg, mlp_ratio=1.5 * c.intermediate_size / c.hidden_size)
        if mlp_hidden_dim(cfg.n_embd, cfg.mlp_ratio, "swiglu") != c.intermediate_size:
            raise ValueError(f"intermediate_size {c.intermediate_size} is not a SwiGLU width GPTConfig can express")
    if getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False):
        raise ValueError("Llama configs with attention or MLP biases are not mapped")
    if getattr(c, "head_dim", None) not in (None, c.hidden_size // c.num_attention_heads):
        raise ValueError("Llama configs with head_dim != hidden_size / heads are not mapped")
    return cfg


def hf_config_from_gpt(cfg: GPTConfig):
    """The transformers config of the same architecture (GPT2Config or LlamaConfig)."""
    import transformers

    if (cfg.pos, cfg.norm, cfg.mlp, cfg.bias) == ("learned", "layer", "gelu_tanh", True) and cfg.n_kv_head in (
            None, cfg.n_head):
        return transformers.GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                                       n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=int(cfg.mlp_ratio * cfg.n_embd),
                                       activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                                       attn_pdrop=0.0, layer_norm_epsilon=1e-5, bos_token_id=None,
                                       eos_token_id=None, tie_word_embeddings=cfg.tie_weights)
    if (cfg.pos, cfg.norm, cfg.mlp, cfg.bias) == ("rope", "rms", "swiglu", False):
        return transformers.LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd,
                                        intermediate_size=mlp_hidden_dim(cfg.n_embd, cfg.mlp_ratio, "swiglu"),
                                        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                                        num_key_value_heads=cfg.n_kv_head or cfg.n_head,
                                        max_position_embeddings=cfg.block_size, rms_norm_eps=1e-6,
                                        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_base},
                                        tie_word_embeddings=cfg.tie_weights, attention_bias=False, mlp_bias=False)
    raise ValueError("only GPT-2-style (learned, layer, gelu_tanh, bias) and Llama-style (rope, rms, swiglu, "
                     "no bias) configs have a transformers equivalent")


def _pairs(cfg: GPTConfig, kind: str) -> list[tuple[str, str, bool]]:
    """(our key, HF key, transpose) for every tensor that maps one to one."""
    if kind == "gpt2":
        out = [(o, h, False) for o, h in GPT2_TOP if o != "wpe.weight" or cfg.pos == "learned"]
        out += [(f"blocks.{i}.{o}", f"transformer.h.{i}.{h}", t) for i in range(cfg.n_layer) for o, h, t in GPT2_BLOCK]
    else:
        out = [(o, h, False) for o, h in LLAMA_TOP]
        out += [(f"blocks.{i}.{o}", f"model.layers.{i}.{h}", False) for i in range(cfg.n_layer) for o, h in LLAMA_BLOCK]
    if not cfg.tie_weights:
        out.append(("lm_head.weight", "lm_head.weight", False))
    return out


@torch.no_grad()
def gpt_from_hf(hf_model) -> GPT:
    """Our GPT with the weights of a `GPT2LMHeadModel` or `LlamaForCausalLM` (float32 copies)."""
    kind, cfg = family(hf_model.config), gpt_config_from_hf(hf_model.config)
    src = {k: v.detach().float() for k, v in hf_model.state_dict().items()}
    model = GPT(cfg)
    dst = model.state_dict()
    for ours, theirs, transpose in _pairs(cfg, kind):
        dst[ours].copy_(src[theirs].T if transpose else src[theirs])
    if kind == "llama":
        for i in range(cfg.n_layer):
            a = f"model.layers.{i}."
            dst[f"blocks.{i}.attn.qkv.weight"].copy_(torch.cat([src[a + f"self_attn.{p}_proj.weight"]
                                                                for p in "qkv"]))  # (q, k, v) rows
            dst[f"blocks.{i}.mlp.fc.weight"].copy_(torch.cat([src[a + "mlp.gate_proj.weight"],
                                                              src[a + "mlp.up_proj.weight"]]))  # gate, then value
    return model


@torch.no_grad()
def gpt_to_hf(model: GPT):
    """A transformers model (GPT2LMHeadModel or LlamaForCausalLM) with `model`'s weights."""
    import transformers

    cfg, hc = model.cfg, hf_config_from_gpt(model.cfg)
    kind = family(hc)
    hf = (transformers.GPT2LMHeadModel if kind == "gpt2" else transformers.LlamaForCausalLM)(hc).eval()
    src, dst = model.state_dict(), hf.state_dict()
    for ours, theirs, transpose in _pairs(cfg, kind):
        dst[theirs].copy_(src[ours].T if transpose else src[ours])
    if kind == "llama":
        H, Hkv, hs = cfg.n_head, cfg.n_kv_head or cfg.n_head, cfg.n_embd // cfg.n_head
        hidden = mlp_hidden_dim(cfg.n_embd, cfg.mlp_ratio, "swiglu")
        for i in range(cfg.n_layer):
            a = f"model.layers.{i}."
            q, k, v = src[f"blocks.{i}.attn.qkv.weight"].split([H * hs, Hkv * hs, Hkv * hs])
            for p, w in zip("qkv", (q, k, v)):
                dst[a + f"self_attn.{p}_proj.weight"].copy_(w)
            gate, up = src[f"blocks.{i}.mlp.fc.weight"].split([hidden, hidden])
            dst[a + "mlp.gate_proj.weight"].copy_(gate)
            dst[a + "mlp.up_proj.weight"].copy_(up)
    return hf


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the rows of a q or k projection from adjacent-pair RoPE (Meta's layout) to half-split.

    Within each head, output row 2i (the first of pair i) moves to i and row 2i + 1 to i + d/2, so
    the rotation our `apply_rope` applies to (x[i], x[i + d/2]) acts on the same two numbers.
    w: (n_heads * d, in) -> same shape.
    """
    out, d = w.shape[0], w.shape[0] // n_heads
    return w.view(n_heads, d // 2, 2, -1).transpose(1, 2).reshape(out, -1)
