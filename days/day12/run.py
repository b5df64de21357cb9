"""Day 12: optimizers from their update rules, and learning-rate schedules.

Part 1 checks `common/train/optim.py` against `torch.optim`: the same small network, data and
hyper-parameters for each of SGD, momentum, Adam and AdamW, and the largest parameter difference
after the run. Part 2 trains the same small GPT on Tiny Shakespeare with each optimizer (ours)
and with constant vs warm-up + cosine learning rates at the same peak, and plots loss vs steps and
the schedules themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common import data
from common.nn.model import GPT, gpt_config_for
from common.run import plotting, runner
from common.train import lr_at, train_config_for
from common.train.optim import ScratchOptimizer

DAY = 12
REFERENCE = {"sgd": (torch.optim.SGD, {}), "momentum": (torch.optim.SGD, {"momentum": 0.9}),
             "adam": (torch.optim.Adam, {}), "adamw": (torch.optim.AdamW, {"weight_decay": 0.1})}
PEAK_LR = {"sgd": 0.3, "momentum": 0.03, "adam": 3e-3, "adamw": 3e-3}  # a sensible peak for each


@dataclass
class Config:
    match_steps: int = 200       # steps of the ours-vs-torch.optim comparison (float64)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64
    batch_size: int = 16
    steps: int = 300             # training steps per variant
    warmup_iters: int = 30
    eval_iters: int = 10


PRESETS = {"nano": dict(match_steps=100, n_layer=1, n_embd=32, block_size=32, batch_size=4, steps=12,
                        warmup_iters=3, eval_iters=2),
           "cpu": {}, "gpu": dict(n_layer=6, n_embd=384, block_size=256, batch_size=64, steps=2000, warmup_iters=100)}


def match_torch(name: str, steps: int) -> float:
    """Max |ours - torch.optim| over all parameters after `steps` identical steps (float64)."""
    cls, extra = REFERENCE[name]
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        nets.append(torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)).double())
    hp = {"lr": PEAK_LR[name] / 10, **extra}
    opts = [ScratchOptimizer(nets[0].parameters(), name, **hp), cls(nets[1].parameters(), **hp)]
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(64, 8, generator=g, dtype=torch.float64)
        y = torch.randn(64, 4, generator=g, dtype=torch.float64)
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    return max((a - b).abs().max().item() for a, b in zip(nets[0].parameters(), nets[1].parameters()))


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, dev = ctx.deliverable, ctx.device
    d.section("Our update rules vs torch.optim")
    diffs = {n: match_torch(n, cfg.match_steps) for n in REFERENCE}
    d.table([{"optimizer": n, "reference": f"torch.optim.{REFERENCE[n][0].__name__}{REFERENCE[n][1] or ''}",
              "steps": cfg.match_steps, "max |Δ parameter|": diffs[n], "equal (≤ 1e-10)": diffs[n] <= 1e-10}
             for n in REFERENCE])

    tok, tr, va = data.char_corpus()
    mcfg = gpt_config_for(cfg, vocab_size=tok.vocab_size)
    tb, vb = data.split_batches(tr, va, cfg.block_size, cfg.batch_size, dev)

    def run(opt_name, schedule):
        torch.manual_seed(ctx.seed)
        model = GPT(mcfg).to(dev)
        lr = PEAK_LR[opt_name]
        tc = train_config_for(cfg, lr=lr, schedule=schedule, eval_interval=max(1, cfg.steps // 5), log_interval=5,
                              weight_decay=0.0, grad_clip=0.0)
        opt = ScratchOptimizer(model.parameters(), opt_name, lr=lr, **REFERENCE[opt_name][1])
        res = ctx.train(model, tb, vb, tc, run=f"{opt_name}_{schedule}", optimizer=opt)
        return tc, res

    d.section("Optimizers on a small GPT (warm-up + cosine, each at its own peak rate)")
    runs = {n: run(n, "cosine")[1] for n in REFERENCE}
    d.table([{"optimizer": n, "peak lr": PEAK_LR[n], "final train loss": r.train_log["loss"][-1],
              "final val loss": r.final_val} for n, r in runs.items()])
    p1 = plotting.lines(ctx.plot_path("loss_by_optimizer"), {n: (r.train_log["step"], r.train_log["loss"])
                        for n, r in runs.items()}, "step", "train loss (nats/char)", "Same model, same batches")
    d.image(p1, "Training loss per optimizer")
    best_opt = min(runs, key=lambda n: runs[n].final_val)

    d.section("Constant vs warm-up + cosine (AdamW, same peak)")
    sched = {s: run("adamw", s) for s in ("constant", "cosine")}
    d.table([{"schedule": s, "final val loss": r.final_val, "best val loss": r.best_val}
             for s, (_, r) in sched.items()])
    p2 = plotting.lines(ctx.plot_path("loss_vs_steps"), {s: (r.train_log["step"], r.train_log["loss"])
                        for s, (_, r) in sched.items()}, "step", "train loss (nats/char)", "AdamW: constant vs cosine")
    d.image(p2, "Loss vs steps for the two schedules")
    steps = list(range(cfg.steps))
    p3 = plotting.lines(ctx.plot_path("lr_schedule"), {s: (steps, [lr_at(i, tc) for i in steps])
                        for s, (tc, _) in sched.items()}, "step", "learning rate", "The schedules")
    d.image(p3, "Learning rate per step (common.train.lr_at)")
    gain = sched["constant"][1].final_val - sched["cosine"][1].final_val
    d.text(f"All four rules match `torch.optim` to {max(diffs.values()):.1e} after {cfg.match_steps} steps. "
           f"On this model {best_opt} ends with the lowest val loss ({runs[best_opt].final_val:.3f}); "
           f"warm-up + cosine ends {abs(gain):.3f} nats {'below' if gain > 0 else 'above'} the constant rate "
           "at the same peak.")
    return {"max_param_diff": max(diffs.values()), "all_match": all(v <= 1e-10 for v in diffs.values()),
            "best_optimizer": best_opt, **{f"val_loss_{n}": round(r.final_val, 4) for n, r in runs.items()},
            "val_loss_constant": round(sched["constant"][1].final_val, 4),
            "val_loss_cosine": round(sched["cosine"][1].final_val, 4), "cosine_gain": round(gain, 4)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
