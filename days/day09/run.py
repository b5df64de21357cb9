"""Day 9: positional encodings — RoPE vs ALiBi vs learned vs none, trained short, evaluated long.

Two probes, each trained once per `pos` variant (the GPTConfig field) at `train_len` tokens:
  * copy task (common/data/synthetic.py): n_copy random symbols, a separator, then the same symbols;
    the example sits at a random offset of the training window, so "copy from n_copy + 1 back"
    must work at every position. Evaluated with the example at the end of windows of 1x, 2x, 4x
    train_len: the same task at absolute positions never seen in training.
  * next-character loss on Tiny Shakespeare, evaluated on val windows of 1x, 2x, 4x train_len.
A learned position table stops at block_size, so it has no score past 1x. The seed's lengths
(512, 1k) are too slow for a 2-core CPU: the run times training steps at those lengths and states
the budget that made it scale down.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from common import data
from common.lab import bench
from common.lab.positions import copy_accuracy_at, fit, make_model, train_copy
from common.nn.model import GPT, gpt_config
from common.run import plotting, runner
from common.train import evaluate

DAY = 9
NA = "n/a: learned table ends at block_size"


@dataclass
class Config:
    variants: str = "rope,alibi,learned,none"
    tasks: str = "copy,lm"           # copy task and/or Tiny Shakespeare next-char loss
    train_len: int = 64              # training context (block_size); the seed asks 512 / 1k (see budget)
    eval_mults: str = "1,2,4"        # evaluation lengths, as multiples of train_len
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    batch_size: int = 32
    copy_steps: int = 600
    lm_steps: int = 600
    lr: float = 3e-3
    copy_vocab: int = 32             # 30 symbols + separator + filler
    n_copy: int = 16                 # symbols to copy (the example spans 2 * n_copy tokens)
    eval_batches: int = 4            # fixed evaluation batches per length
    seed_lens: str = "512,1024"      # lengths the seed asks for: timed to justify scaling down
    budget_s: float = 300.0          # the day's CPU budget for all trainings


PRESETS = {
    "nano": dict(train_len=16, n_layer=1, n_head=2, n_embd=32, batch_size=8, copy_steps=30, lm_steps=30,
                 n_copy=4, copy_vocab=10, eval_mults="1,2", eval_batches=1, seed_lens="32"),
    "cpu": {},
    "gpu": dict(train_len=512, n_layer=4, n_head=8, n_embd=256, batch_size=32, copy_steps=3000, lm_steps=3000,
                lr=1e-3, n_copy=64, copy_vocab=66, seed_lens="512,1024", budget_s=1800.0),
}


def copy_probe(cfg, ctx, pos, lengths):
    """Train on the copy task; token accuracy with the example at the end of each eval length."""
    model, res = train_copy(cfg, ctx, pos, cfg.copy_steps)
    out = {L: None if pos == "learned" and L > cfg.train_len else  # (token acc, sequence acc)
           copy_accuracy_at(model, L, cfg.n_copy, cfg.copy_vocab, cfg.eval_batches, device=ctx.device)
           for L in lengths}
    return out, res


def lm_probe(cfg, ctx, pos, lengths, corpus):
    """Train next-char on Tiny Shakespeare; mean val loss over fixed windows of each eval length."""
    tok, train_ids, val_ids = corpus
    model = make_model(cfg, pos, tok.vocab_size, ctx.seed)
    tb = data.Batches(train_ids, cfg.train_len, cfg.batch_size, ctx.device)
    vb = data.Batches(val_ids, cfg.train_len, cfg.batch_size, ctx.device, seed=1)
    res = fit(cfg, ctx, model, tb, vb, cfg.lm_steps, f"lm/{pos}")
    out = {}
    for L in lengths:
        if pos == "learned" and L > cfg.train_len:
            out[L] = None
            continue
        batches = data.Batches(val_ids, L, max(1, cfg.batch_size * cfg.train_len // L), ctx.device, seed=2)
        out[L] = evaluate(model, {"val": batches.fixed(cfg.eval_batches)}, ctx.device)["val"]
    return out, res


def step_time(cfg, ctx, L):
    """Seconds per training step (batch_size x L tokens, RoPE model) on random tokens: median of 3."""
    mc = gpt_config("nano", vocab_size=65, block_size=L, n_layer=cfg.n_layer, n_head=cfg.n_head,
                    n_embd=cfg.n_embd, pos="rope")
    model = GPT(mc).to(ctx.device)
    opt = model.configure_optimizer(0.1, cfg.lr, device_type=ctx.device.type)
    x = torch.randint(65, (cfg.batch_size, L), device=ctx.device)

    def step():
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return bench.time_fn(step, warmup=1, repeats=3, device=ctx.device).median


def budget_section(cfg, ctx, n_trainings, steps):
    lens = sorted({cfg.train_len, *(int(s) for s in cfg.seed_lens.split(","))})
    rows = []
    for L in lens:
        t = step_time(cfg, ctx, L)
        rows.append({"train length": L, "s / step (measured)": round(t, 4),
                     f"all {n_trainings} trainings (s, estimated)": round(t * steps, 1),
                     "× budget": round(t * steps / cfg.budget_s, 2)})
    d = ctx.deliverable
    d.section("Scaling down: the computed budget")
    d.table(rows)
    fits = [r["train length"] for r in rows if r["× budget"] <= 1]
    d.text(f"Same model ({cfg.n_layer} layers, {cfg.n_embd} wide, batch {cfg.batch_size}) and steps for every "
           f"length; budget {cfg.budget_s:.0f} s on {ctx.device}. Lengths that fit: "
           f"{', '.join(map(str, fits)) or 'none'}; this run trains at {cfg.train_len} and evaluates at "
           f"{cfg.eval_mults.replace(',', 'x, ')}x that length. Machine load (1-min average) while timing: "
           f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (above the core count, step times are inflated).")
    a, b = rows[0], rows[-1]
    if len(rows) > 1:
        t_ratio, l_ratio = b["s / step (measured)"] / a["s / step (measured)"], b["train length"] / a["train length"]
        d.text(f"What to look at: a step at {b['train length']} tokens takes {t_ratio:.1f}× as long as at "
               f"{a['train length']}, for a {l_ratio:.0f}× longer window: "
               + ("far more than proportional: attention's cost per token grows with the length, and load on the "
                  "machine inflates single timings." if t_ratio > 2 * l_ratio else
                  "more than proportional, because attention's cost per token grows with the length." if
                  t_ratio > 1.1 * l_ratio else "about proportional to the tokens per step." if t_ratio > 0.9 * l_ratio
                  else "less than proportional, because fixed per-step costs weigh at the short length.")
               + " The *× budget* column is that estimate over the day's budget: above 1 the trainings do not fit.")
    return rows


def main(cfg: Config, ctx: runner.Context) -> dict:
    variants, tasks = cfg.variants.split(","), cfg.tasks.split(",")
    lengths = [cfg.train_len * int(m) for m in cfg.eval_mults.split(",")]
    steps = len(variants) * (cfg.copy_steps * ("copy" in tasks) + cfg.lm_steps * ("lm" in tasks))
    budget_section(cfg, ctx, len(variants) * len(tasks), steps)
    corpus = data.char_corpus() if "lm" in tasks else None
    results = {t: {} for t in tasks}
    info = {t: {} for t in tasks}
    for pos in variants:
        for task in tasks:
            t0 = time.perf_counter()
            args = (cfg, ctx, pos, lengths)
            out, res = copy_probe(*args) if task == "copy" else lm_probe(*args, corpus)
            results[task][pos] = out
            info[task][pos] = (res.train_log["loss"][-1], time.perf_counter() - t0)
    d, metrics = ctx.deliverable, {}
    mults = [L // cfg.train_len for L in lengths]
    for task in tasks:
        copy = task == "copy"
        d.section("Copy task: token accuracy / whole-copy accuracy" if copy
                  else "Tiny Shakespeare: val loss (nats/char)")
        d.text(f"{cfg.n_copy} symbols from {cfg.copy_vocab - 2}, {cfg.copy_steps} steps; chance ≈ "
               f"{1 / (cfg.copy_vocab - 2):.3f}." if copy else f"{cfg.lm_steps} steps; mean loss over every position "
               "of each window, so longer windows also contain the in-range first positions.")
        rows = []
        for pos in variants:
            cells = {}
            for L, m in zip(lengths, mults):
                v = results[task][pos][L]
                cells[f"{m}x (L={L})"] = NA if v is None else (f"{v[0]:.3f} / {v[1]:.2f}" if copy else round(v, 4))
                if v is not None:
                    ctx.tracker.log(f"{task}/{pos}/eval", v[0] if copy else v, L)
            loss, secs = info[task][pos]
            rows.append({"pos": pos, **cells, "final train loss": round(loss, 4), "train time (s)": round(secs, 1)})
        d.table(rows)
        learned = [pos for pos in variants if info[task][pos][0] < 0.1]
        d.text(("What to look at: each cell is token accuracy / whole-copy accuracy (the share of examples with all "
                f"{cfg.n_copy} symbols right). The *final train loss* says which variants learned the task at all: "
                + (f"{', '.join(learned)} (below 0.1)" if learned else "no variant got below 0.1") + "."
                if copy else
                "What to look at: each cell is the mean val loss of a window of that length, lower is better; the "
                "1x column is the length the models trained at.")
               + (" 'n/a' for `learned`: its position table has only block_size rows, so longer inputs cannot even "
                  "run." if "learned" in variants and len(lengths) > 1 else ""))
        series = {pos: ([L for L in lengths if results[task][pos][L] is not None],
                        [(v[0] if copy else v) for v in results[task][pos].values() if v is not None])
                  for pos in variants}
        chance = 1 / (cfg.copy_vocab - 2)
        p = plotting.lines(ctx.plot_path("copy_accuracy_vs_length" if copy else "val_loss_vs_length"), series,
                           "evaluation length (tokens, log scale)",
                           "copy token accuracy" if copy else "val loss (nats/char)",
                           f"trained at {cfg.train_len} tokens", logx=True, markers=True,
                           hline=(chance, "chance") if copy else None, vline=(cfg.train_len, "training length"))
        d.image(p, ("Copy accuracy" if copy else "Val loss") + " vs evaluation length per position scheme "
                "(dotted: the training length)")
        far = {pos: series[pos][1] for pos in variants if len(series[pos][1]) > 1}
        d.text("What to look at: everything right of the dotted line is positions no model saw in training, and the "
               + ("lines should stay high there; " if copy else "lines should stay flat (or fall, as longer windows "
                  "give more context) there; ")
               + ", ".join(f"{pos} goes from {v[0]:.3f} to {v[-1]:.3f}" for pos, v in far.items())
               + (f" ({', '.join(p for p in variants if p not in far)}: one point only)."
                  if len(far) < len(variants) else ".")
               + (f" The dashed line is chance ({chance:.3f})." if copy else ""))
        metrics.update(observe(cfg, ctx, task, results[task], lengths, mults))
    return metrics


def observe(cfg, ctx, task, res, lengths, mults) -> dict:
    """Computed observations and key metrics for one task."""
    copy, L1, Lm, M = task == "copy", lengths[0], lengths[-1], mults[-1]
    score = {pos: {L: (v[0] if copy else v) for L, v in r.items() if v is not None} for pos, r in res.items()}
    pick = max if copy else min
    best1 = pick(score, key=lambda p: score[p][L1])
    longs = [p for p in score if Lm in score[p]]
    bestm = pick(longs, key=lambda p: score[p][Lm])
    name = "copy_acc" if copy else "val_loss"
    out = {f"{name}_{p}_{m}x": round(score[p][L], 4) for p in score for L, m in zip(lengths, mults) if L in score[p]
           if m in (1, M)}
    out[f"{task}_best_1x"], out[f"{task}_best_{M}x"] = best1, bestm
    if copy:
        solved = lambda L: [p for p in score if score[p].get(L, 0) >= 0.99]  # noqa: E731
        text = (f"Copy task: token accuracy ≥ 0.99 at 1x for {', '.join(solved(L1)) or 'no variant'}; "
                f"at {M}x for {', '.join(solved(Lm)) or 'no variant'}. Best at 1x: {best1}; best at {M}x: {bestm}.")
    else:
        drift = {p: score[p][Lm] / score[p][L1] - 1 for p in longs}
        text = (f"Tiny Shakespeare: lowest val loss at 1x: {best1} ({score[best1][L1]:.3f}); at {M}x: {bestm} "
                f"({score[bestm][Lm]:.3f}). Change from 1x to {M}x: "
                + ", ".join(f"{p} {100 * v:+.1f}%" for p, v in sorted(drift.items(), key=lambda kv: kv[1])) + ".")
    ctx.deliverable.text("**Observation.** " + text)
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
