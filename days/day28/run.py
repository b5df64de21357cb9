"""Day 28: throughput — micro-batch × gradient accumulation at a constant effective batch, and Amdahl's law.

Every setting m × (E / m) computes the same gradient (checked here against one big batch); only the
speed differs. The grid is timed with the project's real loop (`common.train.train`), in several
interleaved rounds so that machine noise hits every setting alike. `torch.profiler` then splits a
step of the fastest and slowest settings into the loop's labelled phases (data, forward, backward,
optimizer, other), and Amdahl's law turns the fractions into the best speed-up a faster forward and
backward could give. Last, 1 vs p Torch threads gives the Karp–Flatt serial fraction.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from common import data
from common.data import corpus
from common.lab import bench
from common.nn.model import GPT, flops_per_token, gpt_config, gpt_config_for
from common.run import plotting, runner
from common.run.errors import UserError
from common.train import TrainConfig, train, train_config_for

DAY = 28
# How `make reproduce` compares each metric: everything not listed is exact (deterministic).
# Timings, and choices made by a clock, move with the machine's load: reported as ratios only.
METRIC_KINDS = {
    "tps_*": "timing",
    "best_setting": "timing",
    "best_tps": "timing",
    "best_over_worst": "timing",
    "overhead_per_microbatch_ms": "timing",
    "frac_*": "timing",
    "amdahl_serial": "timing",
    "amdahl_limit": "timing",
    "thread_speedup": "timing",
    "karp_flatt_serial_fraction": "timing",
    "tokens_per_s_gpu": "timing",
    "gpu_util": "timing",
    "gpu_mem_frac": ("tolerance", 0.1),
}
# the metrics the README and sprint summaries show
KEY_METRICS = ["best_setting", "best_tps", "best_over_worst", "amdahl_limit", "karp_flatt_serial_fraction"]
PHASES = ("data", "forward", "backward", "optimizer")  # the record_function labels inside train()
NANOGPT_BABY_TPS = 19_500  # nanoGPT's CPU "baby" config (vocab 65) on the reference 2-core machine (REFERENCE.md)


@dataclass
class Config:
    vocab_size: int = 4096        # small enough that the tied output layer does not swamp a 128-wide model
    corpus_bytes: int = 0         # 0: the whole combined corpus
    n_layer: int = 4              # nanoGPT's "baby" shape (4 × 128, context 64)
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    effective_batch: int = 32     # sequences per optimizer step; the grid is every divisor m of it, m × (E / m)
    steps: int = 20               # optimizer steps per timed run (the first 10% are excluded as warm-up)
    rounds: int = 3               # interleaved passes over the grid (median and spread over rounds)
    profile_steps: int = 3        # steps under torch.profiler (fastest, slowest setting); few, because reading
                                  # back the many small ops of a 1-sequence micro-batch takes longer than running them
    threads: int = 0              # p for Karp–Flatt (1 vs p threads); 0: the thread count found at start
    thread_rounds: int = 3        # interleaved 1-thread / p-thread runs of the fastest setting
    dtype: str = "float32"        # autocast dtype (bfloat16 on GPU)


PRESETS = {"nano": dict(vocab_size=400, corpus_bytes=100_000, n_layer=2, n_head=2, n_embd=32, block_size=32,
                        effective_batch=8, steps=4, rounds=2, profile_steps=2, thread_rounds=1),
           "cpu": {}, "gpu": dict(vocab_size=16000, n_layer=6, n_head=6, n_embd=384, block_size=256,
                                  effective_batch=64, steps=30, dtype="bfloat16")}


def grid(effective: int) -> list[tuple[int, int]]:
    """(micro-batch, accumulation steps) for every divisor of `effective`: the product is always `effective`."""
    if effective < 1:
        raise UserError(f"effective_batch must be positive, got {effective}.")
    return [(m, effective // m) for m in range(1, effective + 1) if effective % m == 0]


def amdahl(serial: float, k: float) -> float:
    """Overall speed-up when the fraction 1 - `serial` of the time runs `k` times faster."""
    # >>> exercise day28.amdahl: Amdahl's law: the speed-up when all but the serial fraction runs k times faster
    return 1.0 / (serial + (1.0 - serial) / k)
    # <<< exercise day28.amdahl


def karp_flatt(speedup: float, p: int) -> float:
    """The serial fraction e that explains a measured speed-up on p workers: (1/S - 1/p) / (1 - 1/p)."""
    # >>> exercise day28.karp_flatt: Karp-Flatt: the serial fraction that explains a measured speed-up on p workers
    return (1.0 / speedup - 1.0 / p) / (1.0 - 1.0 / p)
    # <<< exercise day28.karp_flatt


class SliceLoader:
    """One fixed batch (x, y) served as its consecutive micro-batches: all that `train()` asks of a loader."""

    def __init__(self, x, y, micro: int):
        self.batch_size, self.block_size, self.i = micro, x.shape[1], -1
        self.parts = list(zip(x.split(micro), y.split(micro)))

    def sample(self):
        self.i += 1
        return self.parts[self.i % len(self.parts)]

    def fixed(self, n: int):
        return self.parts[:1] * n


class GradRecorder(torch.optim.Optimizer):
    """An 'optimizer' whose step only keeps a copy of the gradients the loop accumulated."""

    def __init__(self, params):
        super().__init__(params, {})
        self.grads: list[torch.Tensor] = []

    @torch.no_grad()
    def step(self, closure=None):
        self.grads = [p.grad.clone() for g in self.param_groups for p in g["params"]]


def accumulated_grads(model, x, y, micro: int) -> list[torch.Tensor]:
    """The gradient one step of `train()` accumulates over micro-batches of `micro` rows of (x, y)."""
    model.zero_grad(set_to_none=True)  # train() adds to whatever .grad holds
    rec = GradRecorder(model.parameters())
    tc = TrainConfig(max_iters=1, grad_accum=x.shape[0] // micro, grad_clip=0.0, warmup_iters=0, eval_interval=0,
                     eval_iters=1)
    train(model, SliceLoader(x, y, micro), SliceLoader(x, y, micro), tc, x.device, show_progress=False, optimizer=rec)
    return rec.grads


def max_rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Largest |a - b| over all entries, relative to the largest |b|."""
    return max((u - v).abs().max().item() for u, v in zip(a, b)) / max(v.abs().max().item() for v in b)


def timed_run(cfg: Config, td, micro: int, steps: int, seed: int, dev, tracker=None):
    """One run of the project's training loop at micro-batch `micro` with E / micro accumulation steps."""
    torch.manual_seed(seed)
    model = GPT(gpt_config_for(cfg, vocab_size=cfg.vocab_size))
    tc = train_config_for(cfg, max_iters=steps, grad_accum=cfg.effective_batch // micro, warmup_iters=1,
                          eval_interval=0, eval_iters=1)
    return train(model, data.StreamingLoader(td.train, cfg.block_size, micro, seed=seed, device=dev),
                 data.StreamingLoader(td.val, cfg.block_size, micro, seed=seed + 1, device=dev), tc, dev, tracker,
                 show_progress=False)


def profile_setting(cfg: Config, td, micro: int, seed: int, dev) -> dict:
    """Phase fractions of the step time, aten ops per step and the per-op self times, under torch.profiler."""
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with profile(activities=acts) as prof:
        res = timed_run(cfg, td, micro, cfg.profile_steps, seed, dev)
    ka, step_s = prof.key_averages(), statistics.fmean(res.iter_times)
    gpu = {}
    if dev.type == "cuda":  # busy = kernel time / wall time of the training steps; memory = allocator's peak
        busy = sum(getattr(e, "self_device_time_total", 0.0) for e in ka) / 1e6
        gpu = {"util": min(1.0, busy / sum(res.iter_times)), "mem_frac": torch.cuda.max_memory_allocated(dev)
               / torch.cuda.get_device_properties(dev).total_memory, "tps": res.tokens_per_s}
    n = len(res.iter_times)
    frac = {p: sum(e.cpu_time_total for e in ka if e.key == p) / 1e6 / n / step_s for p in PHASES}
    frac["other"] = 1.0 - sum(frac.values())
    ops: dict[str, tuple[float, float]] = {}
    for e in prof.events():  # aten ops inside a phase label (not model set-up or the final evaluation)
        up = e.cpu_parent
        while up is not None and up.name not in PHASES:
            up = up.cpu_parent
        if up is not None and e.name.startswith("aten::"):
            c, t = ops.get(e.name, (0.0, 0.0))
            ops[e.name] = (c + 1 / n, t + e.self_cpu_time_total / 1e3 / n)
    return {"frac": frac, "step_ms": step_s * 1e3, "ops": ops, "ops_per_step": sum(c for c, _ in ops.values()),
            "gpu": gpu}


def measure(cfg: Config, ctx: runner.Context) -> dict:
    """Run every experiment in order: gradient check, grid, profiler, threads; returns the raw results."""
    dev, found = ctx.device, torch.get_num_threads()
    td = corpus.token_data(cfg.vocab_size, cache=ctx.cache_dir("tokens"), corpus_bytes=cfg.corpus_bytes)
    settings = grid(cfg.effective_batch)
    name = {m: f"{m}×{a}" for m, a in settings}
    res = {"found": found, "settings": settings, "name": name}
    res |= measure_grad(cfg, ctx, td, settings)
    res |= measure_grid(cfg, ctx, td, settings, name)
    # 3. where the time goes: profile the fastest and the slowest setting
    res["prof"] = {m: profile_setting(cfg, td, m, ctx.seed, dev) for m in dict.fromkeys((res["best"], res["worst"]))}
    res |= measure_threads(cfg, ctx, td, res["best"], found)
    return res


def measure_grad(cfg: Config, ctx: runner.Context, td, settings) -> dict:
    """Gradient accumulation is exact: every setting's one-step gradient against one big batch's."""
    dev = ctx.device
    torch.manual_seed(ctx.seed)
    probe = GPT(gpt_config_for(cfg, vocab_size=cfg.vocab_size)).to(dev)
    x, y = data.StreamingLoader(td.train, cfg.block_size, cfg.effective_batch, seed=ctx.seed, device=dev).sample()
    ref = torch.autograd.grad(probe(x, y)[1], list(probe.parameters()))  # one forward and backward over the whole batch
    grad_diff = max(max_rel_diff(accumulated_grads(probe, x, y, m), ref) for m, _ in settings)
    return {"probe": probe, "grad_diff": grad_diff}


def measure_grid(cfg: Config, ctx: runner.Context, td, settings, name) -> dict:
    """The grid, interleaved (each round starts one setting further along): tokens/s per run, medians, best, worst."""
    rounds = {m: 0 for m, _ in settings}

    shape = SimpleNamespace(cfg=gpt_config_for(cfg, vocab_size=cfg.vocab_size))  # for the throughput table

    def grid_run(m):  # every run's curves are logged, under setting/round
        rounds[m] += 1
        r = timed_run(cfg, td, m, cfg.steps, ctx.seed, ctx.device, ctx.tracker.scoped(f"{name[m]}/round{rounds[m]}"))
        if rounds[m] == 1:
            ctx.record_throughput(f"{name[m]} (round 1)", r, shape, cfg.block_size)
        return r.tokens_per_s
    tps = bench.interleave({m: (lambda m=m: grid_run(m)) for m, _ in settings}, cfg.rounds, rotate=True)
    med = {m: statistics.median(v) for m, v in tps.items()}
    return {"tps": tps, "med": med, "best": max(med, key=med.get), "worst": min(med, key=med.get)}


def measure_threads(cfg: Config, ctx: runner.Context, td, best: int, found: int) -> dict:
    """Karp–Flatt runs: the fastest setting on 1 vs p Torch threads, interleaved; the thread count is restored."""
    p = cfg.threads or found
    if p < 2:
        return {"p": p, "times": None}

    def on_threads(th):
        torch.set_num_threads(th)
        return timed_run(cfg, td, best, cfg.steps, ctx.seed, ctx.device).tokens_per_s
    try:
        times = bench.interleave({1: lambda: on_threads(1), p: lambda: on_threads(p)}, cfg.thread_rounds)
    finally:
        torch.set_num_threads(found)
    return {"p": p, "times": times}


def report(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    """Write the deliverable (tables, plots, text) from `measure`'s results; returns the metrics."""
    settings, name, med, best, worst = res["settings"], res["name"], res["med"], res["best"], res["worst"]
    a_ms = report_grid(res, cfg, ctx)
    report_profile(res, cfg, ctx)
    serial = report_amdahl(res, ctx)
    kf = report_threads(res, cfg, ctx)
    bf = res["prof"][best]["frac"]
    return {**{f"tps_mb{m}_acc{a}": round(med[m]) for m, a in settings}, "best_setting": name[best].replace("×", "x"),
            "best_tps": round(med[best]), "best_over_worst": round(med[best] / med[worst], 3),
            "overhead_per_microbatch_ms": round(a_ms, 3), "grad_accum_max_rel_diff": float(f"{res['grad_diff']:.2e}"),
            **{f"frac_{k}": round(v, 4) for k, v in bf.items()}, "amdahl_serial": round(serial[best], 4),
            "amdahl_limit": round(1 / serial[best], 2), **kf, **gpu_targets(res, ctx)}


def gpu_targets(res: dict, ctx: runner.Context) -> dict:
    """The seed's GPU targets, measured only on CUDA: tokens/s, GPU busy fraction, peak memory share."""
    g = res["prof"][res["best"]]["gpu"]
    if not g:
        ctx.deliverable.text("GPU targets (≥ 10,000 tokens/s, ≥ 80% GPU utilisation, ≤ 80% of GPU memory): pending, "
                             "needs a CUDA GPU: run `make day 28 ARGS='--preset gpu'`. The tokens/s above are CPU "
                             "numbers and are not a measurement of them.")
        return {}
    ctx.deliverable.text(f"GPU targets at {res['name'][res['best']]}: {res['med'][res['best']]:,.0f} tokens/s, the GPU "
                         f"busy {g['util']:.0%} of the profiled steps' wall time (kernel time / step time), peak "
                         f"allocator memory {g['mem_frac']:.0%} of the device.")
    return {"tokens_per_s_gpu": round(res["med"][res["best"]]), "gpu_util": round(g["util"], 3),
            "gpu_mem_frac": round(g["mem_frac"], 3)}


def report_grid(res: dict, cfg: Config, ctx: runner.Context) -> float:
    """The grid section: table, throughput bars, the c + a·n fit and the nanoGPT anchor; returns a (ms)."""
    d, dev, probe = ctx.deliverable, ctx.device, res["probe"]
    settings, name, tps, med, best, worst = (res[k] for k in ("settings", "name", "tps", "med", "best", "worst"))
    tok_step = cfg.effective_batch * cfg.block_size
    n_micro = np.array([a for _, a in settings], dtype=float)
    step_ms = np.array([tok_step / med[m] * 1e3 for m, _ in settings])
    a_ms, c_ms = np.polyfit(n_micro, step_ms, 1)  # step time = c + a × (number of micro-batches)
    d.section("The grid: same effective batch, different micro-batches")
    d.text(f"{probe.num_params():,}-parameter GPT ({cfg.n_layer} × {cfg.n_embd}, context {cfg.block_size}, "
           f"vocabulary {cfg.vocab_size}); every optimizer step sees {cfg.effective_batch} sequences = {tok_step:,} "
           f"tokens. Each setting ran {cfg.rounds} times × {cfg.steps} steps through `common.train.train`, the "
           f"rounds interleaved; tokens/s is each run's median steady-state step. Torch threads: {res['found']}.")
    d.table([{"micro × accum": name[m], "tokens/s (median)": round(med[m]),
              "min–max over rounds": f"{min(tps[m]):,.0f}–{max(tps[m]):,.0f}", "vs best": med[m] / med[best],
              "step (ms)": tok_step / med[m] * 1e3, "fit c + a·n (ms)": c_ms + a_ms * a} for m, a in settings])
    miss = int(np.argmax(np.abs(step_ms - (c_ms + a_ms * n_micro))))
    fit_miss = step_ms[miss] - (c_ms + a_ms * n_micro[miss])
    d.text(f"What to look at: *vs best* is each setting's tokens/s over the best's, *step (ms)* is the {tok_step:,} "
           "tokens of a step divided by tokens/s, and the last column is the straight line fitted to the step times. "
           f"The line misses most at {name[settings[miss][0]]}, where the measured step is {abs(fit_miss):.1f} ms "
           f"{'slower' if fit_miss > 0 else 'faster'} than it predicts"
           + (": a cost the line has no term for, such as the memory traffic of one large micro-batch."
              if fit_miss > 0 and settings[miss][0] == settings[-1][0] else "."))
    p1 = plotting.bars(ctx.plot_path("tokens_per_s"), [name[m] for m, _ in settings], [med[m] for m, _ in settings],
                       "tokens/s (median over rounds)", "Throughput at a constant effective batch",
                       errors=np.array([[med[m] - min(tps[m]), max(tps[m]) - med[m]] for m, _ in settings]).T,
                       xlabel="micro-batch × accumulation steps")
    d.image(p1, "Median tokens/s per setting; bars span the rounds' min–max")
    share, big = a_ms * n_micro.max() / step_ms[0], settings[-1][0]
    order = [m for m, _ in settings]
    i_best = order.index(best)
    vals = [med[m] for m in order]
    smooth = (all(u < v for u, v in zip(vals[:i_best], vals[1:i_best + 1]))
              and all(u > v for u, v in zip(vals[i_best:], vals[i_best + 1:])))
    shape = (f"peaks at {name[best]}, though not smoothly on either side" if not smooth else
             "rises with the micro-batch all the way to the largest" if i_best == len(order) - 1 else
             "falls as the micro-batch grows" if i_best == 0 else
             f"rises from {name[order[0]]} up to {name[best]} and falls after it")
    second = max((m for m in order if m != best), key=med.get, default=None)
    tie = second is not None and min(tps[best]) <= max(tps[second])
    d.text(f"What to look at: throughput {shape}. "
           + (f"The runner-up {name[second]} ({med[second]:,.0f}) has a min–max range that overlaps the best's, so "
              "those two are a tie within this machine's noise. " if tie else
              f"No other setting's min–max range reaches the best's, so {name[best]} wins beyond the noise. "
              if second is not None else "")
           + f"Fastest: **{name[best]}**, {med[best]:,.0f} tokens/s, {med[best] / med[worst]:.2f}× the slowest "
           f"({name[worst]}). A straight line through the step times, c + a·n over the number n of micro-batches, "
           f"gives a = {a_ms:.2f} ms of fixed cost per micro-batch and c = {c_ms:.1f} ms; at {name[settings[0][0]]} "
           f"that fixed cost would be {share:.0%} of the step."
           + (f" The largest micro-batch is slower ({name[big]} runs at {med[big] / med[best]:.2f}× the best); a "
              f"likely cause: its logits alone take {big * cfg.block_size * cfg.vocab_size * 4 / 2**20:.0f} MiB, "
              "beyond typical CPU caches." if med[big] < 0.9 * med[best] else "")
           + f" All {len(settings)} settings compute the same "
           f"gradient: the largest difference from one {cfg.effective_batch}-sequence batch is {res['grad_diff']:.1e} "
           f"of the largest gradient entry (float rounding).")
    if dev.type == "cpu":
        ratio = flops_per_token(probe.cfg) / flops_per_token(gpt_config("baby", vocab_size=65))
        d.text(f"Anchor: nanoGPT's baby config runs ≈ {NANOGPT_BABY_TPS:,} tokens/s on the reference machine; this "
               f"model needs {ratio:.2f}× its matmul FLOPs per token, so the same FLOP rate would give "
               f"≈ {NANOGPT_BABY_TPS / ratio:,.0f} tokens/s (best here: {med[best]:,.0f}).")
    return a_ms


def report_profile(res: dict, cfg: Config, ctx: runner.Context) -> None:
    """The profiler section: phase percentages per setting and the top aten ops of the fastest."""
    d, name, prof, best = ctx.deliverable, res["name"], res["prof"], res["best"]
    d.section("Where the time goes (torch.profiler)")
    d.table([{"setting": name[m], **{f"{k} %": 100 * v for k, v in pr["frac"].items()},
              "step under profiler (ms)": pr["step_ms"], "aten ops / step": round(pr["ops_per_step"])}
             for m, pr in prof.items()], floatfmt=".1f")
    bf = prof[best]["frac"]
    text = (f"What to look at: at {name[best]} forward + backward take {100 * (bf['forward'] + bf['backward']):.0f}% "
            f"of the step; data, optimizer and other, which faster kernels would not touch, take "
            f"{100 * (1 - bf['forward'] - bf['backward']):.0f}%.")
    others = [m for m in prof if m != best]
    if others:
        w = others[0]
        text += (f" {name[w]} issues {prof[w]['ops_per_step'] / prof[best]['ops_per_step']:.1f}× as many aten ops per "
                 "step for the same tokens: the per-micro-batch overhead that the fit's a measures.")
    unprof = {m: cfg.effective_batch * cfg.block_size / res["med"][m] * 1e3 for m in prof}
    slower = [m for m in prof if prof[m]["step_ms"] > unprof[m]]
    if slower:
        text += (" Steps under the profiler are slower than unprofiled (" + ", ".join(
            f"{name[m]}: {prof[m]['step_ms']:.1f} against {unprof[m]:.1f} ms" for m in slower)
            + "): it adds a cost per op, so read its percentages, not its times.")
    d.text(text)
    top = sorted(prof[best]["ops"], key=lambda k: -prof[best]["ops"][k][1])[:8]
    d.table([{"op (top by self CPU, fastest)": k, **{f"{name[m]} {w}": prof[m]["ops"].get(k, (0, 0))[i]
              for m in prof for i, w in enumerate(("calls/step", "self ms/step"))}} for k in top], floatfmt=".3g")
    ops_b, first = prof[best]["ops"], top[0] if top else None
    if first:
        total = sum(t for _, t in ops_b.values())
        text = (f"What to look at: `{first}` leads at {ops_b[first][1]:.3g} ms per step, "
                f"{ops_b[first][1] / total:.0%} of all aten self time at {name[best]}"
                + (" (the matrix multiplies: the work that scales with tokens)." if first == "aten::mm" else "."))
        if others:
            w = others[0]
            ratio = prof[w]["ops"].get(first, (0, 0))[0] / ops_b[first][0]
            n_w, n_b = cfg.effective_batch // w, cfg.effective_batch // best  # micro-batches per step
            text += (f" {name[w]} calls it just as often: it runs once per optimizer step, not per micro-batch."
                     if 0.67 <= ratio <= 1.5 else
                     f" {name[w]} calls it {ratio:.2g}× as often, as it runs {n_w} micro-batches per step instead of "
                     f"{n_b}" + (", each on a smaller piece of the batch: the fixed cost per call adds up."
                                 if ratio > 1 else "."))
        d.text(text)
    if ctx.device.type == "cuda":
        d.text("On CUDA the phase labels time the host side: kernels run asynchronously and the wait lands in "
               "`other` (the loop's finiteness check synchronises).")


def report_amdahl(res: dict, ctx: runner.Context) -> dict:
    """Amdahl's law from the profile (only forward and backward get faster): plot and text; returns s per setting."""
    d, name, prof, best, worst = ctx.deliverable, res["name"], res["prof"], res["best"], res["worst"]
    serial = {m: 1 - pr["frac"]["forward"] - pr["frac"]["backward"] for m, pr in prof.items()}
    ks = [2 ** i for i in range(9)]
    p2 = plotting.lines(ctx.plot_path("amdahl"), {f"{name[m]} (s = {serial[m]:.3f}, limit {1 / serial[m]:.1f}×)":
                                                   (ks, [amdahl(serial[m], k) for k in ks]) for m in prof},
                        "k: forward + backward made k× faster (log2)", "overall speed-up (×)",
                        "Amdahl's law from the profile", logx=True, markers=True,
                        hline=(1 / serial[best], f"limit 1/s = {1 / serial[best]:.1f}× at {name[best]}"))
    d.section("Amdahl's law")
    d.text(f"If forward and backward ran k× faster and nothing else did, a step would speed up by 1 / (s + (1 − s)/k) "
           f"with s the rest (data, optimizer, other). At {name[best]}: s = {serial[best]:.3f}, so k = 2 gives "
           f"{amdahl(serial[best], 2):.2f}×, k = 10 gives {amdahl(serial[best], 10):.2f}×, and no k beats "
           f"**{1 / serial[best]:.1f}×**" + (f"; at {name[worst]}, s = {serial[worst]:.3f} and the limit is "
                                             f"{1 / serial[worst]:.1f}×." if worst != best else "."))
    d.image(p2, "Speed-up against k, with the 1/s ceiling")
    s_b = serial[best]
    d.text(f"What to look at: each curve bends towards its own ceiling 1/s (in the legend). At {name[best]} half of "
           f"the ceiling already needs k = (1 − s)/s = {(1 - s_b) / s_b:.0f}, and k = {ks[-1]} reaches "
           f"{amdahl(s_b, ks[-1]):.1f}×: beyond a few-fold speed-up of forward and backward, each doubling of k gains "
           "less, because the untouched rest of the step sets the pace.")
    return serial


def report_threads(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    """The Karp–Flatt section from the 1 vs p thread runs; returns its metrics (empty when skipped)."""
    d, p, times, best = ctx.deliverable, res["p"], res["times"], res["best"]
    if times is None:
        d.text(f"Karp–Flatt skipped: the run had {p} Torch thread(s); it needs p ≥ 2.")
        return {}
    s_p = statistics.median(times[p]) / statistics.median(times[1])
    kf = {"thread_speedup": round(s_p, 3), "karp_flatt_serial_fraction": round(karp_flatt(s_p, p), 3)}
    e = kf["karp_flatt_serial_fraction"]
    d.section("Threads: the Karp–Flatt serial fraction")
    d.text(f"At {res['name'][best]}: {statistics.median(times[1]):,.0f} tokens/s on 1 thread, "
           f"{statistics.median(times[p]):,.0f} on {p} (medians of {cfg.thread_rounds} interleaved runs): "
           f"S = {s_p:.3g}. Karp–Flatt e = (1/S − 1/p)/(1 − 1/p) = {e:.3g}: "
           + (f"the part that does not parallelise, so no thread count can beat 1/e = {1 / e:.1f}×." if 0 < e < 1
              else "S ≥ p (super-linear, or noise): no bound." if e <= 0 else
              "S ≤ 1: the extra threads did not help (another process busy on the cores?); no bound."))
    return kf


def main(cfg: Config, ctx: runner.Context) -> dict:
    """Measure, then narrate: run the experiments, then write the deliverable from their results."""
    return report(measure(cfg, ctx), cfg, ctx)


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
