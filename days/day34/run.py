"""Day 34: the decode loop — a KV cache reused step after step, batched, and speculative decoding.

Day 4 timed whole `generate` calls (prefill included). Here the prefill is done once and only the
decode steps are timed, so every number is the cost of one more token at a given context:
  * decode tokens/s over a grid of batch sizes x context lengths (the cache is filled once, at the
    longest context, copied into every batch row, and rewound to each shorter context);
  * cached decoding against recomputing the whole prefix per token, up to the longest context:
    `kv_speedup`, the curriculum's target;
  * KV-cache bytes per token for published 7B / 70B-class shapes: MHA, GQA, MQA and MLA, in bf16;
  * speculative decoding: a small draft proposes k tokens, the trained target checks them in one
    pass; the output must equal the target's own greedy tokens; acceptance and wall-clock speed-up.
Both models are RoPE decoders trained briefly on Tiny Shakespeare characters, so a context longer than
the training one is allowed (the benchmark measures speed there, not quality).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from common import data
from common.lab import bench
from common.nn.kv_cache import KVCache, kv_bytes_per_token
from common.nn.model import GPT, GPTConfig, gpt_config
from common.nn.speculative import feed, greedy_decode, rewind, speculative_decode
from common.run import plotting, runner
from common.train import full_split_loss, train_config_for

DAY = 34
KEY_METRICS = ["kv_speedup", "kv_speedup_context", "decode_tps_peak", "kv_reduction_70b_gqa", "spec_speedup_best",
               "spec_equals_greedy"]
METRIC_KINDS = {"kv_speedup": "timing", "decode_tps_*": "timing", "batch_gain_*": "timing", "spec_speedup_*": "timing",
                "spec_best_k": "timing", "draft_step_cost": "timing",
                # greedy choices of trained float models: a near-tie may flip on another machine's arithmetic
                "agreement": ("tolerance", 0.02), "spec_acceptance_*": ("tolerance", 0.05)}
GIB, KIB = 2**30, 2**10
# Published attention shapes, as GPTConfigs (only the attention fields matter for the cache). Llama-2-7B: 32
# layers x 32 heads of 128. The 70B class (Llama-2-70B, Llama-3-70B): 80 layers x 64 query heads of 128, with 8
# KV heads; the MHA and MQA rows are the same shape with 64 or 1. MLA caches one latent (kv_lora_rank) and one
# RoPE key (rope_head_dim) per layer and token, shared by all heads; DeepSeek-V2 has 60 layers of 128 heads x 128
# (n_embd below is heads x head dim, not its 5120-wide residual stream, which the cache never sees).
_70B = dict(n_layer=80, n_head=64, n_embd=64 * 128)
_MLA = dict(attn="mla", kv_lora_rank=512, rope_head_dim=64, pos="rope")
SHAPES = {
    "Llama-2-7B (MHA)": GPTConfig(n_layer=32, n_head=32, n_embd=32 * 128),
    "70B shape as MHA (64 KV heads)": GPTConfig(**_70B),
    "Llama-2/3-70B (GQA, 8 KV heads)": GPTConfig(**_70B, n_kv_head=8),
    "70B shape as MQA (1 KV head)": GPTConfig(**_70B, n_kv_head=1),
    "DeepSeek-V2 (MLA, 60 layers)": GPTConfig(n_layer=60, n_head=128, n_embd=128 * 128, **_MLA),
    "70B shape with MLA (512 + 64)": GPTConfig(**_70B, **_MLA),
}
SEQS = (4096, 32768)  # sequence lengths of the cache-size table


@dataclass
class Config:
    n_layer: int = 6              # the target: deep, so that one of its steps costs several draft steps
    n_head: int = 4
    n_embd: int = 128
    draft_layer: int = 1          # the draft: one layer, so a guess costs a fraction of a target step
    draft_head: int = 2
    draft_embd: int = 64
    block_size: int = 64          # training context; RoPE lets decoding run past it
    batch_size: int = 16
    steps: int = 600              # training steps of the target
    draft_steps: int = 600        # and of the draft (cheap: a better draft is accepted more often)
    lr: float = 3e-3
    batches: str = "1,2,4,8,16,32"
    contexts: str = "128,256,512,1024,2048"
    decode_steps: int = 16        # timed cached decode steps per measurement
    recompute_steps: int = 4      # timed recompute steps (each reruns the whole prefix)
    repeats: int = 3
    ks: str = "1,2,4,6"       # draft lengths for speculative decoding
    spec_prompts: int = 4         # validation prompts, prompt_len characters each
    prompt_len: int = 64
    spec_tokens: int = 96         # new tokens per prompt
    agree_tokens: int = 8192      # validation characters for the teacher-forced draft/target agreement


PRESETS = {
    "nano": dict(n_layer=1, n_head=2, n_embd=32, draft_embd=16, draft_head=1, block_size=16, batch_size=8, steps=30,
                 draft_steps=30, batches="1,2", contexts="16,32", decode_steps=4, recompute_steps=2, repeats=1,
                 ks="1,2", spec_prompts=1, prompt_len=8, spec_tokens=12, agree_tokens=256),
    "cpu": {},
    # a 10.7M-parameter target (nanoGPT's Shakespeare size) against a 2-layer draft, contexts to 8k, batches to 64
    "gpu": dict(n_layer=6, n_head=6, n_embd=384, draft_layer=2, draft_head=2, draft_embd=128, block_size=256,
                batch_size=64, steps=2000, draft_steps=2000, lr=1e-3, batches="1,4,16,64",
                contexts="512,1024,2048,4096,8192", decode_steps=64, recompute_steps=8, repeats=5, spec_prompts=8,
                spec_tokens=256, agree_tokens=65536),
}


def ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def as_mha(cfg: GPTConfig) -> GPTConfig:
    """The same layers and query heads with one key and value head per query head: what GQA/MQA/MLA shrink."""
    return dataclasses.replace(cfg, attn="mha", n_kv_head=None, kv_lora_rank=0, rope_head_dim=0)


def train_pair(cfg: Config, ctx: runner.Context):
    """The target and the draft, trained on the same batches (`steps`, `draft_steps`); their val losses."""
    tok, tr, va = data.char_corpus()
    models, losses = {}, {}
    shapes = {"target": (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.steps),  # layers, heads, width, steps
              "draft": (cfg.draft_layer, cfg.draft_head, cfg.draft_embd, cfg.draft_steps)}
    for name, (L, H, C, steps) in shapes.items():
        torch.manual_seed(ctx.seed)
        model = GPT(gpt_config("baby", n_layer=L, n_head=H, n_embd=C, block_size=cfg.block_size, pos="rope",
                               vocab_size=tok.vocab_size)).to(ctx.device)
        tc = train_config_for(cfg, max_iters=steps, warmup_iters=max(1, steps // 20), eval_interval=0, eval_iters=4,
                              weight_decay=0.0, log_interval=max(1, steps // 30))
        ctx.train(model, *data.split_batches(tr, va, cfg.block_size, cfg.batch_size, ctx.device), tc, run=name)
        losses[name] = full_split_loss(model, va[:cfg.agree_tokens], cfg.block_size, 64, ctx.device)
        models[name] = model.eval()
    return models, losses, tok, va.to(ctx.device)


def decode_grid(model, va, cfg: Config, ctx: runner.Context) -> dict:
    """Cached decode tokens/s for every (batch, context): one prefill at the longest context, rewound per cell."""
    ctxs, n, dev = sorted(ints(cfg.contexts)), cfg.decode_steps, ctx.device
    L_max = ctxs[-1]
    prompt = va[:L_max][None]  # (1, L_max): real text, as a server would hold it
    base = KVCache.for_model(model, 1, L_max + n)
    with torch.no_grad():
        feed(model, prompt[:, :-1], base)  # the prefill: L_max - 1 positions; causal, so a prefix is valid
    tps = {}
    for B in ints(cfg.batches):
        cache = KVCache.for_model(model, B, L_max + n)
        cache.k.copy_(base.k.expand_as(cache.k))  # every row holds the same prompt
        cache.v.copy_(base.v.expand_as(cache.v))
        cache.lengths = list(base.lengths)
        for L in reversed(ctxs):  # longest first: a decode only overwrites positions >= L - 1
            idx = prompt[:, :L].expand(B, L)
            t = bench.time_fn(lambda c=cache, L=L, x=idx: (rewind(c, L - 1), greedy_decode(model, x, n, c)),
                              warmup=1, repeats=cfg.repeats, device=dev)
            tps[B, L] = B * n / t.median
    return {"tps": tps, "ctxs": ctxs, "batches": ints(cfg.batches)}


def recompute_vs_cache(model, va, cfg: Config, ctx: runner.Context) -> dict:
    """Seconds per new token, cached vs recomputing the prefix, at batch 1 and every context; same tokens?"""
    rows = []
    r = cfg.recompute_steps
    for L in sorted(ints(cfg.contexts)):
        prompt = va[:L][None]
        cache = KVCache.for_model(model, 1, L + r)
        same = torch.equal(greedy_decode(model, prompt, r, cache), greedy_decode(model, prompt, r, None))
        t = bench.compare({"cached": lambda c=cache, L=L, x=prompt: (rewind(c, L - 1), greedy_decode(model, x, r, c)),
                           "recompute": lambda x=prompt: greedy_decode(model, x, r, None)},
                          rounds=cfg.repeats, repeats=1, device=ctx.device)
        rows.append({"context": L, "cached ms/token": 1e3 * t["cached"].median / r,
                     "recompute ms/token": 1e3 * t["recompute"].median / r,
                     "speed-up": t["recompute"].median / t["cached"].median, "same tokens": "yes" if same else "NO"})
    return {"speed_rows": rows}


def agreement(target, draft, va, cfg: Config, device) -> float:
    """Fraction of validation positions where the draft's argmax equals the target's (teacher-forced)."""
    T = cfg.block_size
    x = va[: cfg.agree_tokens // T * T].view(-1, T)  # (N, T) non-overlapping windows
    with torch.no_grad():
        same = [(target(xb)[0].argmax(-1) == draft(xb)[0].argmax(-1)).float() for xb in x.split(64)]
    return torch.cat(same).mean().item()


def speculative(target, draft, va, cfg: Config, ctx: runner.Context) -> dict:
    """Greedy speculative decoding for each k: equal to the target's tokens? acceptance, tokens/pass, speed-up."""
    g = torch.Generator().manual_seed(ctx.seed)
    starts = torch.randint(0, va.numel() - cfg.prompt_len, (cfg.spec_prompts,), generator=g).tolist()
    prompts = [va[s:s + cfg.prompt_len][None] for s in starts]
    N = cfg.spec_tokens

    def plain():
        return [greedy_decode(target, p, N, KVCache.for_model(target, 1, p.shape[1] + N)) for p in prompts]

    ref, ks = plain(), ints(cfg.ks)
    rows, equal = [], True
    for k in ks:
        outs = [speculative_decode(target, draft, p, N, k) for p in prompts]
        equal &= all(torch.equal(o, r) for (o, _), r in zip(outs, ref))
        st = [s for _, s in outs]
        acc, drafted = sum(s.accepted for s in st), sum(s.drafted for s in st)
        rows.append({"k": k, "acceptance": acc / drafted, "tokens/pass": sum(s.new_tokens for s in st)
                     / sum(s.target_calls for s in st), "target passes": sum(s.target_calls for s in st)})
    fns = {"target alone": plain} | {f"k={k}": (lambda k=k: [speculative_decode(target, draft, p, N, k)
                                                             for p in prompts]) for k in ks}
    t = bench.compare(fns, rounds=cfg.repeats, repeats=1, device=ctx.device)
    for row in rows:
        row["ms/token"] = 1e3 * t[f"k={row['k']}"].median / (N * len(prompts))
        row["speed-up"] = t["target alone"].median / t[f"k={row['k']}"].median
    return {"spec_rows": rows, "spec_equal": equal, "plain_ms": 1e3 * t["target alone"].median / (N * len(prompts)),
            "sample": (prompts[0][0].tolist(), ref[0][0, cfg.prompt_len:].tolist()),
            "step_s": step_costs(target, draft, prompts[0], ks, cfg, ctx.device)}


def step_costs(target, draft, prompt, ks, cfg: Config, device) -> dict:
    """Seconds per cached step at batch 1 after `prompt`: a target step, a draft step, and the target's
    verify pass over k + 1 positions for each k; all timed interleaved."""
    n, L = 8, prompt.shape[1]
    x = torch.cat([prompt, prompt[:, :max(ks)]], dim=1)  # k more tokens to verify (which ones does not matter)
    caches = {}
    with torch.no_grad():
        for name, m in (("target", target), ("draft", draft), ("verify", target)):
            caches[name] = KVCache.for_model(m, 1, L + max(n, max(ks)))
            feed(m, prompt[:, :-1], caches[name])  # the prefill, untimed
        tc, dc, vc = caches.values()
        fns = {"target": lambda: (rewind(tc, L - 1), greedy_decode(target, prompt, n, tc)),
               "draft": lambda: (rewind(dc, L - 1), greedy_decode(draft, prompt, n, dc))}
        fns |= {f"verify {k}": (lambda k=k: (rewind(vc, L - 1), feed(target, x[:, :L + k], vc))) for k in ks}
        t = bench.compare(fns, rounds=cfg.repeats, repeats=2, device=device)
    return {"target": t["target"].median / n, "draft": t["draft"].median / n,
            "verify": {k: t[f"verify {k}"].median for k in ks}}


def main(cfg: Config, ctx: runner.Context) -> dict:
    """Measure, then narrate."""
    models, losses, tok, va = train_pair(cfg, ctx)
    target, draft = models["target"], models["draft"]
    res = {"losses": losses, "tok": tok, "n_params": {k: m.num_params() for k, m in models.items()},
           "cfgs": {k: m.cfg for k, m in models.items()}}
    res |= decode_grid(target, va, cfg, ctx)
    res |= recompute_vs_cache(target, va, cfg, ctx)
    res["agreement"] = agreement(target, draft, va, cfg, ctx.device)
    res |= speculative(target, draft, va, cfg, ctx)
    return report(res, cfg, ctx)


def report(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    """Write the deliverable from `main`'s measurements; returns the metrics."""
    metrics = report_models(res, cfg, ctx)
    metrics |= report_grid(res, cfg, ctx)
    metrics |= report_speedup(res, cfg, ctx)
    metrics |= report_cache_sizes(ctx)
    metrics |= report_speculative(res, cfg, ctx)
    return metrics


def report_models(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    d, loss, n = ctx.deliverable, res["losses"], res["n_params"]
    d.section("The target and the draft")
    d.table([{"model": k, "layers × heads × width": f"{c.n_layer} × {c.n_head} × {c.n_embd}", "parameters": n[k],
              "val CE (nats/char)": loss[k], "KV cache (bytes/token, fp32)": kv_bytes_per_token(c, 4)}
             for k, c in res["cfgs"].items()])
    better = loss["target"] < loss["draft"]
    d.text(f"Both are RoPE decoders trained {cfg.steps} steps on batches of {cfg.batch_size} × {cfg.block_size} Tiny "
           f"Shakespeare characters; val CE is over the first {cfg.agree_tokens:,} validation characters. What to look "
           f"at: the draft has {n['draft'] / n['target']:.1%} of the target's parameters and "
           + (f"a higher loss ({loss['draft']:.3f} against {loss['target']:.3f} nats): its guesses will sometimes be "
              "wrong, and the target decides." if better else
              f"no worse a loss ({loss['draft']:.3f} against {loss['target']:.3f} nats): at this training budget "
              "the bigger model has not pulled ahead yet."))
    return {"target_val_ce": round(loss["target"], 4), "draft_val_ce": round(loss["draft"], 4)}


def report_grid(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    d, tps, ctxs, bs = ctx.deliverable, res["tps"], res["ctxs"], res["batches"]
    d.section("Decode tokens/s vs batch and context")
    d.text(f"One prefill of {ctxs[-1]} validation characters fills the target's cache once; it is copied into every "
           f"batch row and rewound to each context, and only the {cfg.decode_steps} decode steps are timed (median of "
           f"{cfg.repeats}). Tokens/s counts every row's tokens.")
    d.table([{"batch": B, **{f"ctx {L}": round(tps[B, L], 1) for L in ctxs}} for B in bs])
    gain = {L: tps[bs[-1], L] / tps[bs[0], L] for L in ctxs}
    per_tok = kv_bytes_per_token(res["cfgs"]["target"], 4)
    w_bytes = 4 * res["n_params"]["target"]
    cross = {L: w_bytes / (L * per_tok) for L in ctxs}  # batch at which a step reads as many cache bytes as weights
    less = gain[ctxs[-1]] < 0.9 * gain[ctxs[0]]
    d.text(f"What to look at: from batch {bs[0]} to {bs[-1]} total tokens/s changes {gain[ctxs[0]]:.1f}× at context "
           f"{ctxs[0]} {'but' if less else 'and'} {gain[ctxs[-1]]:.1f}× at context {ctxs[-1]}"
           + (": batching pays less at long context. " if less else ". ")
           + f"A decode step reads every weight once ({w_bytes / 2**20:.1f} MiB in fp32) whatever the batch, but each "
           f"row's own cache ({per_tok:,} bytes per token of context). The two are equal at batch B* = weight bytes ÷ "
           f"(context × bytes/token): {cross[ctxs[0]]:.3g} at context {ctxs[0]}, {cross[ctxs[-1]]:.3g} at {ctxs[-1]}"
           + (" (below 1: there one sequence's cache already outweighs the weights)" if cross[ctxs[-1]] < 1 else "")
           + ". Past B* a step reads mostly cache, which grows with the batch, so extra rows stop coming nearly free.")
    p = plotting.lines(ctx.plot_path("decode_tps_vs_batch"), {f"context {L}": (bs, [tps[B, L] for B in bs])
                                                            for L in ctxs},
                       "batch size (sequences)", "decode tokens/s (all rows)", "Cached decode throughput",
                       logx=True, logy=True, markers=True)
    d.image(p, "Decode throughput against batch size, one line per context length")
    top = max(tps, key=tps.get)
    gap = [tps[B, ctxs[0]] / tps[B, ctxs[-1]] for B in (bs[0], bs[-1])]
    d.text(f"What to look at: the highest throughput, {tps[top]:,.0f} tokens/s, is at batch {top[0]} and context "
           f"{top[1]}. Context {ctxs[0]} decodes {gap[0]:.2f}× as fast as context {ctxs[-1]} at batch {bs[0]} and "
           f"{gap[1]:.2f}× as fast at batch {bs[-1]}"
           + (": the lines fan out to the right, as the cache a step reads grows with batch × context."
              if gap[1] > 1.1 * gap[0] else ": the lines do not fan out here; read the table for where the noise is."))
    return {"decode_tps_b1": round(tps[bs[0], ctxs[0]], 1), "decode_tps_peak": round(tps[top], 1),
            "batch_gain_short": round(gain[ctxs[0]], 2), "batch_gain_long": round(gain[ctxs[-1]], 2)}


def report_speedup(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    d, rows = ctx.deliverable, res["speed_rows"]
    d.section("Cached decoding vs recomputing the prefix")
    d.text(f"Batch 1: {cfg.recompute_steps} greedy tokens after each context, cached (one position per step) or "
           f"recomputed (the whole prefix per step), interleaved over {cfg.repeats} rounds.")
    d.table(rows, floatfmt=".4g")
    xs, sp = [r["context"] for r in rows], [r["speed-up"] for r in rows]
    same = all(r["same tokens"] == "yes" for r in rows)
    slope = (rows[-1]["recompute ms/token"] / rows[0]["recompute ms/token"],
             rows[-1]["cached ms/token"] / rows[0]["cached ms/token"])
    d.text(f"What to look at: from context {xs[0]} to {xs[-1]} ({xs[-1] // xs[0]}× longer) a recomputed token's cost "
           f"changes {slope[0]:.1f}×, a cached one's {slope[1]:.1f}×: recomputation reruns every position's matmuls, "
           "the cache reruns one position and only its attention reads grow. "
           + ("The tokens are the same in every row: the cache changes the cost, never the output."
              if same else "Rows marked NO produced different tokens: a bug, or a near-tie in float arithmetic."))
    p = plotting.lines(ctx.plot_path("kv_speedup_vs_context"), {"recompute ÷ cached, per token": (xs, sp)},
                       "context length (tokens)", "speed-up (×)", "Per-token cost: recomputing the prefix vs the cache",
                       logx=True, logy=True, markers=True, hline=(10, "10× target"))
    d.image(p, "Speed-up of cached decoding per token, against context length")
    met = sp[-1] >= 10
    d.text(f"What to look at: the speed-up {'grows' if sp[-1] > sp[0] else 'goes'} from {sp[0]:.1f}× at {xs[0]} tokens "
           f"to {sp[-1]:.1f}× at {xs[-1]}. It has no ceiling at a fixed number of new tokens, unlike day 4's "
           "whole-call timing, because the prefill is outside the timed steps. "
           f"Curriculum target `kv_speedup` ≥ 10 at long context: **{'met' if met else 'missed'}**, "
           f"{sp[-1]:.1f}× at a context of {xs[-1]} tokens.")
    return {"kv_speedup": round(sp[-1], 1), "kv_speedup_context": xs[-1], "cached_equals_recompute": same}


def report_cache_sizes(ctx: runner.Context) -> dict:
    d = ctx.deliverable
    d.section("KV-cache size for 7B / 70B-class shapes (bf16)")
    rows, per = [], {}
    for name, c in SHAPES.items():
        per[name] = kv_bytes_per_token(c, 2)
        what = (f"latent {c.kv_lora_rank} + RoPE key {c.rope_head_dim}" if c.attn == "mla" else
                f"K and V: {c.n_kv_head or c.n_head} × {c.n_embd // c.n_head}")
        rows.append({"shape": name, "cached per layer and token": what, "KiB/token": per[name] / KIB,
                     **{f"GiB per {T // 1024}k tokens": per[name] * T / GIB for T in SEQS},
                     "× smaller than MHA": kv_bytes_per_token(as_mha(c), 2) / per[name]})
    d.table(rows, floatfmt=".4g")
    c7, c70 = SHAPES["Llama-2-7B (MHA)"], SHAPES["70B shape as MHA (64 KV heads)"]
    lh = c70.n_layer * c70.n_head / (c7.n_layer * c7.n_head)  # layers x query heads: 5x
    mha70 = per["70B shape as MHA (64 KV heads)"]
    n7, g70, m70, mq = (per[k] for k in ("Llama-2-7B (MHA)", "Llama-2/3-70B (GQA, 8 KV heads)",
                                         "70B shape with MLA (512 + 64)", "70B shape as MQA (1 KV head)"))
    d.text(f"What to look at: bytes per token are 2 · layers · KV heads · head dim · 2 for MHA/GQA/MQA and layers · "
           f"(latent + RoPE key) · 2 for MLA, times the tokens for a sequence. The 70B shape has {lh:g}× the 7B's "
           f"layers × heads, yet with 8 KV heads its cache is {g70 / n7:.3g}× the 7B's per token ({g70 / KIB:.0f} vs "
           f"{n7 / KIB:.0f} KiB). MLA on the 70B shape would hold {m70 / KIB:.0f} KiB"
           + (f", between MQA's {mq / KIB:.0f} and GQA's {g70 / KIB:.0f} KiB" if mq < m70 < g70 else "")
           + ", while every query head still gets its own keys and values (up-projected from the latent). "
           f"A 32k-token sequence of the GQA 70B holds {g70 * 32768 / GIB:.3g} GiB of cache; as MHA it would hold "
           f"{mha70 * 32768 / GIB:.3g} GiB" + (", more than a whole 80 GB GPU." if mha70 * 32768 > 80e9 else "."))
    return {"kv_kib_per_token_7b": round(n7 / KIB, 2), "kv_kib_per_token_70b_gqa": round(g70 / KIB, 2),
            "kv_kib_per_token_deepseek_mla": round(per["DeepSeek-V2 (MLA, 60 layers)"] / KIB, 2),
            "kv_gib_32k_70b_gqa": round(g70 * 32768 / GIB, 3), "kv_reduction_70b_gqa": round(mha70 / g70, 2),
            "kv_reduction_70b_mla": round(mha70 / m70, 2)}


def expected_tokens(alpha: float, k: int) -> float:
    """Tokens per target pass when each guess is accepted independently with probability alpha."""
    return k + 1.0 if alpha >= 1 else (1 - alpha ** (k + 1)) / (1 - alpha)


def report_speculative(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    d, rows, alpha, st = ctx.deliverable, res["spec_rows"], res["agreement"], res["step_s"]
    c = st["draft"] / st["target"]
    d.section("Speculative decoding (greedy)")
    for r in rows:
        r["tokens/pass if i.i.d. α"] = expected_tokens(alpha, r["k"])
        r["verify pass (target steps)"] = st["verify"][r["k"]] / st["target"]
        r["speed-up model"] = r["tokens/pass"] / (r["k"] * c + r["verify pass (target steps)"])
    d.text(f"{cfg.spec_prompts} validation prompts of {cfg.prompt_len} characters, {cfg.spec_tokens} new tokens each. "
           "Each round the draft proposes k tokens (k cached draft steps), the target scores them in one verify pass "
           f"and keeps the agreeing prefix plus its own next token. Baseline: the target alone, {res['plain_ms']:.3g} "
           f"ms/token. Teacher-forced on {cfg.agree_tokens:,} validation characters the draft's argmax equals the "
           f"target's α = {alpha:.3f} of the time; one draft step costs c = {c:.3f} target steps.")
    d.table(rows, floatfmt=".3g")
    best = max(rows, key=lambda r: r["speed-up"])
    close = sum(abs(r["tokens/pass"] / r["tokens/pass if i.i.d. α"] - 1) < 0.05 for r in rows)
    gap = best["speed-up"] / best["speed-up model"]
    same = "yes" if res["spec_equal"] else "NO"
    d.text(f"What to look at: *speculative output = target's greedy output* is **{same}**"
           + (" for every k and prompt: the rule keeps only tokens the target would have chosen itself. "
              if res["spec_equal"] else " for some k or prompt: a bug, the rule must reproduce the target exactly. ")
           + f"Tokens per target pass are within 5% of the prediction for independent guesses at rate α in {close} "
           f"of {len(rows)} rows" + (": on the decoded text the draft is accepted about as often as on real text. "
                                     if close == len(rows) else "; where they differ, α measured on real text does "
                                     "not carry over to the target's own text, or one round's guesses are not "
                                     "independent. ")
           + "*speed-up model* = tokens/pass ÷ (k·c + verify pass) prices a round with the measured step costs; "
           f"at the best k ({best['k']}) the measured speed-up is {best['speed-up']:.2f}×, {gap:.0%} of the modelled "
           f"{best['speed-up model']:.2f}×" + (": the rest goes to each round's bookkeeping (concatenations, the "
                                             "acceptance test, rewinds)." if gap < 1 else "."))
    ks = [r["k"] for r in rows]
    p = plotting.lines(ctx.plot_path("speculative_speedup"), {"measured": (ks, [r["speed-up"] for r in rows]),
                       "tokens/pass ÷ (k·c + verify pass)": (ks, [r["speed-up model"] for r in rows])},
                       "draft length k (tokens proposed per target pass)", "speed-up over the target alone (×)",
                       "Greedy speculative decoding", markers=True, hline=(1.0, "no gain"))
    d.image(p, "Wall-clock speed-up of speculative decoding against the draft length")
    d.text(f"What to look at: the best draft length here is k = {best['k']} ({best['speed-up']:.2f}×"
           + (", a real gain); " if best["speed-up"] > 1.05 else ", no real gain); ")
           + ("longer drafts pay for more guesses that follow a miss, shorter ones pay a verify pass for few tokens."
              if ks[0] < best["k"] < ks[-1] else "at the end of the range tried, so the optimum may lie beyond it."))
    prompt, cont = res["sample"]
    d.text("The target's greedy continuation (in ⟨ ⟩) of the first prompt, identical with every k:\n\n```text\n"
           + res["tok"].decode(prompt) + "⟨" + res["tok"].decode(cont) + "⟩\n```")
    return {"agreement": round(alpha, 4), "spec_equals_greedy": bool(res["spec_equal"]),
            **{f"spec_acceptance_k{r['k']}": round(r["acceptance"], 4) for r in rows},
            "spec_best_k": best["k"], "spec_speedup_best": round(best["speed-up"], 2), "draft_step_cost": round(c, 3)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
