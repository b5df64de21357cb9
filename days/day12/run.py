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
    exact = [n for n in REFERENCE if diffs[n] == 0]
    ok = all(v <= 1e-10 for v in diffs.values())
    d.text(f"What to look at: after {cfg.match_steps} identical float64 steps the largest parameter gap is "
           f"{max(diffs.values()):.1e}"
           + (f"; {', '.join(exact)} agree bit for bit (the same operations in the same order)" if exact else "")
           + (", and any other gap is float64 rounding (about 1e-16): our update rules are torch.optim's."
              if ok else ". Some gap is above 1e-10: that rule is not torch.optim's."))

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
    worst_opt = max(runs, key=lambda n: runs[n].final_val)
    best_opt = min(runs, key=lambda n: runs[n].final_val)
    tv_gap = max(abs(r.train_log["loss"][-1] - r.final_val) for r in runs.values())
    d.text(f"What to look at: each rule runs at its own peak rate (SGD needs a far larger one), so this compares "
           f"sensible setups, not one rate. {best_opt} ends lowest (val {runs[best_opt].final_val:.3f}), "
           f"{worst_opt} highest ({runs[worst_opt].final_val:.3f}, "
           f"{runs[worst_opt].final_val - runs[best_opt].final_val:.2f} nats behind). adam and adamw differ only by "
           f"AdamW's decoupled weight decay (0.1), which here moves val by "
           f"{runs['adamw'].final_val - runs['adam'].final_val:+.3f}. "
           + (f"Train and val stay within {tv_gap:.2f} nats of each other: no model over-fits this short run."
              if tv_gap < 0.05 else f"Train and val differ by up to {tv_gap:.2f} nats (the train column is one batch).")
           )
    p1 = plotting.lines(ctx.plot_path("loss_by_optimizer"), {n: (r.train_log["step"], r.train_log["loss"])
                        for n, r in runs.items()}, "step", "train loss (nats/char)", "Same model, same batches")
    d.image(p1, "Training loss per optimizer (one batch every 5 steps; all four see the same batches)")
    rise = {}
    for n, r in runs.items():
        ls, best_so_far, top = r.train_log["loss"], r.train_log["loss"][0], (0.0, 0)
        for st, v in zip(r.train_log["step"], ls):
            best_so_far = min(best_so_far, v)
            top = max(top, (v - best_so_far, st))
        rise[n] = top
    jumpy = max(rise, key=lambda n: rise[n][0])
    d.text(f"What to look at: all four start at {runs[jumpy].train_log['loss'][0]:.2f} nats, about ln "
           f"{tok.vocab_size} (a uniform guess). The shared zig-zag is batch noise: the same batch is hard for every "
           "rule. "
           + (f"{jumpy} climbs back {rise[jumpy][0]:.2f} nats above its best so far near step {rise[jumpy][1]} "
              f"(warm-up ends at step {cfg.warmup_iters}): a step too large undoes progress. "
              if rise[jumpy][0] > 0.1 else "")
           + f"At the last logged step {min(runs, key=lambda n: runs[n].train_log['loss'][-1])} is lowest and "
             f"{max(runs, key=lambda n: runs[n].train_log['loss'][-1])} highest.")

    d.section("Constant vs warm-up + cosine (AdamW, same peak)")
    sched = {s: run("adamw", s) for s in ("constant", "cosine")}
    d.table([{"schedule": s, "final val loss": r.final_val, "best val loss": r.best_val}
             for s, (_, r) in sched.items()])
    gain = sched["constant"][1].final_val - sched["cosine"][1].final_val
    steps = list(range(cfg.steps))
    lrs = {s: [lr_at(i, tc) for i in steps] for s, (tc, _) in sched.items()}
    mean_lr = {s: sum(v) / len(v) for s, v in lrs.items()}
    last_best = all(r.final_val == r.best_val for _, r in sched.values())
    d.text(f"What to look at: the constant rate ends {abs(gain):.3f} nats {'above' if gain > 0 else 'below'} the "
           f"cosine. Both warm up the same way; after that the constant keeps the peak, while the cosine's mean rate "
           f"over the run is {mean_lr['cosine'] / mean_lr['constant']:.0%} of the constant's. "
           + ("Final and best val are equal in both rows: the last evaluation is the best, neither run has stopped "
              "improving. " if last_best else "")
           + ("Far from convergence a larger average rate simply makes more progress; annealing pays late in long "
              "runs, when gradient noise, not distance, holds the loss up." if gain < 0 else
              "Lowering the rate at the end let the cosine run settle lower than the constant one."))
    p2 = plotting.lines(ctx.plot_path("loss_vs_steps"), {s: (r.train_log["step"], r.train_log["loss"])
                        for s, (_, r) in sched.items()}, "step", "train loss (nats/char)", "AdamW: constant vs cosine",
                        vline=(cfg.warmup_iters, "end of warm-up"))
    d.image(p2, "Loss vs steps for the two schedules (one batch every 5 steps, the same batches for both)")
    lc, lk = sched["constant"][1].train_log, sched["cosine"][1].train_log
    split = next((st for st, a, b in zip(lc["step"], lc["loss"], lk["loss"]) if abs(a - b) > 0.01), None)
    tail = [a - b for st, a, b in zip(lc["step"], lc["loss"], lk["loss"]) if st >= cfg.steps // 2]
    d.text("What to look at: "
           + (f"the two curves are the same until about step {split}, where the cosine rate is still "
              f"{lrs['cosine'][min(split, cfg.steps - 1)] / PEAK_LR['adamw']:.0%} of the peak; "
              if split is not None else "the two curves never part by more than 0.01 nats; ")
           + (f"over the second half the {'constant' if sum(tail) < 0 else 'cosine'} run's batch loss is lower "
              f"on average, by {abs(sum(tail)) / len(tail):.3f} nats." if tail else ""))
    p3 = plotting.lines(ctx.plot_path("lr_schedule"), {s: (steps, lrs[s]) for s in sched}, "step",
                        "learning rate", "The schedules", vline=(cfg.warmup_iters, "end of warm-up"))
    d.image(p3, f"Learning rate per step (common.train.lr_at); both schedules warm up linearly over the first "
                f"{cfg.warmup_iters} steps, where the constant line lies under the cosine")
    tc_cos = sched["cosine"][0]
    d.text(f"What to look at: the cosine falls from the peak {tc_cos.lr:g} to min_lr {tc_cos.min_lr:g} "
           f"({tc_cos.min_lr / tc_cos.lr:.0%} of it) at the last step; averaged over the run it gives "
           f"{mean_lr['cosine']:.2g} against the constant's {mean_lr['constant']:.2g}.")
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
