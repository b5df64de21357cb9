"""Day 19: stability study — four SGD configurations (learning rate x warm-up) of the nano GPT, side by side.

Each run trains the same model on the same Tiny Shakespeare batches with plain SGD (no momentum, no clipping,
constant lr after a linear warm-up). We record the final val loss, the max gradient norm, the step where the NaN
guard of common/train/loop.py stopped a diverging run, and the top Hessian eigenvalue of the training loss on a fixed
batch at a few checkpoints (Lanczos on double-backward H v products), compared with 2/eta_t (edge of stability).
With plain SGD the relevant quantity is the raw Hessian sharpness (no preconditioner), which is what we measure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from common import data
from common.lab import curvature as cv
from common.lab import determinism
from common.nn.model import GPT, gpt_config
from common.run import plotting, runner
from common.run.errors import UserError
from common.train import lr_at, train, train_config_for

DAY = 19
RULE = ("lowest final val loss among runs that neither diverged (NaN) nor collapsed to chance; val losses equal "
        "to 2 decimals are a tie, broken by the lower max gradient norm")
CHANCE_MARGIN = 0.02   # a final val loss within this of ln(vocab) counts as collapsed to chance


@dataclass
class Config:
    lr_low: float = 0.5         # the two SGD learning rates (stability threshold 2/eta)
    lr_high: float = 3.0
    warmup: int = 200           # warm-up length of the "with warm-up" runs (the others: none)
    steps: int = 1500
    batch_size: int = 16
    block_size: int = 32
    eig_every: int = 150        # sharpness snapshot interval (plus step 0)
    eig_batch: int = 32         # windows in the fixed batch whose loss the Hessian is of
    lanczos_iters: int = 20     # H v products per snapshot
    eval_iters: int = 20
    threads: int = 1            # keep CPU use modest (the model is tiny)


PRESETS = {"nano": dict(steps=40, warmup=10, eig_every=20, eig_batch=4, lanczos_iters=5, eval_iters=2),
           "cpu": {}, "gpu": dict(steps=5000, eig_every=250, eig_batch=128, lanczos_iters=30, threads=0)}


def nanmax(xs):
    xs = [x for x in xs if x == x]
    return max(xs) if xs else float("nan")


def select_best(results: list[dict]) -> str | None:
    """The RULE applied: results have name, diverged (bool), val_loss, max_grad_norm. None if all diverged."""
    # >>> exercise day19.select_best: RULE: skip failed/NaN runs; min of (val loss to 2 decimals, max grad norm)
    ok = [r for r in results if not r.get("failed", r["diverged"]) and r["val_loss"] == r["val_loss"]]  # nan != nan
    return min(ok, key=lambda r: (round(r["val_loss"], 2), r["max_grad_norm"]))["name"] if ok else None
    # <<< exercise day19.select_best


class Capture:
    """A `MetricSink` that keeps train/loss and train/grad_norm per step (also of a run that dies) and forwards."""

    def __init__(self, inner, prefix):
        self.inner, self.prefix, self.curves = inner, prefix, {"train/loss": {}, "train/grad_norm": {}}

    def log(self, name, value, step=0):
        if name in self.curves:
            self.curves[name][step] = value
        self.inner.log(f"{self.prefix}/{name}", value, step)

    def log_dict(self, values, step=0, prefix=""):
        for k, v in values.items():
            self.log(prefix + k, v, step)

    def flush(self):
        self.inner.flush()


def one_run(name, lr, warmup, cfg, ctx, corpus):
    tok, tr, va = corpus
    determinism.seed_everything(ctx.seed)
    model = GPT(gpt_config("nano", vocab_size=tok.vocab_size, block_size=cfg.block_size, attn_backend="manual"))
    model.to(ctx.device)
    ps = cv.params_of(model)
    P = sum(p.numel() for p in ps)
    x, y = data.Batches(tr, cfg.block_size, cfg.eig_batch, ctx.device, seed=ctx.seed + 1).fixed(1)[0]
    tc = train_config_for(cfg, lr=lr, warmup_iters=warmup, schedule="constant", grad_clip=0.0, weight_decay=0.0,
                          eval_interval=max(1, cfg.steps // 5), log_interval=1)
    eigs = {}

    def snapshot(step):
        try:  # a run on its way to NaN can have inf in H v; eigh then fails
            lam = cv.lanczos(lambda u: cv.hvp(lambda: model(x, y)[1], ps, u), P, k=1, m=cfg.lanczos_iters,
                             device=ctx.device)[0].item()
        except RuntimeError:
            lam = float("nan")
        eigs[step] = lam
        ctx.tracker.log(f"{name}/sharpness", lam, step)

    opt = torch.optim.SGD(ps, lr=lr)
    n = [0]

    def hook(*_):
        n[0] += 1
        if n[0] % cfg.eig_every == 0 or n[0] == cfg.steps:
            snapshot(n[0])
    opt.register_step_post_hook(hook)
    snapshot(0)
    trk = Capture(ctx.tracker, name)
    diverged_at, val = None, float("nan")
    try:
        res = train(model, data.Batches(tr, cfg.block_size, cfg.batch_size, ctx.device),
                    data.Batches(va, cfg.block_size, cfg.batch_size, ctx.device, seed=ctx.seed),
                    tc, ctx.device, trk, show_progress=not ctx.quick, optimizer=opt)
        ctx.record_throughput(name, res, model, cfg.block_size)
        val = res.final_val
    except UserError as e:
        diverged_at = int(re.search(r"step (\d+)", str(e)).group(1))
    # A run can blow up without a NaN: the loss spikes, the units saturate and the model settles on
    # uniform predictions (val = ln V, the loss of knowing nothing) with vanishing gradients.
    collapsed = diverged_at is None and val >= math.log(tok.vocab_size) - CHANCE_MARGIN
    gn = trk.curves["train/grad_norm"]
    ratios = {s: lam * lr_at(max(s - 1, 0), tc) / 2 for s, lam in eigs.items()}  # eta of the step just taken
    return {"name": name, "lr": lr, "warmup": warmup, "diverged": diverged_at is not None, "diverged_at": diverged_at,
            "collapsed": collapsed, "failed": diverged_at is not None or collapsed,
            "val_loss": val, "max_grad_norm": max(gn.values()) if gn else float("nan"), "eigs": eigs,
            "ratios": ratios, "loss": trk.curves["train/loss"], "tc": tc}


def outcome(r: dict) -> str:
    if r["diverged"]:
        return f"diverged (NaN) at step {r['diverged_at']}"
    if r["collapsed"]:
        return f"collapsed to chance (val {r['val_loss']:.3f})"
    return f"trained (val {r['val_loss']:.3f})"


def main(cfg: Config, ctx) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    corpus = data.char_corpus()
    grid = [(f"lr{lr:g}_wu{wu}", lr, wu) for lr in (cfg.lr_low, cfg.lr_high) for wu in (0, cfg.warmup)]
    results = [one_run(n, lr, wu, cfg, ctx, corpus) for n, lr, wu in grid]
    best = select_best(results)
    d = ctx.deliverable
    d.section(f"Four SGD configurations of the nano GPT, {cfg.steps} steps each (batch {cfg.batch_size} x "
              f"{cfg.block_size}, no clipping, no momentum)")
    d.text(f"Selection rule: {RULE}. Sharpness = top eigenvalue of the raw Hessian of the training loss on a fixed "
           f"batch of {cfg.eig_batch} windows (plain SGD has no preconditioner), by Lanczos with "
           f"{cfg.lanczos_iters} H v products; ratio = lambda_max * eta_t / 2 (1 = edge of stability).")
    rows = []
    for r in results:
        late = [v for s, v in r["ratios"].items() if s >= cfg.steps // 2]
        rows.append({"config": r["name"], "lr": r["lr"], "warm-up": r["warmup"], "2/eta": 2 / r["lr"],
                     "final val loss": f"{r['val_loss']:.3f}" if not r["diverged"] else "—",
                     "max grad norm": r["max_grad_norm"],
                     "outcome": outcome(r),
                     "max sharpness ratio": nanmax(r["ratios"].values()),
                     "mean ratio, 2nd half": f"{sum(late) / len(late):.2f}" if late else "—"})
    d.table(rows, floatfmt=".3g")
    dead = [r for r in results if r["collapsed"]]
    dead_names = {r["name"] for r in dead}
    spiky = max(results, key=lambda r: r["max_grad_norm"] if r["max_grad_norm"] == r["max_grad_norm"] else -1)
    d.text("What to look at: 2/eta is the sharpness plain SGD tolerates at the full rate; a max sharpness ratio "
           "above 1 means the run spent time past the edge of stability. "
           + f"The largest gradient norm, {spiky['max_grad_norm']:.3g}, is {spiky['name']}'s. "
           + (f"{', '.join(r['name'] for r in dead)} ended at chance with a 2nd-half ratio of "
              f"{', '.join(str(row['mean ratio, 2nd half']) for row in rows if row['config'] in dead_names)}"
              ": its curvature vanished because the network stopped learning, not because it became stable."
              if dead else "No run collapsed to chance."))
    div = [r["name"] for r in results if r["diverged"]]
    failed = [r["name"] for r in results if r["failed"]]
    chance = math.log(corpus[0].vocab_size)
    d.text(f"Best configuration by the rule: **{best}**. Failed: {', '.join(failed) if failed else 'none'} "
           f"(a NaN stop, or a final val loss within {CHANCE_MARGIN} of chance, ln {corpus[0].vocab_size} = "
           f"{chance:.3f}).")
    for lr in (cfg.lr_low, cfg.lr_high):
        a, b = [r for r in results if r["lr"] == lr]
        d.text(f"lr {lr:g}: without warm-up {outcome(a)}, with {cfg.warmup} warm-up steps {outcome(b)}.")
    snap = sorted({s for r in results for s in r["eigs"]})
    d.table([{"step": s, **{r["name"]: (f"{r['eigs'][s]:.3g} ({r['ratios'][s]:.2f})" if s in r["eigs"] else "—")
                            for r in results}} for s in snap])
    d.text("Cells: lambda_max (lambda_max * eta_t / 2).")
    lam0 = {r["name"]: r["eigs"].get(0) for r in results}
    hi_wu = next((r for r in results if r["lr"] == cfg.lr_high and r["warmup"]), None)
    hi_no = next((r for r in results if r["lr"] == cfg.lr_high and not r["warmup"]), None)
    after = min((k for k in (hi_wu or {}).get("eigs", {}) if k >= cfg.warmup), default=None) if hi_wu else None
    d.text(f"What to look at: at step 0 every run has the same lambda_max, {lam0[results[0]['name']]:.3g} (same "
           "initial weights, same batch); only eta_0 differs, so the ratio in brackets does. "
           + (f"At lr {cfg.lr_high:g} without warm-up the very first step faces a ratio of "
              f"{hi_no['ratios'][0]:.2f}{', past the edge' if hi_no['ratios'][0] > 1 else ''}; with warm-up it "
              f"starts at {hi_wu['ratios'][0]:.2f}, and by step {after}, when the full rate has arrived, lambda_max "
              f"is {hi_wu['eigs'][after]:.3g}"
              + (" (lower than at step 0: the small early steps moved the weights to a flatter region)."
                 if hi_wu["eigs"][after] < hi_wu["eigs"][0] else ".")
              if hi_wu and hi_no and after is not None else ""))
    chance_line = math.log(corpus[0].vocab_size)
    cap = 2 * chance_line  # one exploding run would squash every other curve against the axis
    p = plotting.lines(ctx.plot_path("loss"), {r["name"]: (list(r["loss"]), [min(v, cap) for v in r["loss"].values()])
                                               for r in results}, "SGD step", "training loss (nats/char)",
                       hline=(chance_line, f"chance, ln {corpus[0].vocab_size} = {chance_line:.2f}"),
                       title=f"Training loss per step (values above {cap:.1f} drawn at {cap:.1f}; "
                             "a curve that stops diverged)")
    d.image(p, f"training loss of the four configurations; losses above {cap:.1f} (2 ln V) are drawn at {cap:.1f} so "
               "that one spike does not flatten the other curves; the dashed line is chance")
    peaks = {r["name"]: max(r["loss"].items(), key=lambda kv: kv[1] if kv[1] == kv[1] else -1) for r in results
             if r["loss"]}
    over = {n: kv for n, kv in peaks.items() if kv[1] > cap}
    d.text("What to look at: "
           + "".join(f"{n} spikes to {v:.3g} at step {st} (drawn at the cap). " for n, (st, v) in over.items())
           + (f"{', '.join(r['name'] for r in dead)} then sits on the chance line for the rest of the run: it "
              "predicts the same uniform distribution for every input. " if dead else "")
           + "".join(f"{r['name']} spikes to {v:.3g} at step {st} and recovers. " for r in results
                     if not r["failed"] and r["name"] not in over
                     for st, v in [peaks[r["name"]]] if st > 0 and v > r["loss"][0] + 1)
           + "The runs that trained end at "
           + ", ".join(f"{r['name']} {list(r['loss'].values())[-1]:.2f}" for r in results if not r["failed"])
           + " (last batch).")
    series = {}
    for r in results:
        st = sorted(r["ratios"])
        series[r["name"]] = (st, [r["ratios"][k] for k in st])
    p = plotting.lines(ctx.plot_path("sharpness"), series, "SGD step", "lambda_max * eta_t / 2 (1 = edge of stability)",
                       markers=True, hline=(1.0, "edge of stability: lambda_max = 2/eta_t"),
                       title="Top Hessian eigenvalue against the stability threshold 2/eta_t")
    d.image(p, "top eigenvalue of the training-loss Hessian divided by each run's current threshold 2/eta_t "
               "(Lanczos snapshots); above the dashed line, a quadratic with that curvature would diverge")
    alive = [r for r in results if not r["failed"]]
    n_above = sum(v > 1 for r in alive for k, v in r["ratios"].items() if k > 0)
    n_all = sum(1 for r in alive for k in r["ratios"] if k > 0)
    d.text("What to look at: "
           + (f"after step 0 the runs that trained are above 1 at {n_above} of {n_all} snapshots, yet they do not "
              "diverge: the threshold is a prediction of the local quadratic model, and a network is not a quadratic "
              "(day 16 saw the same under full-batch GD); the Hessian is also of one fixed batch, while SGD steps on "
              "others. " if n_all else "")
           + "The warm-up runs start low ("
           + ", ".join(f"{r['name']} {r['ratios'][0]:.2f}" for r in results if r["warmup"] and 0 in r["ratios"])
           + ") because their first step uses eta/W. "
           + (f"{', '.join(r['name'] for r in dead)} drops to 0 and stays there: dead, not stable." if dead else ""))
    out = {"best_config": best or "none", "n_diverged": len(div), "n_failed": len(failed)}
    for r in results:
        out[f"val_loss_{r['name']}"] = r["val_loss"]
        out[f"max_ratio_{r['name']}"] = nanmax(r["ratios"].values())
        out[f"final_ratio_{r['name']}"] = r["ratios"][max(r["ratios"])]
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
