"""Day 35: a paged-KV simulator — how much KV memory holds tokens, per allocator and block size.

Requests with lognormal prompt and output lengths share a fixed budget of KV token slots. Three
contiguous allocators reserve one run of slots at admission, first-fit in a linear address space
(`max`: the context limit; `pow2`: the next power of two of the true final length; `oracle`: exactly
the final length); the paged allocator takes blocks of b slots as a sequence grows, b = 1 ... 128.
`common/lab/paging.py` is the accounting model: steps, not seconds; numpy, seeded, so every number
is exact-reproducible. Two experiments: a saturated backlog (every request queued at step 0) shows where
the memory goes and what each allocator can serve; a Poisson trace at a fixed rate gives the latencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from common.lab.paging import make_trace, simulate
from common.run import plotting, runner

DAY = 35
PAPER_TOKEN_SHARE = (20, 38)   # Kwon et al. (2023): existing systems keep token states in about 20-38% of KV memory
PAPER_VLLM_WASTE = 4           # ... and vLLM wastes under 4%
CONTIGUOUS = ("max", "pow2", "oracle")


@dataclass
class Config:
    budget: int = 32768           # KV memory in token slots: 16 contexts of max_len, whole blocks of every size
    max_len: int = 2048           # the context limit: what the `max` allocator reserves for every request
    n_requests: int = 2000
    prompt_median: float = 128    # lognormal lengths (median, sigma of the log), clipped so prompt + output <= max_len
    prompt_sigma: float = 1.0
    output_median: float = 192
    output_sigma: float = 0.9
    blocks: str = "1,2,4,8,16,32,64,128"  # paged block sizes swept at saturation
    block: int = 16               # the paged block size of the headline metrics and the latency run (vLLM's default)
    rate: float = 0.1             # requests arriving per step (Poisson) in the latency table and distribution
    rates: str = "0.025,0.05,0.1,0.15,0.2,0.25"  # the arrival rates of the latency-spread sweep
    max_batch: int = 256          # cap on running requests (vLLM's default max_num_seqs)
    watermark: float = 0.01       # paged admission leaves this share of blocks free for running sequences to grow


PRESETS = {"nano": dict(budget=4096, max_len=512, n_requests=200, prompt_median=32, output_median=48,
                        blocks="1,16,128", rate=0.2, rates="0.1,0.4"),
           "cpu": {}, "gpu": {}}  # a CPU simulation: the gpu preset is the cpu one
KEY_METRICS = ["token_pct_max", "token_pct_oracle", "waste_pct_paged", "capacity_gain_paged", "lat_p99_max",
               "lat_p99_paged"]


def measure(cfg: Config, seed: int) -> dict:
    """Every simulation of the day: the saturated backlog per allocator and block size, and the latency sweep
    over arrival rates (one seed for every rate: the same lengths, the gaps scaled by 1/rate)."""
    blocks = sorted({int(b) for b in cfg.blocks.split(",")} | {cfg.block})
    rates = sorted({float(x) for x in cfg.rates.split(",")} | {cfg.rate})
    lens = dict(max_len=cfg.max_len, prompt_median=cfg.prompt_median, prompt_sigma=cfg.prompt_sigma,
                output_median=cfg.output_median, output_sigma=cfg.output_sigma)
    sim = partial(simulate, budget=cfg.budget, max_len=cfg.max_len, max_batch=cfg.max_batch, watermark=cfg.watermark)

    def run_all(trace, keys):  # a key is a contiguous allocator's name or a paged block size
        return {k: sim(trace, "paged", block=k) if isinstance(k, int) else sim(trace, k) for k in keys}

    tr = make_trace(cfg.n_requests, float("inf"), seed, **lens)
    keys = (*CONTIGUOUS, *dict.fromkeys((cfg.block, blocks[-1])))
    runs = {}
    for rate in rates:
        runs |= {(rate, k): r for k, r in run_all(make_trace(cfg.n_requests, rate, seed + 1, **lens), keys).items()}
    return dict(blocks=blocks, rates=rates, keys=keys, trace=tr, sat=run_all(tr, (*CONTIGUOUS, *blocks)), runs=runs)


def report_memory(d, ctx, cfg: Config, res: dict) -> None:
    tr, sat, blocks = res["trace"], res["sat"], res["blocks"]
    sh = {k: r.shares() for k, r in sat.items()}
    d.section("The workload")
    d.text(f"{cfg.n_requests} requests; prompt and output lengths lognormal (medians {cfg.prompt_median:g} and "
           f"{cfg.output_median:g} tokens), clipped so that a request fits the {cfg.max_len}-token context. "
           f"KV budget: {cfg.budget:,} token slots = {cfg.budget / cfg.max_len:g} contexts of {cfg.max_len}.")
    d.table([{"tokens": k, "mean": v.mean(), "p50": np.percentile(v, 50), "p99": np.percentile(v, 99), "max": v.max()}
             for k, v in (("prompt", tr.prompt), ("output", tr.output), ("final", tr.final))])
    d.text(f"What to look at: a request ends at {tr.final.mean():.0f} tokens on average, "
           f"{100 * tr.final.mean() / cfg.max_len:.1f}% of the context. A `max` reservation is filled only as far "
           f"as the request has got; averaged over the time requests hold memory, the expected token share is "
           f"E[o(p + (o+1)/2)] / (E[o] · max_len) = {res['pred_max']:.1f}% (the `max` row below should land near it).")

    d.section("Where the memory goes at saturation")
    d.text("Every request is queued at step 0, so memory, not arrivals, limits the batch. Shares of the budget, "
           "averaged over the steps on which a request waits for memory; the five classes from `tokens` to "
           "`free, too few` sum to 100 (internal = the two reserved columns). External fragmentation counts the free "
           "slots when they would hold the waiting request in total but no contiguous run is long enough.")
    d.table([{"allocator": r.name, "tokens %": s["tokens"], "reserved, future %": s["future"],
              "reserved, never used %": s["never"], "internal frag %": s["internal"],
              "external frag %": s["external"], "free, too few %": s["short"], "waste %": s["waste"],
              "capacity (req/step)": r.throughput, "batch": r.batch_bound, "preemptions": int(r.preempted.sum())}
             for r, s in zip(sat.values(), sh.values())], floatfmt=".3g")
    paged, w = sat[cfg.block], sh[cfg.block]["waste"]
    d.text(f"What to look at: `max` keeps token states in {sh['max']['tokens']:.1f}% of memory (predicted "
           f"{res['pred_max']:.1f}%); its external fragmentation is {sh['max']['external']:.1f}%"
           + (" because every run has the same length and the budget is a multiple of it, so first-fit only ever "
              "leaves whole max_len holes. " if cfg.budget % cfg.max_len == 0 else ". ")
           + f"Variable reservations strand free memory between runs: {sh['pow2']['external']:.1f}% (`pow2`) and "
           f"{sh['oracle']['external']:.1f}% (`oracle`) external fragmentation. Paging with b={cfg.block} wastes "
           f"{w:.1f}%, runs a batch of {paged.batch_bound:.0f} against {sat['max'].batch_bound:.0f} and serves "
           f"{paged.throughput / sat['max'].throughput:.2f}x the requests per step of `max`; it pays with "
           f"{int(paged.preempted.sum())} preemptions, which this model charges only as waiting time.")

    lo, hi = PAPER_TOKEN_SHARE
    ours = {a: sh[a]["tokens"] for a in CONTIGUOUS}
    inside = [a for a, v in ours.items() if lo <= v <= hi]
    d.table([{"system": "contiguous reservation (paper: Orca max / pow2 / oracle)", "paper: token states %":
              f"about {lo}-{hi}", "ours: token states %": " / ".join(f"{v:.1f}" for v in ours.values())},
             {"system": f"paging (paper: vLLM; ours: b={cfg.block})", "paper: token states %":
              f"over {100 - PAPER_VLLM_WASTE}", "ours: token states %": f"{sh[cfg.block]['tokens']:.1f}"}])
    d.text(f"What to look at: the paper's figures (Kwon et al. 2023, not our measurement) put existing systems at "
           f"about {lo}-{hi}% token states and vLLM's waste under {PAPER_VLLM_WASTE}%. Our contiguous allocators "
           + (f"land inside that range for {', '.join(f'`{a}`' for a in inside)}" if inside else "land outside it")
           + (f" and outside it for {', '.join(f'`{a}`' for a in ours if a not in inside)}" if 0 < len(inside) < 3
              else "") + f"; our paging waste ({w:.1f}%) is " + ("also" if w < PAPER_VLLM_WASTE else "not")
           + f" under {PAPER_VLLM_WASTE}%. The workloads differ (a lognormal trace here, real traces on a real GPU "
           "there): compare the gap between reserving and paging, not the digits.")

    pred = [100 * sat[b].batch_bound * (b - 1) / 2 / cfg.budget for b in blocks]
    paper = f"paper: existing systems ({100 - hi}-{100 - lo}% waste)"
    flat = {f"contiguous {a}": (blocks, [sh[a]["waste"]] * len(blocks)) for a in CONTIGUOUS}
    dashed, dotted = dict(dashes=(5, 3)), dict(color="gray", dashes=(1, 2), lw=1.5)
    png = plotting.lines(
        ctx.plot_path("waste_vs_block"),
        {"paged: waste": (blocks, [sh[b]["waste"] for b in blocks]),
         "paged: internal fragmentation": (blocks, [sh[b]["internal"] for b in blocks]),
         "predicted internal: batch (b-1)/2 / budget": (blocks, pred), **flat,
         paper: ([blocks[0], blocks[-1], np.nan] * 2, [100 - hi] * 3 + [100 - lo] * 3)},
        "block size b (token slots)", "share of KV memory (%)", "Memory waste at saturation: paging vs reservation",
        logx=True, hline=(PAPER_VLLM_WASTE, f"paper: vLLM waste < {PAPER_VLLM_WASTE}%"), xticks=(blocks, blocks),
        styles={**dict.fromkeys(flat, dashed), "predicted internal: batch (b-1)/2 / budget": dashed, paper: dotted,
                "paged: waste": dict(marker="o"), "paged: internal fragmentation": dict(marker="o")})
    d.image(png, "Waste (everything but token states) against the block size; contiguous allocators as flat lines")
    err = max(abs(a - sh[b]["internal"]) for a, b in zip(pred, blocks))
    below = sh[blocks[-1]]["waste"] < min(sh[a]["waste"] for a in CONTIGUOUS)
    d.text(f"What to look at: paged waste goes from {sh[blocks[0]]['waste']:.1f}% at b={blocks[0]} to "
           f"{sh[blocks[-1]]['waste']:.1f}% at b={blocks[-1]}, " + ("below" if below else "not always below")
           + " every contiguous line; its internal part follows the half-a-block-per-sequence prediction to within "
           f"{err:.2f} points. Small blocks cost nothing in this model; in a real kernel they mean more block-table "
           "lookups per token.")


def report_latency(d, ctx, cfg: Config, res: dict) -> dict:
    """The latency table and plots; returns the latency statistics at `cfg.rate` per allocator key."""
    sat, runs, rates, keys = res["sat"], res["runs"], res["rates"], res["keys"]
    st = {rk: r.latency_stats() for rk, r in runs.items()}
    load = {k: cfg.rate / sat[k].throughput for k in keys}
    lat, at = {k: runs[cfg.rate, k] for k in keys}, {k: st[cfg.rate, k] for k in keys}
    d.section("Latency under Poisson arrivals")
    d.table([{"allocator": r.name, "load (rate / saturated capacity)": load[k], "mean": at[k]["mean"],
              "p50": at[k]["p50"], "p99": at[k]["p99"], "variance": at[k]["var"], "std": at[k]["std"],
              "mean wait": at[k]["wait_mean"], "batch": r.batch_busy, "preemptions": int(r.preempted.sum())}
             for k, r in lat.items()], floatfmt=".4g")
    over = [lat[k].name for k in keys if load[k] >= 1]
    calm = min(keys, key=lambda k: at[k]["var"])
    d.text(f"{cfg.rate:g} requests per step; latency = arrival to last token, in steps (a request with o output "
           "tokens needs at least o). What to look at: "
           + (f"{', '.join(over)} {'is' if len(over) == 1 else 'are'} over capacity (load >= 1): the queue grows "
              f"for the whole trace, so {'its' if len(over) == 1 else 'their'} latency is set by the trace's length, "
              "not by a steady state. " if over else "every allocator is under capacity. ")
           + f"The smallest variance is {lat[calm].name}'s ({at[calm]['var']:.4g} steps², mean wait "
           f"{at[calm]['wait_mean']:.1f} steps); `max` has {at['max']['var'] / at[calm]['var']:.3g}x that.")
    png = plotting.lines(ctx.plot_path("latency_cdf"),
                         {r.name: (np.sort(r.latency), np.arange(1, len(r.latency) + 1) / len(r.latency))
                          for r in lat.values()}, "latency (steps, arrival to last token)",
                         "fraction of requests finished", f"Latency distribution at {cfg.rate:g} requests/step",
                         logx=True, logx_base=10, styles={lat[cfg.block].name: dict(lw=6, alpha=0.35)})
    d.image(png, "Cumulative distribution of request latency per allocator")
    d.text(f"What to look at: the median latency is {at['max']['p50']:.0f} steps under `max` against "
           f"{at[cfg.block]['p50']:.0f} under paging (b={cfg.block}); at the 99th percentile "
           f"{at['max']['p99']:.0f} against {at[cfg.block]['p99']:.0f}. A curve far to the right of the others is an "
           "allocator whose batch is too small for this arrival rate.")
    png = plotting.lines(ctx.plot_path("latency_std_vs_rate"),
                         {sat[k].name: (rates, [st[r, k]["std"] for r in rates]) for k in keys},
                         "arrival rate (requests per step)", "latency std (steps)", "Latency spread against load",
                         logy=True, markers=True,
                         vline=[(sat[k].throughput, f"capacity of {sat[k].name}") for k in ("max", cfg.block)])
    d.image(png, "Standard deviation of latency against the arrival rate; dotted: saturated capacities")
    floor, low = lat["max"].trace.output.std(), [st[rates[0], k]["std"] for k in keys]
    knee = {k: next((r for r in rates if st[r, k]["std"] > 2 * st[rates[0], k]["std"]), np.inf) for k in keys}
    ordered = all(knee[a] <= knee[b] for a in keys for b in keys if sat[a].throughput < sat[b].throughput)
    d.text(f"What to look at: at {rates[0]:g} requests/step the spreads range from {min(low):.0f} to {max(low):.0f} "
           f"steps, against {floor:.0f} for the output lengths alone (the latency of a request that never waits). "
           "The spread doubles at "
           + "; ".join(f"{'beyond ' + format(rates[-1], 'g') if knee[k] == np.inf else format(knee[k], 'g')} for "
                       f"{sat[k].name} (capacity {sat[k].throughput:.3g})" for k in keys)
           + (": the larger an allocator's capacity, the higher the rate it takes before queueing makes latency "
              "unpredictable." if ordered else ": here the order of these rates does not follow the capacities."))
    return at


def main(cfg: Config, ctx: runner.Context) -> dict:
    res = measure(cfg, ctx.seed)
    p, o = res["trace"].prompt.astype(float), res["trace"].output.astype(float)
    res["pred_max"] = 100 * (o * (p + (o + 1) / 2)).mean() / o.mean() / cfg.max_len  # renewal-reward (notes)
    report_memory(ctx.deliverable, ctx, cfg, res)
    at = report_latency(ctx.deliverable, ctx, cfg, res)
    sat, paged = res["sat"], res["sat"][cfg.block]
    sh = {k: r.shares() for k, r in sat.items()}
    m = {"token_pct_pred_max": round(res["pred_max"], 2)}
    for k in CONTIGUOUS:
        m |= {f"token_pct_{k}": round(sh[k]["tokens"], 2), f"ext_frag_pct_{k}": round(sh[k]["external"], 2),
              f"capacity_{k}": round(sat[k].throughput, 4)}
    m |= {f"waste_pct_b{b}": round(sh[b]["waste"], 2) for b in res["blocks"]}
    m |= {"waste_pct_paged": round(sh[cfg.block]["waste"], 2),
          "internal_pct_paged": round(sh[cfg.block]["internal"], 2), "capacity_paged": round(paged.throughput, 4),
          "capacity_gain_paged": round(paged.throughput / sat["max"].throughput, 3),
          "batch_max": round(sat["max"].batch_bound, 2), "batch_paged": round(paged.batch_bound, 2),
          "preemptions_paged": int(paged.preempted.sum())}
    for k, name in (*zip(CONTIGUOUS, CONTIGUOUS), (cfg.block, "paged")):
        m |= {f"lat_mean_{name}": round(at[k]["mean"], 1), f"lat_p99_{name}": round(at[k]["p99"], 1),
              f"lat_var_{name}": round(at[k]["var"], 1)}
    return m


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
