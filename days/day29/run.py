"""Day 29: learning-rate schedules on one budget — cosine vs one-cycle vs warm-up–stable–decay.

The same model (day 7's default shape), data, seed, peak learning rate and number of steps; only
the schedule changes. The run records validation loss along the way, the slope of the loss over
the last fifth of training, and the final loss on the whole validation split, then picks the best
schedule by the rule stated in the deliverable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from common import data
from common.nn.model import GPT, gpt_config_for
from common.run import plotting, runner
from common.train import full_split_loss, lr_at, train_config_for

DAY = 29


@dataclass
class Config:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64
    batch_size: int = 32
    max_iters: int = 600
    lr: float = 8e-3
    eval_interval: int = 50
    eval_iters: int = 10
    tie_margin: float = 0.005     # final losses closer than this count as a tie


PRESETS = {"nano": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=40, eval_interval=10,
                        eval_iters=2),
           "cpu": {}, "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, max_iters=5000,
                                  lr=1e-3, eval_interval=250)}


def schedules(cfg: Config) -> dict[str, dict]:
    """The three schedules as TrainConfig overrides (same peak, same steps)."""
    # >>> exercise day29.schedules: cosine, one-cycle and WSD as TrainConfig overrides with the same peak and steps
    short = max(1, cfg.max_iters // 12)
    return {"cosine": dict(schedule="cosine", warmup_iters=short, min_lr=cfg.lr / 10),
            "one-cycle": dict(schedule="linear", warmup_iters=int(0.3 * cfg.max_iters), min_lr=cfg.lr / 100),
            "wsd": dict(schedule="wsd", warmup_iters=short, min_lr=cfg.lr / 10, decay_frac=0.2)}
    # <<< exercise day29.schedules


def pick_best(results: dict, tie_margin: float) -> str:
    """Lowest final val loss; within `tie_margin` of it, the one with the lower mean val over the last 3 evals."""
    # >>> exercise day29.pick_best: the lowest final loss wins; within tie_margin, the lower mean of the last 3 evals
    best = min(r["final"] for r in results.values())
    tied = [n for n, r in results.items() if r["final"] - best <= tie_margin]
    return min(tied, key=lambda n: float(np.mean(results[n]["val"][-3:])))
    # <<< exercise day29.pick_best


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, dev = ctx.deliverable, ctx.device
    tok, tr, va = data.char_corpus()
    mcfg = gpt_config_for(cfg, vocab_size=tok.vocab_size)
    results, tcs = {}, {}
    for name, over in schedules(cfg).items():
        torch.manual_seed(ctx.seed)
        model = GPT(mcfg).to(dev)
        tc = train_config_for(cfg, **over)
        res = ctx.train(model, *data.split_batches(tr, va, cfg.block_size, cfg.batch_size, dev), tc, run=name)
        steps, val = res.history["step"], res.history["val"]
        tail = [i for i, s in enumerate(steps) if s >= 0.8 * cfg.max_iters] or [len(steps) - 1]
        slope = (np.polyfit(np.array(steps)[tail], np.array(val)[tail], 1)[0] * 100) if len(tail) > 1 else float("nan")
        results[name] = {"steps": steps, "val": val, "final": full_split_loss(model, va, cfg.block_size, 64, dev),
                         "slope": slope}
        tcs[name] = tc
    best = pick_best(results, cfg.tie_margin)
    d.section("Same budget, three schedules")
    d.text(f"{cfg.max_iters} steps of {cfg.batch_size} × {cfg.block_size} characters, peak learning rate {cfg.lr:g}, "
           "seed and batches identical; AdamW, clipping at 1.")
    d.table([{"schedule": n, "setting": ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in schedules(cfg)[n].items()),
              "final val loss (whole split)": r["final"], "val slope, last 20% (per 100 steps)": r["slope"],
              "chosen": "★" if n == best else ""} for n, r in results.items()])
    order = sorted(results, key=lambda n: results[n]["final"])
    gap = results[order[1]]["final"] - results[order[0]]["final"] if len(order) > 1 else float("nan")
    steep = min(results, key=lambda n: results[n]["slope"] if np.isfinite(results[n]["slope"]) else np.inf)
    finals = ", ".join(f"{n} {results[n]['final']:.3f}" for n in order)
    d.text(f"What to look at: the final losses are {finals}; "
           f"{order[0]} leads by {gap:.3f} nats, {'more' if gap > cfg.tie_margin else 'less'} than the "
           f"{cfg.tie_margin} tie margin. The slope column is the fitted change of val loss per 100 steps over the "
           + (f"last 20%: {steep} falls fastest there ({results[steep]['slope']:.3f}), the mark of a decay that is "
              "still converting progress into loss at the end." if np.isfinite(results[steep]["slope"]) else
              "last 20%: too few evaluations there to fit one."))
    steps = list(range(cfg.max_iters))
    lrs = {n: (steps, [lr_at(i, tc) for i in steps]) for n, tc in tcs.items()}
    peak = {n: max(v) for n, (_, v) in lrs.items()}
    # the step where each schedule last sits at its peak (after it, the decay)
    decay_at = {n: max(i for i, v in zip(*lrs[n]) if v >= 0.999 * peak[n]) for n in lrs}
    wsd = "wsd" if "wsd" in lrs else max(decay_at, key=decay_at.get)
    p = plotting.lines(ctx.plot_path("val_loss"), {n: (r["steps"], r["val"]) for n, r in results.items()}, "step",
                       "val loss (nats/char, fixed batches)", "Validation loss per schedule", markers=True,
                       vline=(decay_at[wsd], f"{wsd} starts its decay (step {decay_at[wsd]})"))
    d.image(p, "Validation loss along training")
    before = {n: next((v for s_, v in zip(r["steps"][::-1], r["val"][::-1]) if s_ <= decay_at[wsd]), r["val"][0])
              for n, r in results.items()}
    drop = {n: before[n] - r["val"][-1] for n, r in results.items()}
    lead_mid = min(results, key=lambda n: before[n])
    d.text(f"What to look at: at the dotted line, where {wsd} leaves its peak rate, {lead_mid} is lowest"
           + (f" and {wsd} is {before[wsd] - before[lead_mid]:.3f} nats behind" if lead_mid != wsd else "")
           + f". From there to the end {wsd} drops {drop[wsd]:.3f} nats against "
           + ", ".join(f"{drop[n]:.3f} for {n}" for n in results if n != wsd)
           + (": the short final anneal turns the high-rate progress into loss." if drop[wsd] == max(drop.values())
              else "."))
    p2 = plotting.lines(ctx.plot_path("schedules"), lrs, "step", "learning rate", "The three schedules")
    d.image(p2, "Learning rate per step")
    mean = {n: float(np.mean(v)) for n, (_, v) in lrs.items()}
    d.text(f"What to look at: all three reach the same peak, {max(peak.values()):g}; they differ in how long they "
           "stay near it. Average rate over the run: "
           + ", ".join(f"{n} {mean[n]:.2g}" for n in lrs)
           + (f" — {wsd} moves {mean[wsd] / mean['cosine']:.2f}× cosine's total step size."
              if "cosine" in mean and wsd != "cosine" else "."))
    d.text(f"Rule: the lowest final loss on the whole validation split wins; schedules within {cfg.tie_margin} nats of "
           f"it tie, and the tie goes to the lower mean over the last three evaluations. By that rule: **{best}** "
           f"({results[best]['final']:.4f}).")
    win = schedules(cfg)[best]  # the winner as fractions of this run, for day 30's recipe
    return {"best_schedule": best, **{f"val_{n.replace('-', '_')}": round(r["final"], 4) for n, r in results.items()},
            "best_schedule_kind": win["schedule"], "best_warmup_frac": win["warmup_iters"] / cfg.max_iters,
            "best_decay_frac": win.get("decay_frac")}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
