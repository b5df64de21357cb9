"""Day 4: the KV cache and a paged KV store — decode speed, memory, and where caching wins.

Measures (untrained weights: speed and memory do not depend on what the model learned):
  * cached vs recompute decoding across context lengths, and where the cache reaches 10x;
  * decode tokens/s vs batch size with the contiguous cache;
  * the paged store: same tokens as the contiguous cache, its speed, and the memory it reserves
    against a contiguous cache sized for the longest sequence; LRU eviction under pressure;
  * the KV-cache size formula 2*B*H*T*Dh*bytes*layers for 7B/13B shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common.lab import bench
from common.nn.generate import generate
from common.nn.kv_cache import PagedKVCache, PagedKVStore, kv_bytes
from common.nn.model import GPT, gpt_config
from common.run import plotting, runner
from common.run.tracking import progress

DAY = 4
# How `make reproduce` compares each metric: everything not listed is exact (deterministic).
# Timings, and choices made by a clock, move with the machine's load: reported as ratios only.
METRIC_KINDS = {
    "kv_speedup": "timing",
    "kv_speedup_context": "timing",
    "kv_10x_context": "timing",
    "kv_10x_band": "timing",
    "kv_10x_stays_from": "timing",
    "decode_tokens_per_s_b1": "timing",
    "batch_throughput_gain": "timing",
}
SHAPES = {"7B (32 layers, 32 heads × 128)": (32, 32, 128), "13B (40 layers, 40 heads × 128)": (40, 40, 128)}
DTYPES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass
class Config:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    contexts: str = "32,64,128,256,512,1024,2048"   # prompt lengths for cached vs recompute
    new_tokens: int = 32          # tokens generated per measurement
    batches: str = "1,2,4,8,16,32"
    batch_context: int = 256      # prompt length in the batch sweep
    repeats: int = 3
    block_size: int = 16          # paged store: tokens per block
    kv_seq_len: int = 4096        # context for the 7B/13B memory table


PRESETS = {
    "nano": dict(n_layer=1, n_head=2, n_embd=32, contexts="8,16,32", new_tokens=4, batches="1,2",
                 batch_context=16, repeats=1, block_size=4),
    "cpu": {},
    "gpu": dict(n_layer=12, n_head=12, n_embd=768, contexts="128,256,512,1024,2048,4096,8192",
                new_tokens=128, batches="1,4,16,64,128", batch_context=1024),
}


def ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def decode_time(model, prompt, n, repeats, device, **kw) -> bench.Timing:
    return bench.time_fn(lambda: generate(model, prompt, n, temperature=0, **kw), warmup=1, repeats=repeats,
                         device=device)


def crossing(xs, ys, level):
    """First x where y reaches `level`, interpolated in log-x between measured points (None if never)."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if y0 < level <= y1:
            f = (level - y0) / (y1 - y0)
            return round(math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))))
    return xs[0] if ys and ys[0] >= level else None


def measure(cfg: Config, ctx: runner.Context) -> dict:
    """Build the untrained decoder and run every measurement, in order; returns raw results and tables."""
    dev = ctx.device
    torch.manual_seed(ctx.seed)
    ctxs = ints(cfg.contexts)
    mcfg = gpt_config("baby", n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, pos="rope",
                      block_size=max(ctxs) + cfg.new_tokens)
    model = GPT(mcfg).to(dev).eval()
    res = {"n_params": model.num_params(), "ctxs": ctxs}
    res |= measure_contexts(model, mcfg, ctxs, cfg, ctx)
    res |= measure_batches(model, mcfg, cfg, ctx)
    res |= measure_paged(model, mcfg, cfg, ctx)
    res["lru_ok"] = check_lru(cfg.block_size)
    return res


def measure_contexts(model, mcfg, ctxs, cfg: Config, ctx: runner.Context) -> dict:
    """Cached vs recompute decoding at each prompt length: the table rows and the speed-ups."""
    dev = ctx.device
    rows, speedups, band = [], [], []
    for L in tracking_progress(ctxs, ctx):
        prompt = torch.randint(0, mcfg.vocab_size, (1, L), device=dev)
        same = torch.equal(generate(model, prompt, cfg.new_tokens, temperature=0),
                           generate(model, prompt, cfg.new_tokens, temperature=0, use_cache=False))
        tc = decode_time(model, prompt, cfg.new_tokens, cfg.repeats, dev)
        tr = decode_time(model, prompt, cfg.new_tokens, cfg.repeats, dev, use_cache=False)
        sp = tr.mean / tc.mean
        speedups.append(sp)  # and its ±1 std band: the slowest recompute over the fastest cache, and vice versa
        band.append(((tr.mean - tr.std) / (tc.mean + tc.std), (tr.mean + tr.std) / max(tc.mean - tc.std, 1e-12)))
        ctx.tracker.log("decode/speedup", sp, L)
        rows.append({"context": L, "cached tok/s": round(cfg.new_tokens / tc.mean, 1),
                     "recompute tok/s": round(cfg.new_tokens / tr.mean, 1), "speed-up": round(sp, 2),
                     "±1 std band": f"{band[-1][0]:.2f}–{band[-1][1]:.2f}",
                     "cached time": str(tc), "same tokens": "yes" if same else "NO"})
    return {"ctx_rows": rows, "speedups": speedups, "band": band}


def measure_batches(model, mcfg, cfg: Config, ctx: runner.Context) -> dict:
    """Cached decode throughput at each batch size, prompt length `batch_context`."""
    dev, bl = ctx.device, cfg.batch_context
    brows, bx, by = [], [], []
    for B in ints(cfg.batches):
        prompt = torch.randint(0, mcfg.vocab_size, (B, bl), device=dev)
        t = decode_time(model, prompt, cfg.new_tokens, cfg.repeats, dev)
        tps = B * cfg.new_tokens / t.mean
        bx.append(B)
        by.append(tps)
        brows.append({"batch": B, "tokens/s (all sequences)": round(tps, 1),
                      "per-sequence tokens/s": round(tps / B, 1), "time": str(t)})
    return {"batch_rows": brows, "bx": bx, "by": by}


def measure_paged(model, mcfg, cfg: Config, ctx: runner.Context) -> dict:
    """The paged store: same tokens as the contiguous cache for ragged lengths, slots reserved, decode times."""
    dev, bl = ctx.device, cfg.batch_context
    lens = [bl // 4, bl // 2, bl, 2 * bl]
    B = len(lens)
    hd = mcfg.n_embd // mcfg.n_head
    store = PagedKVStore().allocate(mcfg.n_layer, mcfg.n_head, hd, max_tokens=sum(lens) + B * cfg.new_tokens + 64,
                                    block_size=cfg.block_size, device=dev)
    outs_equal = True
    for i, L in enumerate(lens):  # sequences of different lengths share one pool
        prompt = torch.randint(0, mcfg.vocab_size, (1, L), device=dev)
        paged = generate(model, prompt, cfg.new_tokens, temperature=0, cache=PagedKVCache(store, [i]))
        outs_equal &= torch.equal(paged, generate(model, prompt, cfg.new_tokens, temperature=0))
    paged_tokens = store.used_blocks * cfg.block_size
    contiguous_tokens = B * (max(lens) + cfg.new_tokens)
    stored = sum(lens) + B * cfg.new_tokens
    prompt = torch.randint(0, mcfg.vocab_size, (1, bl), device=dev)
    fresh = PagedKVStore().allocate(mcfg.n_layer, mcfg.n_head, hd, max_tokens=4 * bl, block_size=cfg.block_size,
                                    device=dev)
    seq_id = iter(range(10**9))
    tp = bench.time_fn(lambda: (generate(model, prompt, cfg.new_tokens, temperature=0,
                                         cache=PagedKVCache(fresh, [next(seq_id)])), fresh.evict()),
                       warmup=1, repeats=cfg.repeats, device=dev)
    tcg = decode_time(model, prompt, cfg.new_tokens, cfg.repeats, dev)
    return {"lens": lens, "outs_equal": outs_equal, "paged_tokens": paged_tokens,
            "contiguous_tokens": contiguous_tokens, "stored": stored, "tp": tp, "tcg": tcg}


def check_lru(block_size: int) -> bool:
    """LRU: a pool with room for two sequences, three arrive; True if sequence 1 (read least recently) went."""
    small = PagedKVStore().allocate(1, 1, 2, max_tokens=2 * block_size, block_size=block_size)
    for s in (0, 1):
        small.append(s, 0, torch.zeros(1, block_size, 2), torch.zeros(1, block_size, 2))
    small.get_view(0, 0)
    small.append(2, 0, torch.zeros(1, 1, 2), torch.zeros(1, 1, 2))
    return sorted(small.tables) == [0, 2] and small.evictions == 1


def report(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    """Write the deliverable (tables, plots, text) from `measure`'s results; returns the metrics."""
    d, ctxs, speedups = ctx.deliverable, res["ctxs"], res["speedups"]
    d.section("Cached vs recompute decoding")
    d.text(f"A {res['n_params']:,}-parameter decoder ({cfg.n_layer} layers, {cfg.n_head} heads, width "
           f"{cfg.n_embd}, RoPE so the context is not capped by a position table) generates {cfg.new_tokens} "
           f"tokens greedily after a prompt of each length; mean ± std over {cfg.repeats} repeats.")
    d.table(res["ctx_rows"])
    rows, n_new = res["ctx_rows"], cfg.new_tokens
    same = sum(r["same tokens"] == "yes" for r in rows)
    d.text(f"What to look at: *speed-up* is recompute time ÷ cached time. From context {ctxs[0]} to {ctxs[-1]} the "
           f"cached decoder goes from {rows[0]['cached tok/s']:,.4g} to {rows[-1]['cached tok/s']:,.4g} tok/s (each "
           f"step runs one new position), the recompute decoder from {rows[0]['recompute tok/s']:,.4g} to "
           f"{rows[-1]['recompute tok/s']:,.4g} (each step reruns the whole context). *Same tokens* is yes in "
           f"{same} of {len(rows)} rows" + (": the cache changes the speed, never the output." if same == len(rows) else
                                  ": the rows marked NO are a bug in the cache."))
    cross = crossing(ctxs, speedups, 10.0)
    lo, hi = [b[0] for b in res["band"]], [b[1] for b in res["band"]]
    early, late = crossing(ctxs, hi, 10.0), crossing(ctxs, lo, 10.0)  # the band's edges reach 10x
    stays = next((x for i, x in enumerate(ctxs) if all(v >= 10 for v in speedups[i:])), None)
    p = plotting.lines(ctx.plot_path("kv_speedup_vs_context"),
                       {"cached / recompute": (ctxs, speedups),
                        f"ceiling ≈ {n_new} (tokens generated per call)": (ctxs, [n_new] * len(ctxs))},
                       "context length (tokens)", "speed-up of cached decoding (×)",
                       "KV cache vs recomputing the context", logx=True, markers=True, hline=(10, "10× milestone"))
    d.image(p, "Speed-up of cached decoding over full recomputation, per context length, with its ceiling")
    d.text(f"What to look at: the speed-up goes from {speedups[0]:.1f}× at {ctxs[0]} tokens to {speedups[-1]:.1f}× "
           f"at {ctxs[-1]}, {speedups[-1] / n_new:.0%} of the ceiling line: a call generates {n_new} tokens, so "
           f"recomputing costs {n_new} full passes while the cache costs one prefill plus {n_new - 1} cheap steps, and "
           f"the ratio should not pass about {n_new} whatever the context"
           + (f"; the point(s) above the line here are timing noise ({cfg.repeats} repeat(s) per point)."
              if max(speedups) > 1.2 * n_new else "."))
    d.text((f"The mean speed-up first reaches 10× at a context of about {cross} tokens (interpolated in log "
            f"context between measured points); the ±1 std band reaches it between {early or '—'} and "
            f"{late or 'beyond the largest context'} tokens, and "
            + (f"from {stays} tokens on every measured context is at or above 10×." if stays else
               "no measured context has every longer one at or above 10×.")
            + " Each point is a few timed repeats on a shared machine, so the curve need not rise "
            "monotonically; read the crossing as that range, not one number.") if cross else
           f"The cache does not reach 10× within these contexts (best {max(speedups):.1f}× at "
           f"{ctxs[speedups.index(max(speedups))]}).")

    d.section("Decode throughput vs batch size")
    bl, bx, by = cfg.batch_context, res["bx"], res["by"]
    d.table(res["batch_rows"])
    per = [r["per-sequence tokens/s"] for r in res["batch_rows"]]
    d.text(f"What to look at: per-sequence tokens/s {'falls' if per[-1] < per[0] else 'rises'} from {per[0]:,.4g} "
           f"at batch {bx[0]} to {per[-1]:,.4g} at batch {bx[-1]} (each sequence waits for a bigger step), while the "
           f"total {'rises' if by[-1] > by[0] else 'falls'} from {by[0]:,.4g} to {by[-1]:,.4g}"
           + (": a server trades each user's speed for throughput." if by[-1] > by[0] else
              ": here batching did not even buy throughput."))
    p = plotting.lines(ctx.plot_path("decode_tokens_per_s_vs_batch"), {"cached decoding": (bx, by)},
                       "batch size (sequences)", "tokens generated per second", f"Decode throughput, context {bl}",
                       logx=True, markers=True)
    d.image(p, "Batching amortises the weight reads of each decode step")
    gain = by[-1] / by[0]
    why = ("each step reads every weight once whatever the batch, so larger batches share that cost"
           if gain > 1 else "on this machine the extra attention and matmul work outweighs the shared weight reads")
    d.text(f"Going from batch {bx[0]} to {bx[-1]} multiplies total decode throughput by {gain:.2f}×: {why}."
           + (f" On the plot, the first doubling gains {by[1] / by[0]:.2f}× and the last {by[-1] / by[-2]:.2f}×: "
              + ("the curve flattens as the per-sequence attention and matmul work, not the shared weight reads, "
                 "becomes the cost." if by[-1] / by[-2] < by[1] / by[0] else "the curve has not flattened yet.")
              if len(by) > 2 else ""))

    report_paged(res, cfg, ctx)
    report_memory(cfg, ctx)
    return {"kv_speedup": round(speedups[-1], 2), "kv_speedup_context": ctxs[-1],
            "kv_10x_context": cross if cross else "not reached",
            "kv_10x_band": f"{early}-{late}" if cross else "not reached",
            "kv_10x_stays_from": stays if stays else "not reached", "decode_tokens_per_s_b1": round(by[0], 1),
            "batch_throughput_gain": round(gain, 2), "paged_equal": bool(res["outs_equal"]),
            "paged_utilisation": round(res["stored"] / res["paged_tokens"], 3), "lru_ok": bool(res["lru_ok"])}


def report_paged(res: dict, cfg: Config, ctx: runner.Context) -> None:
    """The deliverable's paged-store section: slots and speed against the contiguous cache, and the LRU check."""
    d, bl, tp, tcg = ctx.deliverable, cfg.batch_context, res["tp"], res["tcg"]
    stored, paged_tokens, contiguous_tokens = res["stored"], res["paged_tokens"], res["contiguous_tokens"]
    d.section("Paged KV store")
    d.table([{"cache": "contiguous (reserve the longest sequence for every row)", "token slots": contiguous_tokens,
              "utilisation": f"{stored / contiguous_tokens:.0%}", f"decode tok/s (context {bl})":
              round(cfg.new_tokens / tcg.mean, 1)},
             {"cache": f"paged ({cfg.block_size}-token blocks, grow on demand)", "token slots": paged_tokens,
              "utilisation": f"{stored / paged_tokens:.0%}", f"decode tok/s (context {bl})":
              round(cfg.new_tokens / tp.mean, 1)}])
    waste = paged_tokens - stored
    d.text(f"What to look at: *utilisation* is tokens stored ÷ slots reserved. The contiguous cache reserves "
           f"the longest sequence for every row, so the shorter ones leave {contiguous_tokens - stored} slots empty; "
           "the paged pool wastes at most one partly filled block per sequence"
           + (f", here {waste} slots." if waste else f", and here none: every length is a multiple of the "
              f"{cfg.block_size}-token block."))
    d.text(f"Sequences of {', '.join(map(str, res['lens']))} prompt tokens (+{cfg.new_tokens} generated each) "
           f"decoded through one shared pool give "
           f"{'the same tokens as' if res['outs_equal'] else 'DIFFERENT tokens from'} the "
           f"contiguous cache. The pool holds {stored} tokens in {paged_tokens} slots, against {contiguous_tokens} "
           f"for padded contiguous caches. This store copies blocks back into a contiguous tensor on every read "
           f"(`get_view`), so it decodes at {tcg.mean / tp.mean:.2f}× the contiguous speed; PagedAttention kernels "
           f"read the blocks in place instead. LRU check (pool of two sequences, a third arrives after sequence 0 "
           f"was read): evicted sequence 1 — {'yes' if res['lru_ok'] else 'NO'}.")


def report_memory(cfg: Config, ctx: runner.Context) -> None:
    """The deliverable's KV-cache memory section: the size formula for the 7B/13B shapes (pure arithmetic)."""
    d = ctx.deliverable
    d.section("KV-cache memory: 2 · B · H · T · Dh · bytes · layers")
    mrows = []
    for name, (L, H, Dh) in SHAPES.items():
        for B in (1, 8):
            mrows.append({"model": name, "batch": B, "tokens": cfg.kv_seq_len,
                          **{dt: f"{kv_bytes(L, B, H, cfg.kv_seq_len, Dh, nb) / 2**30:.2f} GiB"
                             for dt, nb in DTYPES.items()}})
    d.table(mrows)
    per_tok = kv_bytes(*[SHAPES[next(iter(SHAPES))][0], 1, 32, 1, 128, 2])
    d.text(f"What to look at: the formula is a product, so every column scales it linearly: batch 8 is 8× batch 1, "
           f"fp32 ({DTYPES['fp32']} bytes) is twice the 16-bit columns, and bf16 and fp16 are equal because both take "
           f"2 bytes. One token of a 7B-shaped model costs {per_tok / 2**10:.0f} KiB of cache in 16-bit precision, so "
           f"a {cfg.kv_seq_len}-token context is {per_tok * cfg.kv_seq_len / 2**30:.1f} GiB per sequence.")


def main(cfg: Config, ctx: runner.Context) -> dict:
    """Measure, then narrate: run the experiments, then write the deliverable from their results."""
    return report(measure(cfg, ctx), cfg, ctx)


def tracking_progress(items, ctx):
    return progress(items, desc="contexts", disable=True if ctx.quick else None)


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
