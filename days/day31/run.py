"""Day 31: multi-query attention (MQA) — one key/value head shared by every query head, against MHA.

Two models of the same width and depth are trained on characters of Tiny Shakespeare from the same
seed for the same number of steps: standard multi-head attention (`n_kv_head = n_head`) and
multi-query attention (`n_kv_head = 1`). The only difference is the size of the fused qkv projection
(`common/nn/attention.py`): MQA projects one key and one value head instead of `n_head` of each.
The run reports what that saves (parameters, in closed form and counted; KV-cache bytes per token),
what it costs or buys in training (tokens/s, timed interleaved; validation loss at equal steps), and
checks a readable attention in which query heads share K/V by broadcasting, with no copies.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common import data
from common.lab import bench
from common.nn.attention import ATTENTION_FNS, causal_mask, masked_softmax
from common.nn.kv_cache import KVCache, kv_bytes_per_token
from common.nn.model import GPT, count_params_formula, flops_per_token, gpt_config_for
from common.run import plotting, runner
from common.train import evaluate, full_split_loss, train_config_for

DAY = 31
KEY_METRICS = ["param_diff", "kv_reduction", "val_loss_mha", "val_loss_mqa", "step_speedup"]
METRIC_KINDS = {"tokens_per_s_*": "timing", "step_speedup": "timing"}


@dataclass
class Config:
    n_layer: int = 4
    n_head: int = 8          # 8 query heads: MQA keeps 1 K/V head where MHA keeps 8
    n_embd: int = 128        # head_dim 16
    block_size: int = 64
    batch_size: int = 32
    max_iters: int = 600     # the same for both models
    lr: float = 3e-3
    eval_interval: int = 100
    eval_iters: int = 10
    timing_rounds: int = 5   # interleaved rounds of the forward + backward timing
    context: int = 2048      # the context at which the KV cache's size is reported
    val_chars: int = 0       # characters of the val split in the final score (0 = all of it)


PRESETS = {"nano": dict(n_layer=2, n_head=4, n_embd=32, block_size=32, batch_size=8, max_iters=40, lr=1e-2,
                        eval_interval=20, eval_iters=2, timing_rounds=2, context=256, val_chars=4_000),
           "cpu": {},
           # the seed's Shakespeare model (6 x 384, 6 heads of 64) at its context of 256
           "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, max_iters=3000, lr=1e-3,
                       eval_interval=250, eval_iters=20, timing_rounds=10)}


def param_difference(cfg, n_kv_head: int) -> int:
    """Parameters saved by n_kv_head key/value heads instead of n_head (same width, depth and bias).

    Only the K and V rows of each layer's qkv projection change: each dropped head removes head_dim
    rows of n_embd weights (plus head_dim biases) from K and as many from V, in every layer.
    """
    # >>> exercise day31.param_difference: K and V rows dropped per layer, times (weights + bias) per row, times layers
    hs = cfg.n_embd // cfg.n_head
    per_row = cfg.n_embd + (1 if cfg.bias else 0)
    return 2 * (cfg.n_head - n_kv_head) * hs * per_row * cfg.n_layer
    # <<< exercise day31.param_difference


def shared_kv_attention(q, k, v, mask=None, bias=None, is_causal=False, scale=None, dropout_p=0.0, training=False):
    """Attention in which each key/value head serves a group of query heads, by broadcasting: no K/V copies.

    q (B, H, T, D); k, v (B, Hkv, S, D) with Hkv dividing H (Hkv = 1: MQA). Query head h reads K/V head
    h // (H // Hkv), as `repeat_kv` and `F.scaled_dot_product_attention(enable_gqa=True)` do, but here the
    query heads are viewed as (Hkv, H // Hkv) and every K/V head is broadcast over its group inside the
    matmul. Same contract as `attention_reference`: bool keep-mask, additive bias, bottom-right causal
    alignment when S > T, a row with no key left gives zeros.
    """
    # >>> exercise day31.shared_kv_attention: q viewed as (B, Hkv, H/Hkv, T, D), K/V broadcast over each group
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    qg = q.view(B, Hkv, H // Hkv, T, D)  # (B, Hkv, g, T, D): the g query heads that share one K/V head
    scores = (qg @ k.unsqueeze(2).transpose(-2, -1)) * scale  # (B, Hkv, g, T, D) x (B, Hkv, 1, D, S)
    scores = scores.view(B, H, T, S)  # (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    keep = causal_mask(T, S, q.device) if is_causal else None
    if mask is not None:
        keep = mask if keep is None else mask & keep
    weights = masked_softmax(scores, keep)  # (B, H, T, S)
    if training and dropout_p > 0:
        weights = F.dropout(weights, dropout_p)
    out = weights.view(B, Hkv, H // Hkv, T, S) @ v.unsqueeze(2)  # (B, Hkv, g, T, S) x (B, Hkv, 1, S, D)
    return out.view(B, H, T, D)  # (B, H, T, D)
    # <<< exercise day31.shared_kv_attention


@contextmanager
def attention_fn(model, fn):
    """Run every attention layer of `model` through `fn` inside the block, then put its backend back."""
    for blk in model.blocks:
        blk.attn.attn_fn = fn
    try:
        yield model
    finally:
        for blk in model.blocks:
            blk.attn.attn_fn = ATTENTION_FNS[model.cfg.attn_backend]


def train_variant(name: str, n_kv_head: int, cfg: Config, ctx: runner.Context, tr, va, vocab: int):
    """One model from the seed, trained for cfg.max_iters steps: (model, TrainResult, full val loss)."""
    mcfg = gpt_config_for(cfg, vocab_size=vocab, n_kv_head=n_kv_head)
    torch.manual_seed(ctx.seed)
    model = GPT(mcfg).to(ctx.device)
    tc = train_config_for(cfg, warmup_iters=max(1, cfg.max_iters // 20))
    res = ctx.train(model, *data.split_batches(tr, va, cfg.block_size, cfg.batch_size, ctx.device), tc, run=name)
    scored = va[: cfg.val_chars] if cfg.val_chars else va
    return model, res, full_split_loss(model, scored, cfg.block_size, 256, ctx.device)


def step_timings(models: dict, batch, rounds: int, device) -> dict:
    """Forward + backward of one fixed batch per model, interleaved round by round (bench.compare)."""
    x, y = batch

    def step(m):
        def fn():
            m.zero_grad(set_to_none=True)
            m(x, y)[1].backward()
        return fn

    out = bench.compare({name: step(m) for name, m in models.items()}, rounds=rounds, repeats=3, warmup=2,
                        device=device)
    for m in models.values():
        m.zero_grad(set_to_none=True)
    return out


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, dev = ctx.deliverable, ctx.device
    tok, tr, va = data.char_corpus()
    runs = {name: train_variant(name, kv, cfg, ctx, tr, va, tok.vocab_size)
            for name, kv in (("MHA", cfg.n_head), ("MQA", 1))}
    (mha, r_mha, v_mha), (mqa, r_mqa, v_mqa) = runs["MHA"], runs["MQA"]
    H, hs, L = cfg.n_head, cfg.n_embd // cfg.n_head, cfg.n_layer

    # --- parameters and KV cache -------------------------------------------------------------------
    diff_counted, diff_formula = mha.num_params() - mqa.num_params(), param_difference(mha.cfg, 1)
    kvb = {n: kv_bytes_per_token(m.cfg) for n, m in (("MHA", mha), ("MQA", mqa))}
    measured_kvb = {}
    for name, m in (("MHA", mha), ("MQA", mqa)):  # a real cache, filled by a prefill of one validation window
        cache = KVCache.for_model(m, 1, cfg.block_size)
        with torch.no_grad():
            m(va[: cfg.block_size][None].to(dev), kv_cache=cache)
        measured_kvb[name] = cache.nbytes() // cfg.block_size
    fpt = {n: flops_per_token(m.cfg) for n, m in (("MHA", mha), ("MQA", mqa))}
    d.section("What MQA removes: parameters and the KV cache")
    d.text(f"Both models: {L} layers, width {cfg.n_embd}, {H} query heads of {hs} dims, learned positions, tied "
           f"head, no biases. MHA keeps {H} key/value heads per layer, MQA one. The fused qkv projection has "
           f"(n_head + 2 n_kv_head) x head_dim outputs: {(H + 2 * H) * hs} for MHA, {(H + 2) * hs} for MQA.")
    d.table([{"model": n, "n_kv_head": m.cfg.n_kv_head, "params (counted)": m.num_params(),
              "params (count_params_formula)": count_params_formula(m.cfg),
              "qkv outputs": (H + 2 * m.cfg.n_kv_head) * hs,
              "KV bytes/token (model)": kvb[n], "KV bytes/token (filled cache)": measured_kvb[n],
              f"KV MiB at {cfg.context} tokens": kvb[n] * cfg.context / 2**20, "train MFLOP/token": fpt[n] / 1e6}
             for n, m in (("MHA", mha), ("MQA", mqa))])
    d.text(f"What to look at: MHA − MQA = {diff_counted:,} parameters counted, and the closed form "
           f"2 (n_head − 1) head_dim n_embd n_layer = 2 x {H - 1} x {hs} x {cfg.n_embd} x {L} = {diff_formula:,} "
           + ("agrees exactly" if diff_counted == diff_formula else "DISAGREES")
           + f" ({diff_counted / mha.num_params():.1%} of the MHA model). The cache shrinks by n_head = "
           f"{kvb['MHA'] / kvb['MQA']:g}x, from {kvb['MHA']:,} to {kvb['MQA']:,} bytes per token in float32, and a "
           "cache filled by a real prefill holds exactly the modelled bytes"
           + ("" if measured_kvb == kvb else " (it does NOT here)") + ". The parameter saving is small because "
           "K and V were only 2/12 of each layer's weights; the cache saving is n_head-fold because the cache "
           "holds nothing but K and V.")

    # --- training speed and quality ------------------------------------------------------------------
    xb = data.split_batches(tr, va, cfg.block_size, cfg.batch_size, dev)[0].fixed(1)[0]
    t = step_timings({"MHA": mha, "MQA": mqa}, xb, cfg.timing_rounds, dev)
    speedup = t["MHA"].median / t["MQA"].median
    tps = {"MHA": r_mha.tokens_per_s, "MQA": r_mqa.tokens_per_s}
    d.section("Training: speed and validation loss at equal steps")
    d.table([{"model": n, "steps": cfg.max_iters, "train tokens/s (whole run)": f"{tps[n]:,.0f}",
              "fwd+bwd ms (interleaved, median)": t[n].median * 1e3, "± std": t[n].std * 1e3,
              "final train CE": r.history["train"][-1], "val CE (scored split)": v}
             for n, r, v in (("MHA", r_mha, v_mha), ("MQA", r_mqa, v_mqa))])
    flop_ratio = fpt["MHA"] / fpt["MQA"]
    gap = v_mqa - v_mha
    faster = ("MQA steps faster than MHA" if speedup > 1.02 else "the two step at about the same speed"
              if speedup > 0.98 else "MQA steps slower than MHA")
    d.text(f"What to look at: one forward + backward step of MQA takes {1 / speedup:.2f}x the time of MHA's "
           f"(timed interleaved, {cfg.timing_rounds} rounds; the whole-run tokens/s are timed one run after the "
           f"other, so machine load moves them more), against {1 / flop_ratio:.2f}x the matmul FLOPs: {faster}. "
           "Training processes the whole sequence at once, so the K/V projections MQA drops are a small part of "
           "each step's work, and a compute-bound step gains about the FLOP ratio"
           + (" (this measurement beats it: at this size fixed per-op costs and memory traffic count too, and a "
              "busy machine adds noise)" if speedup > 1.05 * flop_ratio else "")
           + ". At equal steps MQA's validation loss is "
           + (f"{gap:.4f} nats higher" if gap > 0 else f"{-gap:.4f} nats lower")
           + f" ({v_mqa:.4f} against {v_mha:.4f}"
           + (f", on the first {cfg.val_chars:,} validation characters" if cfg.val_chars else ", whole val split")
           + "). MQA's gain is at inference: the cache every new token has to read is n_head times smaller "
           "(day 34 times decoding).")
    h_mha, h_mqa = r_mha.history, r_mqa.history
    p = plotting.lines(ctx.plot_path("val_loss"), {"MHA (n_kv_head = n_head)": (h_mha["step"], h_mha["val"]),
                       "MQA (n_kv_head = 1)": (h_mqa["step"], h_mqa["val"])}, "step",
                       "val cross-entropy (nats/char)", "MHA and MQA at equal steps, same seed and data order",
                       markers=True)
    d.image(p, "Validation loss on fixed batches during training")
    lead = [a < b for a, b in zip(h_mha["val"], h_mqa["val"])]
    d.text(f"What to look at: MHA is below MQA at {sum(lead)} of {len(lead)} evaluations; the last points differ "
           f"by {h_mqa['val'][-1] - h_mha['val'][-1]:+.4f} nats. One seed, so a gap of this size "
           + ("is within what another seed could move" if abs(h_mqa['val'][-1] - h_mha['val'][-1]) < 0.02 else
              "may still be partly seed noise") + ".")

    # --- the readable path ---------------------------------------------------------------------------
    vb = data.split_batches(tr, va, cfg.block_size, cfg.batch_size, dev)[1].fixed(cfg.eval_iters)
    with torch.no_grad():
        ref = mqa(vb[0][0])[0]
        with attention_fn(mqa, shared_kv_attention):
            ours = mqa(vb[0][0])[0]
            loss_ours = evaluate(mqa, {"val": vb}, dev)["val"]
    loss_ref = evaluate(mqa, {"val": vb}, dev)["val"]
    max_diff = (ours - ref).abs().max().item()
    d.section("A multi-query path you can read")
    d.text(f"`shared_kv_attention` views the {H} query heads as ({mqa.cfg.n_kv_head}, {H}) groups and broadcasts the "
           "single K/V head over them inside the matmul, so nothing is copied; PyTorch's "
           "`scaled_dot_product_attention(enable_gqa=True)` does the same in its kernels. Swapped into the trained "
           f"MQA model: largest |logit difference| against the SDPA path {max_diff:.2e}; validation CE on "
           f"{cfg.eval_iters} fixed batches {loss_ours:.6f} (readable) vs {loss_ref:.6f} (SDPA). What to look at: "
           + ("the two paths agree to float32 rounding." if max_diff < 1e-3 else "the paths disagree: a bug."))
    return {"params_mha": mha.num_params(), "params_mqa": mqa.num_params(), "param_diff": diff_counted,
            "param_diff_formula": diff_formula, "kv_bytes_per_token_mha": kvb["MHA"],
            "kv_bytes_per_token_mqa": kvb["MQA"], "kv_reduction": round(kvb["MHA"] / kvb["MQA"], 4),
            "val_loss_mha": round(v_mha, 4), "val_loss_mqa": round(v_mqa, 4), "val_gap": round(gap, 4),
            "tokens_per_s_mha": round(tps["MHA"], 1), "tokens_per_s_mqa": round(tps["MQA"], 1),
            "step_speedup": round(speedup, 3)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
