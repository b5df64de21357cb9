"""Day 38: retention — how often a needle is found as the prompt grows from 1k characters, and as it moves away.

The model is day 37's (`common/lab/retrieval.py`, one cached function: loaded when day 37 ran with the
same settings, else trained here): a two-layer ALiBi GPT that learned needle retrieval on prompts of at
most 256 characters. Two sweeps:
1. retention against length: prompts of 1k, 2k, 4k characters (the `gpu` preset goes to 32k), the needle
   at evenly spaced depths; the cost of each prompt is timed, and its growth with L says where the CPU stops;
2. hit rate against the needle-to-query distance: the first sweep's prompts plus short ones (length twice
   the distance), pooled into distance bins, and two decay curves fitted by least squares: a logistic in
   log-distance, p0 / (1 + (x/x50)^beta), and an exponential, p0 * 2^(-x/x50).
If a hit depends on the distance alone, the distance curve predicts the length curve; the run checks it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from common.data import needle
from common.lab import retrieval
from common.run import plotting, runner

DAY = 38
KEY_METRICS = ["x50", "beta", "fit_rmse", "hit_rate_L1024", "hit_rate_max_len"]
SHAPES = {"loglogistic": "p0 / (1 + (x/x50)^beta)", "logistic": "p0 / (1 + exp(beta (x/x50 - 1)))",
          "exponential": "p0 · 2^(-x/x50)"}
METRIC_KINDS = {"s_per_prompt_L*": "timing", "predicted_s_per_prompt_32k": "timing"}


@dataclass
class Config:
    # the model: the same fields and defaults as day 37, so its cached model is reused
    train_len: int = 256
    min_len: int = 16
    warm_len: int = 64
    warm_steps: int = 800
    n_digits: int = 4
    batch_tokens: int = 2048
    n_layer: int = 2
    n_head: int = 8
    n_embd: int = 128
    pos: str = "alibi"
    steps: int = 1400
    lr: float = 3e-3
    # sweep 1: retention against length
    lengths: str = "1024,2048,4096"  # CPU: attention work grows as L^2 (4096 costs ~16x 1024 per prompt)
    n_depths: int = 9                # depths 0, 1/8, ..., 1 at every length
    n_trials: int = 4                # prompts per (length, depth)
    # sweep 2: short prompts (length 2 x distance) at these needle-to-query distances
    distances: str = "16,32,64,128,192,256,384,512,768,1024,1536"
    dist_trials: int = 16


PRESETS = {"nano": dict(train_len=48, warm_len=32, warm_steps=10, batch_tokens=512, n_layer=1, n_head=2, n_embd=16,
                        steps=20, lengths="64,128", n_depths=3, n_trials=2, distances="16,32,64", dist_trials=4),
           "cpu": {},
           # day 37's gpu model (trained on prompts up to 1024), lengths to 32k
           "gpu": dict(train_len=1024, batch_tokens=16384, steps=4000, lengths="1024,2048,4096,8192,16384,32768",
                       n_depths=11, n_trials=10, distances="16,32,64,128,256,512,1024,2048,4096,8192,16384",
                       dist_trials=32)}


def task_of(cfg: Config) -> retrieval.RetrievalTask:
    return retrieval.RetrievalTask(train_len=cfg.train_len, min_len=cfg.min_len, warm_len=cfg.warm_len,
                                   warm_steps=cfg.warm_steps, n_digits=cfg.n_digits, batch_tokens=cfg.batch_tokens)


def distance_edges(max_distance: int) -> list[int]:
    """Half-octave bin edges 8, 11, 16, 22, 32, ... covering distances up to max_distance."""
    edges, i = [], 0
    while not edges or edges[-1] <= max_distance:
        edges.append(round(8 * 2 ** (i / 2)))
        i += 1
    return edges


def retention_sweep(model, task, lengths, depths, n_trials, dev, seed) -> tuple[list[dict], dict]:
    """Trials at every length (the same depths), and the seconds per prompt at each length."""
    trials, secs = [], {}
    for L in lengths:
        t0 = time.perf_counter()
        trials += retrieval.needle_trials(model, task, [L], depths, n_trials, dev, seed=seed)
        secs[L] = (time.perf_counter() - t0) / (len(depths) * n_trials)
    return trials, secs


def cost_fit(secs: dict) -> tuple[float, float]:
    """Least squares of t(L) = a L + b L^2 (seconds per prompt) on the measured lengths."""
    L = np.array(sorted(secs), dtype=float)
    t = np.array([secs[int(v)] for v in L])
    A = np.stack([L, L ** 2], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, t, rcond=None)
    return float(a), float(b)


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, dev = ctx.deliverable, ctx.device
    task = task_of(cfg)
    k = cfg.n_digits
    mcfg = task.model_config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, pos=cfg.pos)
    tr = retrieval.train_retrieval_model(mcfg, task, cfg.steps, dev, lr=cfg.lr, seed=ctx.seed,
                                         tracker=ctx.tracker.scoped("retrieval"), show_progress=not ctx.quick,
                                         cache_dir=ctx.cache_dir("retrieval"))
    d.section("The model")
    d.text(f"Day 37's retrieval model: {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, `pos={cfg.pos}`, "
           f"{cfg.steps} steps on prompts of {cfg.min_len}..{cfg.train_len} characters, answer-only loss; val CE "
           f"{tr.val_loss:.4f} on the answer digits. "
           + ("Trained by this run (no cached copy with these settings)." if tr.result is not None else
              "Loaded from the shared cache (`.cache/retrieval/`), where day 37's run with the same settings left it."))
    if tr.result is not None:
        train_b, _ = task.batches()
        ctx.record_throughput("retrieval", tr.result, tr.model, round(train_b.mean_block))

    # ---- sweep 1: retention against length
    lengths = [int(v) for v in cfg.lengths.split(",")]
    depths = [i / (cfg.n_depths - 1) for i in range(cfg.n_depths)]
    long_trials, secs = retention_sweep(tr.model, task, lengths, depths, cfg.n_trials, dev, ctx.seed)
    by_len = {L: [r for r in long_trials if r["length"] == L] for L in lengths}
    hit = {L: sum(r["hit"] for r in rs) / len(rs) for L, rs in by_len.items()}

    # ---- sweep 2: short prompts at chosen distances, then the pooled distance curve and its fits
    dists = [int(v) for v in cfg.distances.split(",")]
    dl = {2 * D: [needle.depth_for_distance(2 * D, D, k)] for D in dists}
    short_trials = retrieval.needle_trials(tr.model, task, list(dl), dl, cfg.dist_trials, dev, seed=ctx.seed + 1)
    pooled = long_trials + short_trials
    edges = distance_edges(max(r["distance"] for r in pooled))
    bins = retrieval.hit_rate_by_distance(pooled, edges)
    x, rate, n = (np.array([b[f] for b in bins], dtype=float) for f in ("mean_distance", "rate", "n"))
    fits = {form: retrieval.fit_decay(x, rate, n, form) for form in retrieval.DECAY_FORMS}
    best = min(fits.values(), key=lambda f: f["rmse"])
    ll = fits["loglogistic"]
    curve = lambda xs, f: retrieval.decay_curve(xs, f["p0"], f["x50"], f["beta"] or 1.0, f["form"])  # noqa: E731

    d.section("Retention against length")
    predicted = {L: float(np.mean(curve([r["distance"] for r in by_len[L]], best))) for L in lengths}
    d.table([{"L": L, "prompts": len(by_len[L]), "hit rate (all depths)": hit[L],
              "depth 1 (needle last)": np.mean([r["hit"] for r in by_len[L] if r["depth"] == 1.0]),
              "depth 0 (needle first)": np.mean([r["hit"] for r in by_len[L] if r["depth"] == 0.0]),
              "predicted from the distance fit": predicted[L], "s / prompt": secs[L]} for L in lengths],
            floatfmt=".3g")
    diff = {L: predicted[L] - hit[L] for L in lengths}
    worst = max(abs(v) for v in diff.values())
    side = ("agrees with the measured rate within " + format(worst, ".2f") if worst <= 0.05 else
            f"is above the measured rate at every length (by up to {worst:.2f})" if min(diff.values()) > 0 else
            f"is below the measured rate at every length (by up to {worst:.2f})" if max(diff.values()) < 0 else
            f"misses the measured rate by up to {worst:.2f}, in both directions")
    d.text(f"Each length: {cfg.n_depths} evenly spaced depths x {cfg.n_trials} prompts from the val split, exact "
           f"match of the greedy {k}-digit answer. What to look at: the hit rate goes from {hit[lengths[0]]:.2f} at "
           f"L = {lengths[0]} to {hit[lengths[-1]]:.2f} at L = {lengths[-1]}"
           + (", falling as the length grows" if hit[lengths[-1]] < hit[lengths[0]] else "")
           + f". The column 'predicted' averages the best distance fit below ({best['form']}) over the same prompts' "
           f"distances: if a hit depended on the distance alone, it would match. It {side}"
           + (": the distance curve, pooled mostly from shorter prompts, flatters long ones (last section)."
              if worst > 0.05 and min(diff.values()) > 0 else "."))
    p = plotting.lines(ctx.plot_path("retention"),
                       {"all depths (measured)": (lengths, [hit[L] for L in lengths]),
                        "predicted from the distance fit": (lengths, [predicted[L] for L in lengths])},
                       "prompt length L (characters)", "exact-match hit rate",
                       f"Retention against length (trained on prompts ≤ {cfg.train_len})", logx=True, markers=True,
                       styles={"predicted from the distance fit": dict(dashes=(4, 2))}, xticks=(lengths, lengths))
    d.image(p, "Hit rate over all depths against prompt length, and what the distance fit predicts for it")
    h0, h1 = hit[lengths[0]], hit[lengths[-1]]
    d.text("What to look at: with depths uniform, only the needles within the retention distance (next section) are "
           "found, so their share of the prompts should shrink about as 1/L once L is well past that distance"
           + (f"; measured, the hit rate falls as L^-{math.log(h0 / h1) / math.log(lengths[-1] / lengths[0]):.2f} "
              f"from L = {lengths[0]} to {lengths[-1]} (1/L is L^-1)." if h0 > 0 and h1 > 0 and len(lengths) > 1
              else ".") + " The dashed line is the distance-only prediction.")

    a, b = cost_fit(secs)
    L_max = lengths[-1]
    t32k = a * 32768 + b * 32768 ** 2 if b > 0 else secs[L_max] * (32768 / L_max) ** 2  # noisy fit: plain L^2
    n_cells = cfg.n_depths * cfg.n_trials
    d.text(f"Cost: seconds per prompt fit t(L) = {a:.3g}·L + {b:.3g}·L² on the measured lengths (the L² term is the "
           f"attention scores, L x L per head and layer). Extrapolated, one 32,768-character prompt takes "
           f"{t32k:.0f} s here, and a {n_cells}-prompt row at 32k about {n_cells * t32k / 60:.0f} min: why this CPU "
           f"run stops at {lengths[-1]:,}. Lengths to 32,768 are pending, needing a CUDA GPU: "
           "`make day 38 ARGS='--preset gpu'`." if ctx.device.type == "cpu" else
           f"Cost: t(L) = {a:.3g}·L + {b:.3g}·L² seconds per prompt on {ctx.device.type}.")

    d.section("Hit rate against distance")
    d.table([{"form": f["form"], "curve": SHAPES[f["form"]], "p0": f["p0"], "x50 (characters)": f["x50"],
              "beta": "—" if f["beta"] is None else f"{f['beta']:.3g}", "weighted RMSE": f["rmse"]}
             for f in fits.values()], floatfmt=".4g")
    d.text(f"Trials pooled from both sweeps ({len(pooled)} prompts) into half-octave bins of needle-to-query "
           f"distance; each fit weights a bin by its prompts (least squares, `retrieval.fit_decay`). Every curve is "
           f"p0/2 at x50. What to look at: the {best['form']} curve fits best (RMSE {best['rmse']:.3f}"
           + "".join(f", {f['form']} {f['rmse']:.3f}" for f in fits.values() if f is not best) + "). "
           + {"loglogistic": "A logistic in log-distance: the hit rate holds near p0, then falls over a span that "
                             "scales with x50 (a larger beta is a sharper cliff).",
              "logistic": "A logistic in distance itself: a cliff of fixed width x50/beta characters, what a fixed "
                          "ALiBi penalty per character of distance predicts (notes).",
              "exponential": "A constant hazard: each extra character loses the same fraction of the needles."}[
                  best["form"]]
           + f" Half the needles are found at distance {best['x50']:.0f}, {best['x50'] / cfg.train_len:.1f}x the "
           "longest training prompt.")
    rows = [{"distance": f"[{bn['lo']}, {bn['hi']})", "prompts": bn["n"], "hit rate": bn["rate"],
             **{f"{f['form']} fit": float(curve([bn["mean_distance"]], f)[0]) for f in fits.values()}}
            for bn in bins]
    d.table(rows, floatfmt=".3f")
    resid = [abs(r["hit rate"] - r[f"{best['form']} fit"]) for r in rows]
    i_max = int(np.argmax(resid))
    d.text(f"What to look at: the best fit's largest miss is {resid[i_max]:.3f}, in bin {rows[i_max]['distance']} "
           f"({rows[i_max]['prompts']} prompts, so one prompt there moves the rate by "
           f"{1 / rows[i_max]['prompts']:.3f}); "
           "a bin's weight in the fit is its number of prompts.")
    xs = np.geomspace(max(1.0, edges[0]), edges[-1], 200)
    ci = [math.sqrt(max(r * (1 - r), 1e-9) / m) for r, m in zip(rate, n)]
    ticks = [4 ** i for i in range(1, 12) if edges[0] <= 4 ** i <= edges[-1]]
    p = plotting.lines(ctx.plot_path("distance"),
                       {"measured (±1 s.e.)": (list(x), list(rate), ci),
                        **{f"{f['form']}, x50 = {f['x50']:.0f}" + (f", beta = {f['beta']:.2f}" if f["beta"] else ""):
                           (xs, curve(xs, f)) for f in fits.values()}},
                       "needle-to-query distance (characters)", "exact-match hit rate",
                       "Hit rate against distance, with three fitted decay curves", logx=True,
                       vline=(cfg.train_len, f"longest training prompt ({cfg.train_len})"),
                       styles={"measured (±1 s.e.)": dict(marker="o", lw=0, elinewidth=1.2)},
                       xticks=(ticks, ticks))
    d.image(p, "Binned hit rate against distance (error bars: binomial standard error) and the fits")
    d.text("What to look at: the points left of the dotted line are distances the model trained on"
           + (f"; the best curve crosses p0/2 at {best['x50']:.0f}, "
              + ("beyond" if best["x50"] > cfg.train_len else "within") + " that range." if best["p0"] > 0.5 else
              "; the plateau itself is below one half, so the model does not retrieve reliably even there."))

    d.section("Does the length matter at a fixed distance?")
    short_bins = {bn["lo"]: bn for bn in retrieval.hit_rate_by_distance(short_trials, edges)}
    long_bins = {bn["lo"]: bn for bn in retrieval.hit_rate_by_distance(long_trials, edges)}
    both = [lo for lo in short_bins if lo in long_bins]
    d.table([{"distance": f"[{short_bins[lo]['lo']}, {short_bins[lo]['hi']})",
              "short prompts (L = 2 x distance): n": short_bins[lo]["n"], "hit rate": short_bins[lo]["rate"],
              f"long prompts (L ≥ {lengths[0]}): n": long_bins[lo]["n"], "hit rate ": long_bins[lo]["rate"]}
             for lo in both], floatfmt=".3f")
    gaps = {lo: short_bins[lo]["rate"] - long_bins[lo]["rate"] for lo in both}
    lo_max = max(gaps, key=lambda lo: abs(gaps[lo]), default=None)
    gap = abs(gaps[lo_max]) if both else float("nan")
    d.text(f"What to look at: over the {len(both)} distance bins both sweeps reach, the hit rates differ by at most "
           f"{gap:.2f}"
           + (" (a bin of a few prompts moves by chance about as much): at a fixed distance, what lies before the "
              "needle hardly matters." if gap <= 0.25 else
              f", in bin [{lo_max}, {short_bins[lo_max]['hi']}): "
              + ("short prompts find the needle more often at the same distance. A long prompt has more text before "
                 "the needle, and a head with a small ALiBi slope (1/256 fades a key only by e^-4 at 1,000 characters) "
                 "still spreads attention over it, so the distractor mass Z of day 37's notes keeps growing: "
                 "retention is not a function of distance alone." if gaps[lo_max] > 0 else
                 "long prompts find the needle more often at the same distance: retention is not a function of "
                 "distance alone."))
           if both else "No distance bin is reached by both sweeps.")

    return {**{f"hit_rate_L{L}": round(hit[L], 4) for L in lengths}, "hit_rate_max_len": round(hit[lengths[-1]], 4),
            "max_len": lengths[-1], "best_fit": best["form"], "x50": round(best["x50"], 1),
            "beta": None if best["beta"] is None else round(best["beta"], 3), "p0": round(best["p0"], 4),
            "fit_rmse": round(best["rmse"], 4),
            **{f"{f['form']}_rmse": round(f["rmse"], 4) for f in fits.values()},
            "loglogistic_x50": round(ll["x50"], 1), "length_fit_max_err": round(worst, 4),
            "fixed_distance_max_gap": None if not both else round(gap, 4),
            **{f"s_per_prompt_L{L}": round(secs[L], 4) for L in lengths},
            "predicted_s_per_prompt_32k": round(t32k, 1)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
