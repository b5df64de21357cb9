"""Day 14: regularisation — weight decay and global-norm gradient clipping.

Part A trains the same small GPT with AdamW at weight decay 0 and 0.1 and compares validation loss,
the size of the weights and the gradient-norm traces. Part B is the stability comparison: SGD with
momentum at a moderate and at an aggressive learning rate, each with and without clipping at
global norm 1, recording whether the run diverges (and at which step) or how far it gets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch

from common import data
from common.nn.model import GPT, gpt_config_for
from common.run import plotting, runner
from common.run.errors import UserError
from common.train import lr_at, train, train_config_for

DAY = 14


@dataclass
class Config:
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64
    batch_size: int = 16
    steps: int = 300
    adam_lr: float = 3e-3
    weight_decay: float = 0.1
    sgd_lrs: str = "0.3,1.5"     # the second diverges without clipping (measured: NaN at step 19), not with it
    clip: float = 1.0
    eval_iters: int = 10


PRESETS = {"nano": dict(n_layer=1, n_embd=32, block_size=32, batch_size=8, steps=40, eval_iters=2),
           "cpu": {}, "gpu": dict(n_layer=6, n_embd=384, block_size=256, batch_size=64, steps=2000)}


class Recorder:
    """Collects what train() logs (a `MetricSink`), so a run that stops on a NaN still leaves its trace."""

    def __init__(self, inner=None):
        self.series, self.inner = defaultdict(list), inner

    def log(self, name, value, step=0):
        self.series[name].append((step, float(value)))
        if self.inner is not None:  # and on to the run's tracker (metrics.jsonl, TensorBoard)
            self.inner.log(name, value, step)

    def log_dict(self, values, step=0, prefix=""):
        for k, v in values.items():
            self.log(prefix + k, v, step)

    def flush(self):
        if self.inner is not None:
            self.inner.flush()


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, dev = ctx.deliverable, ctx.device
    tok, tr, va = data.char_corpus()
    mcfg = gpt_config_for(cfg, vocab_size=tok.vocab_size)
    tb, vb = data.split_batches(tr, va, cfg.block_size, cfg.batch_size, dev)

    def run(lr, wd, clip, sgd=False):
        torch.manual_seed(ctx.seed)
        model = GPT(mcfg).to(dev)
        opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if sgd else
               model.configure_optimizer(wd, lr, (0.9, 0.99), dev.type))
        tc = train_config_for(cfg, lr=lr, warmup_iters=max(1, cfg.steps // 20), weight_decay=wd, grad_clip=clip,
                              eval_interval=0, log_interval=1)
        rec = Recorder(ctx.tracker.scoped(f"{'sgd' if sgd else 'adamw'}_lr{lr:g}_wd{wd:g}_clip{clip:g}"))
        try:
            res = train(model, tb, vb, tc, dev, rec, optimizer=opt, show_progress=False)
            ctx.record_throughput(f"{'sgd' if sgd else 'adamw'} lr {lr:g} wd {wd:g} clip {clip:g}", res, model,
                                  cfg.block_size)
            outcome, val = "trained", res.final_val
        except UserError as e:
            outcome, val = f"diverged: {str(e).split(': ', 1)[0].replace('Stopped', 'stopped')}", float("nan")
        wnorm = torch.sqrt(sum((p.detach().float() ** 2).sum() for p in model.parameters() if p.dim() >= 2)).item()
        return {"outcome": outcome, "val": val, "weight_norm": wnorm, "trace": rec.series["train/grad_norm"]}

    d.section("A. Weight decay (AdamW, no clipping)")
    a = {wd: run(cfg.adam_lr, wd, 0.0) for wd in (0.0, cfg.weight_decay)}
    d.table([{"weight decay": wd, "final val loss": r["val"], "‖W‖ (matrices)": r["weight_norm"],
              "median grad norm": sorted(v for _, v in r["trace"])[len(r["trace"]) // 2]} for wd, r in a.items()])
    shrink = a[cfg.weight_decay]["weight_norm"] / a[0.0]["weight_norm"]
    dv = a[cfg.weight_decay]["val"] - a[0.0]["val"]
    tc_a = train_config_for(cfg, lr=cfg.adam_lr, warmup_iters=max(1, cfg.steps // 20), weight_decay=cfg.weight_decay)
    pure = math.prod(1 - lr_at(i, tc_a) * cfg.weight_decay for i in range(cfg.steps))
    med = [sorted(v for _, v in r["trace"])[len(r["trace"]) // 2] for r in a.values()]
    d.text(f"What to look at: decay {cfg.weight_decay:g} ends with weights {shrink:.2f}× the norm of the undecayed run "
           f"and a val loss {abs(dv):.3f} {'higher' if dv > 0 else 'lower'} after {cfg.steps} steps. Decay alone, "
           f"with no gradient, would scale the weights by Π(1 − η_t λ) = {pure:.2f} over this schedule"
           + (", and the gradient pushes back, so the measured shrink is milder. " if shrink > pure else ". ")
           + (f"The median gradient norms ({med[0]:.2f} and {med[1]:.2f}) barely differ: in so short a run decay "
              f"changes the weight norm by {abs(1 - shrink):.1%}, and its regularising benefit needs a long run that "
              "over-fits."
              if abs(med[1] - med[0]) < 0.2 * med[0] and abs(1 - shrink) < 0.1 else
              f"The median gradient norms are {med[0]:.2f} and {med[1]:.2f}."))

    d.section("B. Stability: SGD + momentum 0.9, with and without clipping at global norm " + f"{cfg.clip:g}")
    b = {(lr, clip): run(lr, 0.0, clip, sgd=True)
         for lr in map(float, cfg.sgd_lrs.split(",")) for clip in (0.0, cfg.clip)}
    d.table([{"lr": lr, "clip": clip or "off", "outcome": r["outcome"], "final val loss": r["val"],
              "max grad norm": max((v for _, v in r["trace"]), default=float("nan"))} for (lr, clip), r in b.items()])
    frac = {lr: sum(v > clip for _, v in r["trace"]) / max(1, len(r["trace"])) for (lr, clip), r in b.items() if clip}
    d.text(f"What to look at: the grad norm is measured before clipping, so a clipped run can show norms above "
           f"{cfg.clip:g}: clipping caps the step, not the gradient. Clipping was active on "
           + " and ".join(f"{f:.0%} of the steps at lr {lr:g}" for lr, f in frac.items())
           + "; a run clipped on most steps is really training at the smaller rate lr × clip / ‖g‖. "
           + "".join(f"The unclipped lr {lr:g} run has a max of {max(v for _, v in r['trace']):.3g}: its norm "
                     "exploded and the NaN guard stopped it. " for (lr, clip), r in b.items()
                     if not clip and r["outcome"] != "trained" and r["trace"]))
    series = {f"lr {lr:g}, clip {clip or 'off'}": ([s for s, _ in r["trace"]], [v for _, v in r["trace"]])
              for (lr, clip), r in b.items() if r["trace"]}
    series.update({f"AdamW wd {wd:g}": ([s for s, _ in r["trace"]], [v for _, v in r["trace"]]) for wd, r in a.items()})
    p = plotting.lines(ctx.plot_path("grad_norm_traces"), series, "step", "global gradient norm (before clipping)",
                       "Gradient-norm traces", logy=True, hline=(cfg.clip, f"clip threshold {cfg.clip:g} (SGD runs)"))
    d.image(p, "Global gradient norm per step; a trace that ends early is a run the NaN guard stopped; the dashed "
               "line is the clip threshold of the clipped SGD runs")
    blown = [(lr, r) for (lr, clip), r in b.items() if not clip and r["outcome"] != "trained" and r["trace"]]
    finite = lambda tr: [(st, v) for st, v in tr if math.isfinite(v)]  # noqa: E731
    spikes = {wd: max(r["trace"], key=lambda sv: sv[1]) for wd, r in a.items() if r["trace"]}
    wd_spk = max(spikes, key=lambda w: spikes[w][1]) if spikes else None
    d.text("What to look at: "
           + "".join(f"the unclipped lr {lr:g} trace climbs from {r['trace'][0][1]:.2g} to "
                     f"{max(v for _, v in finite(r['trace'])):.2g} by step {finite(r['trace'])[-1][0]} and ends there: "
                     "a bigger step lands where the gradient is bigger, which gives a bigger step. " for lr, r in blown)
           + (f"AdamW's norm spikes to {spikes[wd_spk][1]:.3g} at step {spikes[wd_spk][0]} (wd {wd_spk:g}) and "
              "recovers without clipping: Adam divides each coordinate's step by its running gradient size, so one "
              "large gradient cannot throw the weights far." if wd_spk is not None and spikes[wd_spk][1] > 5 * max(med)
              else "The AdamW traces stay near their median without clipping."))
    hi = max(float(x) for x in cfg.sgd_lrs.split(","))
    saved = b[(hi, 0.0)]["outcome"] != "trained" and b[(hi, cfg.clip)]["outcome"] == "trained"
    d.text(f"At lr {hi:g} the unclipped run {b[(hi, 0.0)]['outcome']}; with clipping it "
           f"{b[(hi, cfg.clip)]['outcome']} (val {b[(hi, cfg.clip)]['val']:.3f}). "
           + ("Clipping is what keeps this learning rate usable: it caps each gradient's contribution at lr × clip; "
              "with momentum μ the step can still build up to lr × clip / (1 − μ) over many steps."
              if saved else "Here clipping did not change the outcome."))
    return {"val_loss_wd0": round(a[0.0]["val"], 4), "val_loss_wd": round(a[cfg.weight_decay]["val"], 4),
            "weight_norm_ratio": round(shrink, 3), "clip_saves_high_lr": saved,
            "unclipped_high_lr": b[(hi, 0.0)]["outcome"], "clipped_high_lr_val": round(b[(hi, cfg.clip)]["val"], 4)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
