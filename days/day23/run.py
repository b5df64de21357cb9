"""Day 23: scaling laws — small runs across model sizes and token budgets, a fitted L(N, D), and a budget.

Every (size, budget) pair is its own run whose warm-up + cosine schedule ends at its budget (as in
Chinchilla: a long cosine stopped early is not the same as a short one run to its end), scored on the
same fixed prefix of the validation split. N counts non-embedding parameters (no token or position
table), D the tokens seen. The run fits Chinchilla's L(N, D) = E + A/N^alpha + B/D^beta by a Huber loss
on log L (batched Adam from a grid of starts, then L-BFGS), reports its error on the fitted points and
leave-one-out, derives the compute-optimal split of C = 6ND, and budgets day 24's 27M and 42M shapes:
tokens, FLOPs, hours on this machine from a measured throughput, hours on one GPU from a stated assumption.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch

from common import data
from common.data import corpus
from common.lab import bench
from common.lab.scaling import compute_optimal, fit_law, leave_one_out, optimal_tokens, predict
from common.nn.model import GPT, SHAPES, GPTConfig, count_params_formula, flops_per_token, non_embedding_params
from common.run import plotting, runner
from common.train import autocast, full_split_loss, train_config_for

DAY = 23
# How `make reproduce` compares each metric: everything not listed is exact (deterministic).
# Timings, and choices made by a clock, move with the machine's load: reported as ratios only.
METRIC_KINDS = {
    "grid_s": "timing",
    "grid_gflops_per_s_max": "timing",
    "*_cpu_flops_per_s": "timing",
    "budget_*_cpu_hours": "timing",
}
# the metrics the README and sprint summaries show
KEY_METRICS = ["alpha", "beta", "fit_max_rel_err", "loo_max_rel_err", "budget_27m_cpu_hours"]


@dataclass
class Config:
    vocab: int = 2048                  # small BPE vocabulary, so the token table is a minor share of tiny models
    sizes: str = "2x32,2x64,3x96,4x128"  # n_layer x n_embd per model (heads of `head_size` dims)
    steps: str = "400,800,1600"        # token budgets in optimizer steps; each (size, budget) is its own cosine
    batch_size: int = 4                # small batches: more steps per token, so tiny models leave the plateau sooner
    block_size: int = 64               # tokens per step = batch_size * block_size
    head_size: int = 32
    lr: float = 3e-3                   # one peak for all sizes: a 400-step probe put 2x32's and 4x128's best near it
    val_tokens: int = 32768            # the fixed validation prefix every run is scored on
    corpus_bytes: int = 0              # 0 = whole corpus; quick runs take a slice of each source
    huber_delta: float = 1e-3          # Chinchilla's delta on log-loss residuals: near-L1, robust to an odd run
    fit_steps: int = 800               # batched Adam steps over the grid of starts, before L-BFGS
    budgets: str = "pretrain_27m,pretrain_42m"  # day 24 shapes to budget
    bench_batch: int = 2               # timing those shapes: forward + backward at this batch ...
    bench_seq: int = 256               # ... and context, on this machine
    bench_repeats: int = 3
    gpu_peak_tflops: float = 989.0     # ASSUMED, not measured: H100 SXM dense bf16 peak (datasheet)
    gpu_mfu: float = 0.4               # ASSUMED: the fraction of that peak a good training loop sustains


PRESETS = {"nano": dict(vocab=320, sizes="1x16,1x32,2x32", steps="6,12,24", batch_size=4, block_size=32,
                        val_tokens=2048, corpus_bytes=80_000, fit_steps=150, bench_batch=1, bench_seq=16,
                        bench_repeats=1),
           "cpu": {},
           "gpu": dict(sizes="4x128,4x256,6x384,8x512", steps="250,500,1000", batch_size=32, block_size=256, lr=1e-3,
                       val_tokens=262144, bench_batch=16, bench_seq=512, bench_repeats=5)}


def parse_sizes(spec: str) -> list[tuple[int, int]]:
    """"2x32,4x128" -> [(2, 32), (4, 128)] as (n_layer, n_embd)."""
    return [tuple(int(v) for v in s.split("x")) for s in spec.split(",")]


def measure_shape(c: GPTConfig, batch: int, seq: int, repeats: int, device) -> float:
    """Training FLOP/s of shape `c` here: forward + backward at (batch, seq), FLOPs from `flops_per_token`."""
    torch.manual_seed(0)
    model = GPT(c).to(device)
    x = torch.randint(0, c.vocab_size, (batch, seq), device=device)
    dtype = "bfloat16" if device.type == "cuda" else "float32"

    def step():
        model.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            _, loss = model(x, x)
        loss.backward()

    t = bench.time_fn(step, warmup=1, repeats=repeats, device=device)
    return batch * seq * flops_per_token(c, seq) / t.median


def train_grid(cfg: Config, ctx: runner.Context, td) -> list[dict]:
    """One run per (size, budget), each with its own warm-up + cosine ending at its budget; scored on `val_tokens`."""
    dev, val, per_step = ctx.device, td.val_tensor()[: cfg.val_tokens + 1], cfg.batch_size * cfg.block_size
    runs = []
    for (n_layer, n_embd), steps in itertools.product(parse_sizes(cfg.sizes), (int(s) for s in cfg.steps.split(","))):
        c = GPTConfig(vocab_size=td.vocab_size, block_size=cfg.block_size, n_layer=n_layer, n_embd=n_embd,
                      n_head=max(1, n_embd // cfg.head_size))
        torch.manual_seed(ctx.seed)
        model = GPT(c).to(dev)
        tc = train_config_for(cfg, max_iters=steps, warmup_iters=max(1, steps // 10), eval_interval=0, eval_iters=1,
                              log_interval=max(1, steps // 10))
        loaders = [data.StreamingLoader(s, cfg.block_size, cfg.batch_size, seed=ctx.seed, device=dev)
                   for s in (td.train, td.val)]  # same seed: a longer budget reads a superset of a shorter one
        res = ctx.train(model, *loaders, tc, run=f"{n_layer}x{n_embd}_{steps}steps")
        loss = full_split_loss(model, val, cfg.block_size, 64, dev)
        ctx.tracker.log(f"val_loss/{n_layer}x{n_embd}", loss, steps * per_step)
        fpt = flops_per_token(c)
        runs.append({"model": f"{n_layer}x{n_embd}", "N": non_embedding_params(c), "N total": count_params_formula(c),
                     "D": steps * per_step, "steps": steps, "val loss": loss, "FLOPs/token": fpt,
                     "counted / 6N": fpt / (6 * non_embedding_params(c)), "tok/s": res.tokens_per_s,
                     "GFLOP/s": res.tokens_per_s * fpt / 1e9})
    return runs


def measure(cfg: Config, ctx: runner.Context) -> dict:
    """Train the grid, fit L(N, D) with its leave-one-out refits, and budget day 24's shapes; returns the results."""
    td = corpus.token_data(cfg.vocab, cache=ctx.cache_dir("tokens"), corpus_bytes=cfg.corpus_bytes)
    t0 = time.perf_counter()
    runs = train_grid(cfg, ctx, td)
    grid_s = time.perf_counter() - t0
    N, D, L = (np.array([r[k] for r in runs], dtype=float) for k in ("N", "D", "val loss"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fit's tensors are tiny: a second thread only adds overhead
    t0 = time.perf_counter()
    fit = fit_law(N, D, L, cfg.huber_delta, cfg.fit_steps)
    loo, loo_fits = leave_one_out(N, D, L, delta=cfg.huber_delta, steps=cfg.fit_steps)
    fit_s = time.perf_counter() - t0
    torch.set_num_threads(threads)
    pred = predict(fit, N, D)
    for r, p, q in zip(runs, pred, loo):
        r["fit"], r["LOO pred"] = float(p), float(q)
    err = {"fit_rmse": np.sqrt(np.mean((pred - L) ** 2)), "fit_max_rel_err": np.max(np.abs(pred / L - 1)),
           "loo_rmse": np.sqrt(np.mean((loo - L) ** 2)), "loo_max_rel_err": np.max(np.abs(loo / L - 1))}
    spread = {k: (min(f[k] for f in loo_fits), max(f[k] for f in loo_fits)) for k in ("E", "A", "alpha", "B", "beta")}
    rows, rates = measure_budgets(cfg, ctx, fit, td.val_bytes_per_token)
    return {"vocab_size": td.vocab_size, "val_bytes_per_token": td.val_bytes_per_token,
            "train_tokens": td.train_tokens, "runs": runs, "grid_s": grid_s, "N": N, "D": D, "L": L, "fit": fit,
            "fit_s": fit_s, "err": err, "spread": spread, "budget_rows": rows, "rates": rates}


def measure_budgets(cfg: Config, ctx: runner.Context, fit: dict, val_bytes_per_token: float) -> tuple[list, dict]:
    """Each budgeted shape: its FLOP/s measured here, then tokens, FLOPs, hours and the fit's loss for both token
    rules (20 × params, the fit's optimum); returns the table rows and the measured rate per shape."""
    dev = ctx.device
    gpu_rate, rows, rates = cfg.gpu_peak_tflops * 1e12 * cfg.gpu_mfu, [], {}
    for name in cfg.budgets.split(","):
        c = SHAPES[name]
        n_tot, n_ne, fpt = count_params_formula(c), non_embedding_params(c), flops_per_token(c)
        rates[name] = rate = measure_shape(c, cfg.bench_batch, cfg.bench_seq, cfg.bench_repeats, dev)
        for rule, tokens in (("20 × params", 20 * n_tot), ("fit's optimum", optimal_tokens(fit, n_ne))):
            loss = float(predict(fit, n_ne, tokens))
            rows.append({"shape": name, "params": n_tot, "N (non-emb)": n_ne, "tokens rule": rule, "tokens": tokens,
                         "6ND": 6 * n_tot * tokens, "FLOPs counted": fpt * tokens,
                         f"{dev.type} GFLOP/s (measured)": rate / 1e9, f"{dev.type} hours": fpt * tokens / rate / 3600,
                         "GPU hours (ASSUMED)": fpt * tokens / gpu_rate / 3600, "fit's loss (extrapolated)": loss,
                         "bits/byte": corpus.bits_per_byte(loss, val_bytes_per_token)})
    return rows, rates


def report(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    """Write the deliverable (grid, fit, plots, budget, conclusions) from `measure`'s results; returns the metrics."""
    d, runs, D, L, fit, spread = ctx.deliverable, res["runs"], res["D"], res["L"], res["fit"], res["spread"]
    d.section("The grid")
    d.text(f"SentencePiece BPE, {res['vocab_size']} tokens ({res['val_bytes_per_token']:.2f} bytes/token on val); "
           f"the largest budget reads {D.max() / res['train_tokens']:.2f} epochs of the {res['train_tokens']:,} train "
           f"tokens. {cfg.batch_size} × {cfg.block_size} tokens per step; AdamW, peak lr {cfg.lr:g}, 10% warm-up, "
           f"cosine to lr/10 at each run's own budget; {res['grid_s']:.0f} s for all {len(runs)} runs. Scored on the "
           f"first {cfg.val_tokens:,} validation tokens, the same for every run. **N = non-embedding parameters** (the "
           "tied token table and the position table excluded), **D = tokens seen**. *FLOPs/token* is "
           "`flops_per_token` (every matmul, the output layer's V·C included, and attention at T = "
           f"{cfg.block_size}, × 3 for training); *counted / 6N* is how far the 6N rule is off; GFLOP/s = measured "
           "tokens/s × FLOPs/token. *fit*: the law below; *LOO pred*: the same fit without that run.")
    d.table(runs)
    d.text(grid_summary(runs))
    expo = report_fit(res, cfg, ctx)
    metrics = report_budget(res, cfg, ctx)
    report_conclusions(res, ctx)
    out = {**{k: fit[k] for k in spread}, **res["err"], "n_opt_exponent": expo, "best_val_loss": L.min(),
           "grid_s": res["grid_s"], "grid_gflops_per_s_max": max(r["GFLOP/s"] for r in runs), **metrics}
    return {"n_runs": len(runs), **{k: float(f"{v:.4g}") for k, v in out.items()}}


def grid_summary(runs: list[dict]) -> str:
    """'What to look at' for the grid table, from its numbers: loss against D, the best size per budget, the 6N
    error and the throughput of tiny models."""
    sizes = list(dict.fromkeys(r["model"] for r in runs))
    budgets = sorted({r["steps"] for r in runs})
    falls = [m for m in sizes if all(a["val loss"] > b["val loss"] for a, b in
                                     zip(*[[r for r in runs if r["model"] == m][i:] for i in (0, 1)]))]
    best = {s: min((r for r in runs if r["steps"] == s), key=lambda r: r["val loss"])["model"] for s in budgets}
    same_best = len(set(best.values())) == 1
    first, last = runs[0], runs[-1]
    return ("What to look at: "
            + ("every size's loss falls as it sees more tokens" if len(falls) == len(sizes) else
               f"the loss falls with more tokens for {', '.join(falls) or 'no size'}, not for all")
            + "; " + (f"{best[budgets[0]]} is the best size at every budget." if same_best else
                      "the best size changes with the budget: " + ", ".join(f"{best[s]} at {s} steps" for s in budgets)
                      + " (small grids are noisy; the fit below smooths over single runs).")
            + f" *counted / 6N* falls from {first['counted / 6N']:.2f} ({first['model']}) to "
            f"{last['counted / 6N']:.2f} ({last['model']}): the output layer that 6N ignores matters less as the "
            f"blocks grow. Bigger models process {'fewer' if last['tok/s'] < first['tok/s'] else 'more'} tokens/s "
            f"{'but' if (last['tok/s'] < first['tok/s']) == (last['GFLOP/s'] > first['GFLOP/s']) else 'and'} "
            f"{'more' if last['GFLOP/s'] > first['GFLOP/s'] else 'fewer'} GFLOP/s "
            f"({first['GFLOP/s']:.3g} → {last['GFLOP/s']:.3g})"
            + (": tiny matrix products waste the CPU on overhead." if last["GFLOP/s"] > first["GFLOP/s"] else "."))


def closest_compute_pair(runs: list[dict]) -> tuple[dict, dict]:
    """Two runs of different sizes whose compute 6ND is closest (by ratio); the smaller model first."""
    pairs = [(a, b) for a, b in itertools.combinations(runs, 2) if a["model"] != b["model"]]
    a, b = min(pairs, key=lambda p: abs(np.log(p[0]["N"] * p[0]["D"] / (p[1]["N"] * p[1]["D"]))))
    return (a, b) if a["N"] < b["N"] else (b, a)


def report_fit(res: dict, cfg: Config, ctx: runner.Context) -> float:
    """The fit's section: its constants with their leave-one-out spread, its errors, the compute-optimal split and
    the two plots; returns the exponent of N_opt in C."""
    d, N, D, fit, err = ctx.deliverable, res["N"], res["D"], res["fit"], res["err"]
    d.section("The fit: L(N, D) = E + A / N^α + B / D^β")
    d.table([{"parameter": k, "fit": fit[k], "LOO min": lo, "LOO max": hi} for k, (lo, hi) in res["spread"].items()])
    expo = fit["beta"] / (fit["alpha"] + fit["beta"])
    n_big, d_big = compute_optimal(fit, 6 * N.max() * D.max())
    d.text(f"Huber loss (δ = {cfg.huber_delta:g}) on log L, Adam from a grid of starts, the best polished by L-BFGS "
           f"({res['fit_s']:.1f} s with the {len(res['runs'])} leave-one-out refits). Fitted runs: RMSE "
           f"{err['fit_rmse']:.4f} nats, max relative error {err['fit_max_rel_err']:.2%}. Leave-one-out: RMSE "
           f"{err['loo_rmse']:.4f} nats, max relative error {err['loo_max_rel_err']:.2%}. Compute-optimal at C = 6ND: "
           f"N_opt ∝ C^{expo:.3f}, D_opt ∝ C^{1 - expo:.3f} (Chinchilla: both ≈ 0.5); at the largest run's compute "
           f"the optimum is {n_big:,.0f} parameters on {d_big:,.0f} tokens ({d_big / n_big:.3g} tokens per "
           "parameter).")
    widest = max(res["spread"], key=lambda k: res["spread"][k][1] / res["spread"][k][0]
                 if res["spread"][k][0] > 0 else np.inf)
    lo, hi = res["spread"][widest]
    d.text(f"What to look at: *fit* is the law used from here on; *LOO min/max* are the extremes over the "
           f"{len(res['runs'])} refits that each leave one run out, a cheap error bar. Here α = {fit['alpha']:.3g} "
           f"{'>' if fit['alpha'] > fit['beta'] else '≤'} β = {fit['beta']:.3g} (Chinchilla: 0.34 and 0.28), so the "
           f"model term shrinks {'faster' if fit['alpha'] > fit['beta'] else 'no faster'} with N than the data term "
           f"with D, and the optimum leans {'towards more tokens' if expo < 0.5 else 'towards a bigger model'}. "
           f"{widest} is the loosest constant: {lo:.3g} to {hi:.3g} across the refits.")
    by_size: dict[str, list] = {}
    for r in res["runs"]:
        by_size.setdefault(r["model"], []).append(r)
    pts = {m: ([r["D"] for r in rs], [r["val loss"] for r in rs]) for m, rs in by_size.items()}
    dd = np.geomspace(D.min() / 2, D.max() * 4, 40)
    d.image(plotting.loglog(ctx.plot_path("loss_vs_tokens"), pts, {m: (dd, predict(fit, rs[0]["N"], dd))
                   for m, rs in by_size.items()}, "tokens seen D", "Final val loss per model size, with the fit"),
            "Loss against tokens, one colour per size; lines: the fitted L(N, D)")
    worst = max(res["runs"], key=lambda r: abs(r["fit"] / r["val loss"] - 1))
    terms = {m: fit["A"] / rs[0]["N"] ** fit["alpha"] for m, rs in by_size.items()}
    (m1, t1), (m2, t2) = list(terms.items())[-2:]
    d.text(f"What to look at: dots are measured, lines the fit for the same size. The fit misses most at "
           f"{worst['model']} after {worst['steps']} steps (measured {worst['val loss']:.3f}, fit {worst['fit']:.3f})"
           + (", a short run still on the early plateau above the power law." if worst["steps"] == min(
               r["steps"] for r in res["runs"]) and worst["val loss"] > worst["fit"] else ".")
           + (f" The {m1} and {m2} lines nearly coincide: the fit's model term A/N^α is only {t1:.3f} and {t2:.3f} "
              "nats for them, so at these budgets the extra parameters buy almost nothing." if abs(t1 - t2) < 0.05
              else f" The lines stay apart: the model term A/N^α is still {t1:.3f} nats for {m1} and {t2:.3f} for "
              f"{m2}."))
    cc = np.geomspace((6 * N * D).min() / 4, (6 * N * D).max() * 16, 40)
    pts = {m: ([6 * r["N"] * r["D"] for r in rs], [r["val loss"] for r in rs]) for m, rs in by_size.items()}
    curves = {m: (6 * rs[0]["N"] * dd, predict(fit, rs[0]["N"], dd)) for m, rs in by_size.items()}
    curves["the fit's compute-optimal frontier"] = (cc, predict(fit, *compute_optimal(fit, cc)))
    d.image(plotting.loglog(ctx.plot_path("loss_vs_compute"), pts, curves, "C = 6ND (FLOPs, N non-embedding)",
                   "Loss against compute"), "Every run at its compute, with its size's fitted curve; dashed: the "
            "fit's lowest loss at each compute (its envelope)")
    a, b = closest_compute_pair(res["runs"])
    win = a if a["val loss"] < b["val loss"] else b
    d.text(f"What to look at: at equal compute (one vertical line) the lowest dot wins. The closest measured pair: "
           f"{a['model']} × {a['steps']} steps ({6 * a['N'] * a['D']:.2g} FLOPs, loss {a['val loss']:.3f}) against "
           f"{b['model']} × {b['steps']} steps ({6 * b['N'] * b['D']:.2g} FLOPs, loss {b['val loss']:.3f}): the "
           f"{'smaller model on more tokens' if win is a else 'bigger model on fewer tokens'} wins. At the grid's "
           f"largest compute the dashed frontier sits at N ≈ {n_big:,.0f}, "
           f"{'below' if n_big < N.max() else 'above'} the biggest model tried ({int(N.max()):,}).")
    return expo


def report_budget(res: dict, cfg: Config, ctx: runner.Context) -> dict:
    """The budget section: how its hours were found, and the table; returns the budget metrics."""
    d, dev, rows, metrics, N, D = ctx.deliverable, ctx.device, res["budget_rows"], {}, res["N"], res["D"]
    gpu_rate = cfg.gpu_peak_tflops * 1e12 * cfg.gpu_mfu
    d.section("Budget for a 20–50M model")
    for i, name in enumerate(cfg.budgets.split(",")):
        r, r_fit, k = rows[2 * i], rows[2 * i + 1], name.replace("pretrain_", "")
        metrics.update({f"budget_{k}_params": r["params"], f"budget_{k}_tokens": r["tokens"],
                        f"budget_{k}_flops": r["6ND"], f"budget_{k}_tokens_fit": r_fit["tokens"],
                        f"{k}_{dev.type}_flops_per_s": res["rates"][name],
                        f"budget_{k}_{dev.type}_hours": r[f"{dev.type} hours"], f"budget_{k}_pred_bpb": r["bits/byte"],
                        f"budget_{k}_gpu_hours_assumed": r["GPU hours (ASSUMED)"]})
    d.text(f"Shapes from `common.nn.model.SHAPES`. **{dev.type} hours are measured**: forward + backward of that very "
           f"shape at {cfg.bench_batch} × {cfg.bench_seq} tokens, timed here; hours = counted FLOPs / that FLOP/s "
           f"(the optimizer step, small at real batch sizes, left out). **The GPU hours are an ASSUMPTION, not a "
           f"measurement**: one H100 at {cfg.gpu_peak_tflops:g} TFLOP/s dense bf16 peak × {cfg.gpu_mfu:.0%} MFU = "
           f"{gpu_rate / 1e12:.0f} TFLOP/s. The loss extrapolates the fit far past its runs (N ≤ {int(N.max()):,}, "
           f"D ≤ {int(D.max()):,}) in nats per {res['vocab_size']}-vocabulary token; bits/byte compares across "
           "tokenizers, but the real shapes' 16k/32k vocabularies were never seen by the fit.")
    d.table(rows)
    r, r_fit, key = rows[0], rows[1], "fit's loss (extrapolated)"
    more, gain = r_fit["tokens"] / r["tokens"], r[key] - r_fit[key]
    d.text(f"What to look at: each shape has two rows that differ only in the token budget. For {r['shape']}, 20 × "
           f"params means {r['tokens']:.3g} tokens and {r[f'{dev.type} hours']:.3g} {dev.type} hours; "
           + (f"the fit's optimum asks {max(more, 1 / more):.3g}× {'more' if more >= 1 else 'fewer'} tokens for a "
              f"predicted loss {abs(gain):.3f} nats {'lower' if gain >= 0 else 'higher'}"
              + (", an extrapolation far past the grid, not a plan. " if more > 100 else ". ") if np.isfinite(more)
              else "the fit gives no finite optimum. ")
           + f"The {dev.type} and GPU hours are the same FLOPs divided by two rates, so they differ by the rate "
           f"ratio, {gpu_rate / res['rates'][r['shape']]:,.0f}× here; bits/byte = loss / ln 2 / "
           f"{res['val_bytes_per_token']:.2f} bytes per token.")
    return metrics


def report_conclusions(res: dict, ctx: runner.Context) -> None:
    """The conclusions section: fit quality, loose constants, model vs data term, and the budget in brief."""
    runs, N, D, fit, err, rows = res["runs"], res["N"], res["D"], res["fit"], res["err"], res["budget_rows"]
    dev = ctx.device
    big = int(np.argmax(N * D))
    model_term, data_term = fit["A"] / N[big] ** fit["alpha"], fit["B"] / D[big] ** fit["beta"]
    loose = [k for k, (lo, hi) in res["spread"].items() if hi > 1.5 * lo]
    r0 = rows[0]
    tpp = rows[1]["tokens"] / r0["params"]  # the fit's tokens per parameter for the first shape
    lines = [f"The law fits the {len(runs)} runs to within {err['fit_max_rel_err']:.1%}; predicting each run from the "
             f"others, the worst error is {err['loo_max_rel_err']:.1%}"
             + (", several times the in-sample error." if err["loo_max_rel_err"] > 2 * err["fit_max_rel_err"] else "."),
             (f"The leave-one-out refits move {', '.join(loose)} by more than 1.5×: the grid does not pin "
              f"{'them' if len(loose) > 1 else 'it'} down, so read the trends, not the constants."
              if loose else "Every constant stays within 1.5× across the leave-one-out refits."),
             f"At the largest run ({runs[big]['model']}, {int(D[big]):,} tokens) the model term A/N^α is "
             f"{model_term:.3f} nats and the data term B/D^β {data_term:.3f}: "
             f"{'more tokens' if data_term > model_term else 'more parameters'} would help it more.",
             f"For {r0['shape']} the fit's compute-optimal budget is {tpp:.3g} tokens per parameter, against "
             "Chinchilla's 20" + ("." if 1 <= tpp <= 1e4 else ": not a usable number; the fitted exponents are off."),
             f"6N undercounts training FLOPs by {runs[0]['counted / 6N']:.1f}× for {runs[0]['model']} (the output "
             f"layer outweighs the blocks) and by {r0['FLOPs counted'] / (6 * r0['N (non-emb)'] * r0['tokens']):.2f}× "
             f"for {r0['shape']} ({r0['FLOPs counted'] / r0['6ND']:.2f}× with every parameter counted in N).",
             f"{r0['shape']} on 20 tokens/param ({r0['tokens'] / 1e6:.0f}M tokens, {r0['FLOPs counted']:.2g} FLOPs) "
             f"takes {r0[f'{dev.type} hours']:.3g} h on this {dev.type} (measured rate) and "
             f"{r0['GPU hours (ASSUMED)']:.3g} h on one H100 (assumed rate)."]
    ctx.deliverable.section("Conclusions")
    ctx.deliverable.text("\n".join(f"- {x}" for x in lines))


def main(cfg: Config, ctx: runner.Context) -> dict:
    """Measure, then narrate: run the grid, fit and budgets, then write the deliverable from their results."""
    return report(measure(cfg, ctx), cfg, ctx)


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
