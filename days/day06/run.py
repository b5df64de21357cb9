"""Day 6: reproducible training, and LayerNorm's dtype and eps behaviour.

Trains a small character GPT on Tiny Shakespeare several times through common/train/loop.py: with one
seed (the loss curves and weights must be bit-identical) and with different seeds (the run-to-run
spread of the final val loss, and of tokens/s). Every item of the determinism checklist in the
deliverable is a fact this run measured. The seeding lives in common/lab/determinism.py; the model,
its init and LayerNorm in common/nn/model.py and common/nn/layers.py.
"""

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from common import data
from common.lab import bench, determinism
from common.nn.layers import LayerNorm, layer_norm_reference
from common.nn.model import GPT, gpt_config
from common.run import plotting, runner
from common.train import evaluate, train, train_config_for

DAY = 6
# How `make reproduce` compares each metric: everything not listed is exact (deterministic).
# Timings, and choices made by a clock, move with the machine's load: reported as ratios only.
METRIC_KINDS = {
    "tokens_per_s_mean": "timing",
}


@dataclass
class Config:
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64
    batch_size: int = 16
    max_iters: int = 500
    lr: float = 3e-3  # small model, short run: a high peak lr, cosine to lr / 10
    warmup_iters: int = 50
    eval_interval: int = 100
    eval_iters: int = 20
    n_runs: int = 3  # repeats with the same seed, and runs with different seeds
    thread_check_iters: int = 30  # a short same-seed run with 1 thread vs the default count
    ln_dim: int = 256  # LayerNorm tables: row width


PRESETS = {"nano": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=30, warmup_iters=5,
                        eval_interval=10, eval_iters=2, thread_check_iters=5, ln_dim=64), "cpu": {},
           "gpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=64, max_iters=2000,
                       eval_interval=250, lr=1e-3)}


def train_once(cfg, seed, corpus, dev, iters=None, tracker=None):
    """Seed, build, train; returns (TrainResult, model). Everything random happens after the seed."""
    tok, tr, va = corpus
    determinism.seed_everything(seed)
    model = GPT(gpt_config("nano", vocab_size=tok.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                           n_embd=cfg.n_embd, block_size=cfg.block_size))
    tc = train_config_for(cfg, max_iters=iters or cfg.max_iters, log_interval=10)
    res = train(model, data.Batches(tr, cfg.block_size, cfg.batch_size, dev),
                data.Batches(va, cfg.block_size, cfg.batch_size, dev), tc, dev, tracker, show_progress=False)
    return res, model


def max_delta(a, b):
    """Largest difference between two runs: logged train losses, val losses and every weight."""
    # >>> exercise day06.max_delta: the largest gap between two runs' logged losses, and between their weights
    losses = np.abs(np.subtract(a[0].train_log["loss"] + a[0].history["val"],
                                b[0].train_log["loss"] + b[0].history["val"])).max()
    weights = max((p - q).abs().max().item() for p, q in zip(a[1].parameters(), b[1].parameters()))
    return float(losses), weights
    # <<< exercise day06.max_delta


def rng_facts(corpus, dev):
    """Seeding, fixed eval batches, eval leaving the training RNG alone, RNG state save/restore."""
    draw = lambda: (random.random(), float(np.random.rand()), torch.rand(1).item())  # noqa: E731
    facts, b = {}, data.Batches(corpus[2], 32, 4, dev)
    determinism.seed_everything(7)
    first = draw()
    determinism.seed_everything(7)
    facts["seed_everything(s) twice gives the same Python / NumPy / Torch draws"] = first == draw()
    state, fixed = torch.get_rng_state(), b.fixed(2)
    facts["Batches.fixed(n) leaves the global Torch RNG untouched"] = torch.equal(state, torch.get_rng_state())
    facts["Batches.fixed(n) returns the same windows on every call"] = all(
        torch.equal(p[0], q[0]) for p, q in zip(fixed, b.fixed(2)))
    model = GPT(gpt_config("nano", vocab_size=corpus[0].vocab_size)).to(dev)
    state = torch.get_rng_state()
    evaluate(model, {"val": fixed}, dev)
    facts["evaluate() leaves the training RNG untouched"] = torch.equal(state, torch.get_rng_state())
    saved = determinism.rng_state()
    x1 = b.sample()[0]
    determinism.set_rng_state(saved)
    facts["rng_state / set_rng_state replays the same training batch"] = torch.equal(x1, b.sample()[0])
    return facts


def layer_norm_tables(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    x = 3 + 2 * torch.randn(64, cfg.ln_dim, generator=g, dtype=torch.float64)  # rows with mean 3, std 2
    ln = LayerNorm(cfg.ln_dim)
    with torch.no_grad():
        ln.weight.copy_(1 + 0.1 * torch.randn(cfg.ln_dim, generator=g))
        ln.bias.copy_(0.1 * torch.randn(cfg.ln_dim, generator=g))
        w, b = ln.weight.double(), ln.bias.double()
        dtype_rows = []
        for dt in (torch.float32, torch.bfloat16, torch.float16):
            xd = x.to(dt)
            y = ln(xd)
            dtype_rows.append({"input dtype": str(dt)[6:], "output dtype": str(y.dtype)[6:],
                               "unit roundoff u": torch.finfo(dt).eps / 2,
                               "max abs err vs float64 LN of the rounded input":
                                   (y.double() - layer_norm_reference(xd.double(), w, b)).abs().max().item(),
                               "max abs err vs float64 LN of the exact input":
                                   (y.double() - layer_norm_reference(x, w, b)).abs().max().item()})
        eps_rows = []
        for std in (0.0, 1e-4, 1e-2, 1.0):
            row = (1.0 + std * torch.randn(1, cfg.ln_dim, generator=g)).float()  # a (near-)constant row
            s = row.double().std(unbiased=False).item()
            for eps in (0.0, 1e-12, 1e-5, 1e-2):
                out = torch.nn.functional.layer_norm(row, (cfg.ln_dim,), eps=eps)  # LayerNorm's kernel, no affine
                eps_rows.append({"row std": s, "eps": eps, "output std": out.double().std(unbiased=False).item(),
                                 "predicted std / sqrt(std^2 + eps)": s / np.sqrt(s * s + eps) if s or eps else np.nan,
                                 "NaN count": int(out.isnan().sum())})
    return dtype_rows, eps_rows


def main(cfg: Config, ctx) -> dict:
    dev, d = ctx.device, ctx.deliverable
    corpus = data.char_corpus("tinyshakespeare")
    with determinism.deterministic(True, warn_only=True):  # warn, not fail, on a CUDA op with no deterministic kernel
        det_on, seeds = torch.are_deterministic_algorithms_enabled(), [ctx.seed + i for i in range(cfg.n_runs)]
        same = [train_once(cfg, ctx.seed, corpus, dev, tracker=ctx.tracker.scoped(f"seed{ctx.seed}_run{i}"))
                for i in range(cfg.n_runs)]
        diff = [same[0]] + [train_once(cfg, s, corpus, dev, tracker=ctx.tracker.scoped(f"seed{s}")) for s in seeds[1:]]
        for s, (res, model) in zip(seeds, diff):
            ctx.record_throughput(f"seed {s}", res, model, cfg.block_size)
        threads = torch.get_num_threads()
        short = train_once(cfg, ctx.seed, corpus, dev, cfg.thread_check_iters)
        torch.set_num_threads(1)
        try:
            one = train_once(cfg, ctx.seed, corpus, dev, cfg.thread_check_iters)
        finally:
            torch.set_num_threads(threads)
        facts = rng_facts(corpus, dev)
    for i, (res, _) in enumerate(same + diff[1:]):
        for step, v in zip(res.history["step"], res.history["val"]):
            ctx.tracker.log(f"run{i}/val_loss", v, step)
    deltas = [max_delta(same[0], r) for r in same[1:]]
    loss_d, weight_d = max(x[0] for x in deltas), max(x[1] for x in deltas)
    identical = loss_d == 0 and weight_d == 0
    finals = [r.final_val for r, _ in diff]
    (m, s), (tm, ts) = bench.mean_std(finals), bench.mean_std([r.tokens_per_s for r, _ in diff])
    rel_std = s / m
    thread_d = max(max_delta(short, one))
    dtype_rows, eps_rows = layer_norm_tables(cfg, ctx.seed)

    rows_same = [{"run": i + 1, "seed": ctx.seed, "final val loss": r.final_val, "tokens/s": r.tokens_per_s,
                  "max abs diff vs run 1 (losses, weights)": "—" if i == 0 else f"{deltas[i - 1][0]:.3g}, "
                  f"{deltas[i - 1][1]:.3g}"} for i, (r, _) in enumerate(same)]
    rows_diff = [{"seed": sd, "final val loss": f"{r.final_val:.4f}", "best val loss": f"{r.best_val:.4f}",
                  "tokens/s": f"{r.tokens_per_s:.0f}", "train wall (s)": f"{r.wall_s:.1f}"}
                 for sd, (r, _) in zip(seeds, diff)]
    rows_diff.append({"seed": "mean ± std", "final val loss": bench.fmt_mean_std(finals, 4),
                      "tokens/s": bench.fmt_mean_std([r.tokens_per_s for r, _ in diff], 4)})
    plot = plotting.lines(ctx.plot_path("val_loss_seeds"),
                          {f"seed {sd}": (r.history["step"], r.history["val"]) for sd, (r, _) in zip(seeds, diff)},
                          "optimizer step", "val loss (nats / char)", f"{len(seeds)} seeds, same everything else",
                          markers=True)
    yn = lambda b: "yes" if b else "NO"  # noqa: E731
    checklist = [
        f"Same seed → identical loss curves and weights: {yn(identical)} (max Δ loss {loss_d:.3g}, "
        f"max Δ weight {weight_d:.3g}, over {cfg.n_runs} runs)",
        f"Different seeds → different runs: {yn(max(finals) > min(finals))} (final val loss spread "
        f"{max(finals) - min(finals):.3g})",
        *[f"{k}: {yn(v)}" for k, v in facts.items()],
        f"Deterministic algorithms switched on for the runs (`set_deterministic`): {yn(det_on)}",
        f"CUBLAS_WORKSPACE_CONFIG set: {os.environ.get('CUBLAS_WORKSPACE_CONFIG', 'unset')} (matters on CUDA only)",
        f"Thread count recorded: {threads} torch threads; 1 thread vs {threads} for {cfg.thread_check_iters} steps: "
        f"{'bit-identical' if thread_d == 0 else f'differs by {thread_d:.3g}'}",
        "Batches are drawn in the main process from the seeded global RNG: no DataLoader workers to seed",
        f"Device: {dev}" + ("" if dev.type == "cuda" else "; CUDA atomics, cuDNN and cuBLAS: skipped, needs CUDA"),
        f"Seed-to-seed spread of the final val loss: {rel_std:.2%} of the mean "
        f"({'within' if rel_std <= 0.01 else 'OUTSIDE'} the 1% target)"]

    d.section("Same seed, repeated")
    d.table(rows_same, floatfmt=".6g")
    tps = [r.tokens_per_s for r, _ in same]
    d.text("What to look at: the last column. " + (
        f"Every logged loss and every weight of runs 2–{cfg.n_runs} equals run 1's exactly (difference 0), so "
        "the final val losses are the same to every digit" if identical else
        f"Runs 2–{cfg.n_runs} differ from run 1 by up to {loss_d:.3g} in a loss and {weight_d:.3g} in a weight: "
        "something in this setup is not deterministic")
        + f"; only tokens/s moves ({min(tps):,.0f} to {max(tps):,.0f}), because the clock is not part of the "
        "computation.")
    d.section("Different seeds")
    d.table(rows_diff, floatfmt=".4g")
    same_best = all(f"{r.final_val:.4f}" == f"{r.best_val:.4f}" for r, _ in diff)
    d.text(f"val_loss_rel_std = std / mean of the final val loss = {rel_std:.4f}; tokens/s varies by "
           f"{ts / tm:.1%} (timing noise: the machine, not the seed). "
           + ("The final and best val loss columns agree because each run's lowest val loss came at its last "
              "evaluation: the loss was still falling. " if same_best else "")
           + f"With {len(finals)} seeds the std itself is uncertain by about "
           f"{1 / np.sqrt(2 * (len(finals) - 1)):.0%} (notes), so read {rel_std:.2%} as an order of magnitude.")
    d.image(plot, "val loss of the different-seed runs")
    hist = [r.history["val"] for r, _ in diff]
    spreads = [max(v) - min(v) for v in zip(*hist)]
    steps = diff[0][0].history["step"]
    order = {tuple(sorted(range(len(hist)), key=lambda i: v[i])) for v in zip(*hist)}
    d.text(f"What to look at: the {len(seeds)} curves "
           + ("swap places along the way" if len(order) > 1 else "keep the same order at every evaluation")
           + f"; the spread between seeds is {spreads[0]:.3f} nats/char at step {steps[0]} and {spreads[-1]:.3f} at "
           f"step {steps[-1]}, "
           + ("so it shrinks as training goes on." if spreads[-1] < spreads[0] else "so it does not shrink here.")
           + " That spread is what a change must beat before it counts as an improvement.")
    d.section("Determinism checklist (each item measured by this run)")
    d.text("\n".join(f"- {c}" for c in checklist))
    d.section("LayerNorm: input dtype")
    d.text("common.nn.layers.LayerNorm (float32 parameters) on rows with mean 3 and std 2, against the float64 "
           "`layer_norm_reference`.")
    d.table(dtype_rows, floatfmt=".3g")
    k1, k2 = "max abs err vs float64 LN of the rounded input", "max abs err vs float64 LN of the exact input"
    in_u = [r[k1] / r["unit roundoff u"] for r in dtype_rows]
    big = [r["input dtype"] for r, v in zip(dtype_rows, in_u) if v >= 10]
    d.text("What to look at: the first error column isolates what the kernel adds (both sides get the same rounded "
           "input). In units of each dtype's unit roundoff u it is " + ", ".join(
               f"{r['input dtype']} {v:.1f} u" for r, v in zip(dtype_rows, in_u))
           + "; normalised outputs reach |y| of a few units, so a few u is the cost of rounding them"
           + (f", and {', '.join(big)} sits higher because the kernel's own float32 arithmetic rounds at that same u"
              if big else "")
           + ". The second column adds the rounding of the input itself: "
           + ", ".join(f"{r[k2] / r[k1]:.1f}×" for r in dtype_rows) + " the first.")
    d.section("LayerNorm: eps on near-constant rows (float32)")
    d.table(eps_rows, floatfmt=".3g")
    match = max(abs(r["output std"] - r["predicted std / sqrt(std^2 + eps)"]) for r in eps_rows
                if not np.isnan(r["output std"]) and not np.isnan(r["predicted std / sqrt(std^2 + eps)"]))
    nan_rows = [r for r in eps_rows if r["NaN count"]]
    damped = [r for r in eps_rows if r["row std"] > 0 and r["eps"] > 0 and r["output std"] < 0.5]
    d.text(f"What to look at: the measured output std matches the formula std / sqrt(std² + eps) to {match:.1e} in "
           "every finite row. "
           + (f"A constant row with eps = 0 is 0/0: all {nan_rows[0]['NaN count']} outputs are NaN. " if nan_rows
              else "No row gave NaN. ")
           + (f"When std² is not much larger than eps, eps damps the row instead of blowing it up to std 1 (e.g. std "
              f"{damped[0]['row std']:.1e} with eps {damped[0]['eps']:g} comes out with std "
              f"{damped[0]['output std']:.3g}): eps is a noise floor." if damped else ""))
    return {"val_loss_rel_std": rel_std, "identical": "yes" if identical else "no", "max_loss_delta": loss_d,
            "final_val_loss_mean": m, "tokens_per_s_mean": tm, "thread_count_delta": thread_d}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
