"""Day 7: the tiny-GPT baseline on Tiny Shakespeare (characters), and the nanoGPT comparison.

A full run: the verification battery first (parameter formula, causality, dropout off in eval,
over-fitting one batch), then training with warm-up + cosine and AdamW, checkpointed, with the
loss curve, samples and the time it took to reach the target validation loss.

`--preset nanogpt` trains nanoGPT's CPU "baby" configuration exactly (same model, optimiser,
schedule, batch, 2000 iterations) and sets our numbers beside nanoGPT's, measured on this machine
(shared/REFERENCE.md): that is the benchmark for tokens/s and val loss.
"""

from __future__ import annotations

import math
import re
import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from common import data
from common.nn.generate import generate
from common.nn.model import GPT, count_params_formula, gpt_config, gpt_config_for
from common.run import plotting, runner
from common.run.errors import run_checked
from common.train import evaluate, full_split_loss, load_checkpoint, train, train_config_for

DAY = 7
# How `make reproduce` compares each metric: everything not listed is exact (deterministic).
# Timings, and choices made by a clock, move with the machine's load: reported as ratios only.
METRIC_KINDS = {
    "tokens_per_s": "timing",
    "ms_per_iter": "timing",
    "time_to_target_s": "timing",
    "other_dtype_speed_ratio": "timing",
}
# nanoGPT (commit 3adf61e) on this project's reference machine, torch 2.13.0 CPU, 2 threads, 2026-11-21;
# see shared/REFERENCE.md. Used only for comparison tables, never as our results.
NANOGPT = {"ms_per_iter": 39.3, "val": {250: 2.445, 500: 2.314, 1000: 2.053, 1500: 1.923, 2000: 1.886}}


@dataclass
class Config:
    # The default recipe: nanoGPT's baby depth and context at half the width (0.21M parameters),
    # trained on more tokens. On a 2-core CPU the run is compute-bound, so for a fixed time budget
    # a smaller model that sees ~2x the data reaches a lower loss (the compute-optimal trade-off of
    # scaling laws); `--preset nanogpt` is the 0.8M-parameter baby config, exactly.
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64
    dropout: float = 0.0
    batch_size: int = 32
    max_iters: int = 1000
    lr: float = 8e-3             # a small model tolerates (and needs) a high peak rate
    min_lr: float = 8e-4
    warmup_iters: int = 50
    lr_decay_iters: int = 0      # 0: decay over max_iters
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 100
    eval_iters: int = 10
    target_loss: float = 1.88    # the nanoGPT baby configuration's val loss
    overfit_steps: int = 300
    overfit_lr: float = 3e-3
    sample_chars: int = 400
    compile: bool = False
    dtype: str = "float32"
    dtype_check: bool = True     # train a twin in the other dtype (bfloat16 <-> float32) for the same steps
    nanogpt_dir: str = ""        # a nanoGPT checkout: with --preset nanogpt, run it too, back to back


PRESETS = {
    "nano": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=30, warmup_iters=5, lr=3e-3,
                 eval_interval=10, eval_iters=2, overfit_steps=100, overfit_lr=1e-2, sample_chars=40),
    "cpu": {},
    # nanoGPT config/train_shakespeare_char.py with the README's CPU changes, exactly
    "nanogpt": dict(n_embd=128, batch_size=12, max_iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100,
                    lr_decay_iters=2000, eval_interval=250, eval_iters=20),
    # the seed's 10.7M-parameter model (target val loss 1.47 +- 5%)
    "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, batch_size=64, max_iters=5000,
                lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=5000, eval_interval=250, eval_iters=200,
                target_loss=1.47, compile=True, dtype="bfloat16", dtype_check=False),
}


NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
                "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
                "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"]


def parse_nanogpt_log(text: str) -> dict:
    """Median ms/iter (iters >= 10, eval iterations excluded) and val loss per eval step from nanoGPT's stdout."""
    evals = {int(m[1]): float(m[2]) for m in re.finditer(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", text)}
    times = {int(m[1]): float(m[2]) for m in re.finditer(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", text)}
    steady = [t for i, t in times.items() if i >= 10 and i not in evals]
    return {"val": evals, "ms_per_iter": statistics.median(steady) if steady else float("nan")}


def run_nanogpt(path: str, max_iters: int) -> dict:
    """Run nanoGPT's own train.py (baby config) on our copy of the data; parse its log."""
    root = Path(path).expanduser().resolve()
    if not (root / "train.py").is_file():
        raise runner.UserError(f"nanogpt_dir={path!r} has no train.py; point it at a nanoGPT checkout.")
    prep = root / "data" / "shakespeare_char"
    if not (prep / "train.bin").is_file():
        shutil.copy(data.data_path("tinyshakespeare"), prep / "input.txt")  # prepare.py then skips the download
        run_checked([sys.executable, "prepare.py"], f"nanoGPT's {prep / 'prepare.py'}", cwd=prep)
    args = [a if not a.startswith("--max_iters") else f"--max_iters={max_iters}" for a in NANOGPT_ARGS]
    out = run_checked([sys.executable, "train.py", *args, "--out_dir=/tmp/nanogpt_day07"],
                      f"nanoGPT's {root / 'train.py'}", cwd=root).stdout
    return parse_nanogpt_log(out)


def battery(mcfg, tb, device, steps, lr) -> list[dict]:
    """The checks to pass before trusting any training curve."""
    # >>> exercise day07.battery: four checks in order: parameter count, causality, eval dropout, over-fit a batch
    torch.manual_seed(0)
    model = GPT(mcfg).to(device)
    rows = [{"check": "parameter count equals the closed form",
             "measured": f"{model.num_params():,} vs {count_params_formula(mcfg):,}",
             "pass": model.num_params() == count_params_formula(mcfg)}]
    x, y = (t[:4] for t in tb.fixed(1)[0])  # 4 windows: 256 characters to memorise
    model.eval()
    with torch.no_grad():
        base = model(x)[0]
        x2 = x.clone()
        x2[:, x.shape[1] // 2:] = (x2[:, x.shape[1] // 2:] + 1) % mcfg.vocab_size
        leak = (model(x2)[0][:, : x.shape[1] // 2] - base[:, : x.shape[1] // 2]).abs().max().item()
    rows.append({"check": "causal: changing the second half leaves the first half's logits", "measured":
                 f"max change {leak:.1e}", "pass": leak == 0.0})
    drop = GPT(gpt_config("baby", **{**mcfg.__dict__, "dropout": 0.5})).to(device).eval()
    with torch.no_grad():
        same = torch.equal(drop(x)[0], drop(x)[0])
    rows.append({"check": "dropout 0.5 is a no-op in eval mode", "measured": "two forwards identical" if same
                 else "forwards differ", "pass": same})
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    rows.append({"check": f"over-fit one batch in {steps} steps (target loss <= 0.1)",
                 "measured": f"loss {loss.item():.4f}", "pass": loss.item() <= 0.1})
    return rows
    # <<< exercise day07.battery


def other_dtype(cfg: Config, ctx: runner.Context, mcfg, tb, vb, res) -> dict:
    """The same run (seed, init, batches, schedule) in the other dtype: val loss at equal steps and speed."""
    d, dev = ctx.deliverable, ctx.device
    other = "bfloat16" if res.dtype == "float32" else "float32"
    torch.manual_seed(ctx.seed)
    twin = GPT(mcfg).to(dev)
    r2 = train(twin, tb, vb, train_config_for(cfg, dtype=other), dev, ctx.tracker.scoped(other),
               show_progress=not ctx.quick)
    ctx.record_throughput(f"twin in {other}", r2, twin, cfg.block_size)
    rel = (r2.final_val - res.final_val) / res.final_val
    speed = r2.tokens_per_s / res.tokens_per_s
    d.section(f"The same run in {other}")
    d.table([{"dtype": res.dtype, "val loss": res.final_val, "tokens/s": f"{res.tokens_per_s:,.0f}"},
             {"dtype": other, "val loss": r2.final_val, "tokens/s": f"{r2.tokens_per_s:,.0f}"}], floatfmt=".4f")
    d.text(f"Same seed, initial weights, batches and schedule, {len(r2.iter_times)} steps, autocast around the forward "
           f"pass; weights and AdamW state float32 in both. What to look at: {other}'s final val loss is "
           f"{abs(rel):.2%} {'above' if rel > 0 else 'below'} {res.dtype}'s "
           f"({'within' if abs(rel) <= 0.01 else 'OUTSIDE'} 1%), and it runs at {speed:.2f}× the tokens/s: "
           + ("faster." if speed > 1 else f"slower, as expected for a model only {mcfg.n_embd} wide, where the casts "
              "around small matrices cost more than the faster multiply saves (day 2, part 2); `dtype=auto` keeps "
              "float32 here."))
    return {"other_dtype": other, "other_dtype_val_loss": round(r2.final_val, 4),
            "other_dtype_val_rel_diff": round(rel, 5), "other_dtype_speed_ratio": round(speed, 3)}


def main(cfg: Config, ctx: runner.Context) -> dict:
    dev, d = ctx.device, ctx.deliverable
    tok, train_ids, val_ids = data.char_corpus()
    mcfg = gpt_config_for(cfg, vocab_size=tok.vocab_size)
    tb, vb = data.split_batches(train_ids, val_ids, cfg.block_size, cfg.batch_size, dev)

    d.section("Verification battery")
    checks = battery(mcfg, tb, dev, cfg.overfit_steps, cfg.overfit_lr)
    d.table(checks)
    overfit = float(checks[-1]["measured"].split()[-1])

    torch.manual_seed(ctx.seed)
    model = GPT(mcfg).to(dev)
    tc = train_config_for(cfg)
    # step 0, before any update, on the same fixed batches as every later evaluation (private generators:
    # the training RNG is untouched, so the run below is the same as without this line)
    init = evaluate(model, {"train": tb.fixed(cfg.eval_iters), "val": vb.fixed(cfg.eval_iters)}, dev, cfg.dtype)
    ckpt = ctx.out / "checkpoints" / "day07_ckpt.pt"
    res = train(model, tb, vb, tc, dev, ctx.tracker, ckpt_path=ckpt, show_progress=not ctx.quick)
    ctx.record_throughput("train", res, model, cfg.block_size)
    h = res.history
    reached = next(((s, t, v) for s, t, v in zip(h["step"], h["time"], h["val"]) if v <= cfg.target_loss), None)
    full_val = full_split_loss(model, val_ids, cfg.block_size, 64, dev, cfg.dtype)
    fresh = GPT(mcfg).to(dev)
    load_checkpoint(ckpt, fresh)
    reload_same = full_split_loss(fresh, val_ids, cfg.block_size, 64, dev, cfg.dtype) == full_val
    steady = sorted(res.iter_times[10:] or res.iter_times)
    ms_iter = 1000 * steady[len(steady) // 2]
    tokens_seen = res.tokens_per_iter * cfg.max_iters

    d.section("Training")
    d.text(f"{model.num_params():,} parameters ({model.num_params(non_embedding=True):,} without position "
           f"embeddings); {cfg.max_iters} steps of {cfg.batch_size} × {cfg.block_size} tokens = {tokens_seen:,} tokens "
           f"({tokens_seen / train_ids.numel():.2f} epochs of the {train_ids.numel():,}-token train split). AdamW "
           f"(β2 {cfg.beta2}, weight decay {cfg.weight_decay}), warm-up {cfg.warmup_iters} steps then cosine "
           f"{cfg.lr:g} → {cfg.min_lr:g}, gradient clip {cfg.grad_clip}.")
    d.table([{"step": s, "train loss": tr, "val loss": v, "wall-clock (s)": round(t, 1)}
             for s, tr, v, t in zip(h["step"], h["train"], h["val"], h["time"])])
    series = {"train (fixed batches)": ([0] + h["step"], [init["train"]] + h["train"]),
              "val (fixed batches)": ([0] + h["step"], [init["val"]] + h["val"])}
    if ctx.preset == "nanogpt":
        series["nanoGPT val (REFERENCE.md)"] = (list(NANOGPT["val"]), list(NANOGPT["val"].values()))
    p = plotting.lines(ctx.plot_path("loss_curve"), series, "step", "loss (nats per character)",
                       "Tiny Shakespeare, character level", markers=True, hline=(cfg.target_loss, "target"))
    d.image(p, "Train and validation loss from step 0; the dashed line is the target")
    d.text(f"What to look at: at step 0 the untrained model scores val {init['val']:.3f} nats, close to "
           f"ln {tok.vocab_size} = {math.log(tok.vocab_size):.3f}, the loss of a uniform guess over the characters "
           "(the small initial weights give near-uniform logits). "
           + (f"Most of the drop ({init['val'] - h['val'][0]:.2f} of {init['val'] - h['val'][-1]:.2f} nats) happens "
              f"in the first {h['step'][0]} steps" if init["val"] - h["val"][0] > h["val"][0] - h["val"][-1] else
              f"The loss keeps falling after step {h['step'][0]}")
           + "; the gap between the train and val curves is what over-fitting would widen.")
    d.text(f"Whole validation split ({val_ids.numel():,} characters, every window): loss **{full_val:.4f}**. "
           f"Median step {ms_iter:.1f} ms → **{res.tokens_per_iter / ms_iter * 1000:,.0f} tokens/s** (training only). "
           + (f"Validation loss first reached {cfg.target_loss} at step {reached[0]}, {reached[1]:.1f} s after "
              f"training started (evaluations included)." if reached else
              f"Validation loss did not reach {cfg.target_loss} (best {res.best_val:.4f})."))
    d.text(f"Checkpoint: `{ckpt.name}` ({ckpt.stat().st_size / 2**20:.1f} MiB, written atomically); reloaded into a "
           f"fresh model it gives {'the identical' if reload_same else 'a DIFFERENT'} validation loss.")

    ref, ref_src = NANOGPT, "shared/REFERENCE.md (measured on the reference machine, not in this run)"
    if cfg.nanogpt_dir and ctx.preset == "nanogpt":
        ref = {**NANOGPT, **run_nanogpt(cfg.nanogpt_dir, cfg.max_iters)}
        ref_src = f"nanoGPT's train.py from {cfg.nanogpt_dir}, run by this command right after ours"
    d.section("Compared with nanoGPT")
    d.text(f"nanoGPT numbers: {ref_src}.")
    rows = []
    if ctx.preset == "nanogpt":  # same model and batch: step times compare like for like
        rows.append({"quantity": "median time per iteration (ms)", "nanoGPT": round(ref["ms_per_iter"], 1),
                     "ours": round(ms_iter, 1), "ratio ours/nanoGPT": round(ms_iter / ref["ms_per_iter"], 2)})
    for s, ref_v in ref["val"].items():  # the same iteration budget: val loss after s steps of each
        ours = dict(zip(h["step"], h["val"])).get(s - 1 if s == cfg.max_iters else s)
        if ours is not None and s > 0:
            rows.append({"quantity": f"val loss at step {s}", "nanoGPT": ref_v, "ours": round(ours, 3),
                         "difference": round(ours - ref_v, 3)})
    d.table(rows)
    same_model = ctx.preset == "nanogpt"
    d.text(("Same model, batch and iterations as nanoGPT's baby config. " if same_model else
            f"Same iteration budget, not the same model: this preset is {model.num_params():,} parameters against "
            "the baby config's 0.8M, so only the loss after equal steps is compared, no timings (run "
            "`make bench-nanogpt` for the like-for-like timing). ")
           + "Timings from another run or machine are comparable only as rough ratios (this machine's timing noise "
           "is ±25%); pass `nanogpt_dir=/path/to/nanoGPT` with `--preset nanogpt` to time both in one command. "
           f"nanoGPT evaluates on 20 random batches, we on {cfg.eval_iters} fixed ones, so val losses differ by "
           "sampling noise (~0.01).")

    d.section("Samples")
    ctx_ids = torch.tensor([tok.encode("\n")], device=dev)
    out = generate(model, ctx_ids, cfg.sample_chars, temperature=0.8, top_k=40, use_cache=False,  # sliding window
                   generator=torch.Generator(device=dev).manual_seed(ctx.seed))
    d.text("Temperature 0.8, top-k 40, from a newline:\n\n```text\n" + tok.decode(out[0].tolist()) + "\n```")

    metrics = {"val_loss": round(res.final_val, 4), "val_loss_full": round(full_val, 4),
               "best_val_loss": round(res.best_val, 4), "train_loss": round(h["train"][-1], 4),
               "tokens_per_s": round(res.tokens_per_iter / ms_iter * 1000), "ms_per_iter": round(ms_iter, 2),
               "time_to_target_s": round(reached[1], 1) if reached else "not reached", "overfit_loss": overfit,
               "params": model.num_params(), "tokens_seen": tokens_seen,
               "checks_passed": sum(r["pass"] for r in checks)}
    if cfg.dtype_check:
        metrics.update(other_dtype(cfg, ctx, mcfg, tb, vb, res))
    if ctx.preset == "gpu":  # the seed's GPU targets, filled only by the GPU-size run
        metrics["val_loss_gpu"] = metrics["val_loss"]
        metrics["train_loss_gpu"] = metrics["train_loss"]
    return metrics


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
