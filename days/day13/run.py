"""Day 13: initialisation schemes and LayerNorm in a deep MLP.

Four inits (Xavier/Glorot, Kaiming/He, a naive N(0, 0.01^2) and μP-style) on a deep MLP: per-layer
activation and gradient statistics at init and after a short Adam run on a synthetic 10-class task
(labels from a random teacher network), a histogram of tanh activations, and an ablation grid
(init x depth, with and without LayerNorm) of the final training loss.

μP rules implemented (Yang et al. 2022, Table 3, Adam column), with base width `base_width`:
input layer N(0, 1/fan_in), lr = base lr; hidden layers N(0, 1/fan_in), lr = base lr * base_width/width;
output layer N(0, 1/fan_in^2) (std 1/width), lr = base lr * base_width/width; biases zero, base lr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from common.run import plotting, runner
from common.run.tracking import progress

DAY = 13
SCHEMES = ("xavier", "kaiming", "small", "mup")
FORMULA = {"xavier": "2/(fan_in+fan_out)", "kaiming": "2/fan_in", "small": "1e-4 (std 0.01)",
           "mup": "1/fan_in (hidden), 1/fan_in² (output)"}


@dataclass
class Config:
    d_in: int = 32
    n_classes: int = 10
    width: int = 128
    depth: int = 16              # depth of the stats / histogram model (number of hidden layers)
    depths: str = "4,8,16,32"    # the ablation grid
    n_train: int = 2048
    n_stats: int = 512           # inputs for the at-init statistics
    batch_size: int = 128
    steps: int = 200
    lr: float = 1e-3
    base_width: int = 64         # μP base width (lr multiplier base_width / width)


PRESETS = {"nano": dict(width=32, depth=6, depths="2,6", n_train=256, n_stats=128, batch_size=64, steps=8),
           "cpu": {}, "gpu": dict(width=256, depths="4,8,16,32,64", n_train=8192, steps=600)}


def weight_var(scheme: str, fan_in: int, fan_out: int, is_output: bool) -> float:
    """The variance each scheme gives a weight of a layer with this fan-in / fan-out."""
    # >>> exercise day13.weight_var: Var(w) per scheme (Xavier, Kaiming, N(0, 0.01^2), muP) from fan-in and fan-out
    if scheme == "xavier":
        return 2.0 / (fan_in + fan_out)
    if scheme == "kaiming":
        return 2.0 / fan_in
    if scheme == "small":
        return 0.01 ** 2
    if scheme == "mup":
        return 1.0 / fan_in ** 2 if is_output else 1.0 / fan_in
    raise ValueError(scheme)
    # <<< exercise day13.weight_var


class DeepMLP(torch.nn.Module):
    """d_in -> width x depth hidden layers (act, optional LayerNorm without gains) -> n_out."""

    def __init__(self, d_in, width, depth, n_out, act="relu", norm=False, scheme="kaiming"):
        super().__init__()
        dims = [d_in] + [width] * depth + [n_out]
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act, self.norm, self.scheme = {"relu": F.relu, "tanh": torch.tanh}[act], norm, scheme
        with torch.no_grad():
            for i, lin in enumerate(self.layers):
                var = weight_var(scheme, lin.in_features, lin.out_features, i == len(self.layers) - 1)
                lin.weight.normal_(0.0, math.sqrt(var))
                lin.bias.zero_()

    def forward(self, x, keep=None):
        """`keep` (a list) collects each hidden layer's output (after act and norm), grads retained."""
        for lin in self.layers[:-1]:
            x = self.act(lin(x))
            if self.norm:
                x = F.layer_norm(x, x.shape[-1:])
            if keep is not None:
                if x.requires_grad:
                    x.retain_grad()
                keep.append(x)
        return self.layers[-1](x)

    def param_groups(self, lr, base_width):
        # >>> exercise day13.mup_lr: one group at lr; for muP, hidden and output weights at lr * base_width / width
        if self.scheme != "mup":
            return [{"params": list(self.parameters()), "lr": lr}]
        mult = base_width / self.layers[0].out_features
        scaled = [lin.weight for lin in self.layers[1:]]
        rest = [self.layers[0].weight] + [lin.bias for lin in self.layers]
        return [{"params": rest, "lr": lr}, {"params": scaled, "lr": lr * mult}]
        # <<< exercise day13.mup_lr


def make_task(cfg, n, seed):
    """Gaussian inputs, labels = argmax of a fixed random tanh teacher (seed 0), so the task is learnable."""
    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(cfg.d_in, 64, generator=g) / cfg.d_in ** 0.5, torch.randn(64, cfg.n_classes, generator=g)
    x = torch.randn(n, cfg.d_in, generator=torch.Generator().manual_seed(seed))
    return x, (torch.tanh(x @ w1) @ w2).argmax(-1)


def layer_stats(model, x, y):
    """Per hidden layer: activation mean/std, and std of dLoss/dactivation and of dLoss/dW."""
    keep = []
    model.zero_grad()
    F.cross_entropy(model(x, keep), y).backward()
    return {"act_mean": [h.mean().item() for h in keep], "act_std": [h.std().item() for h in keep],
            "act_grad_std": [h.grad.std().item() for h in keep],
            "w_grad_std": [lin.weight.grad.std().item() for lin in model.layers[:-1]]}, keep


def fit(model, cfg, data, seed, tracker=None):
    """Adam on the MLP for cfg.steps minibatches; logs the loss curve; returns the final full-data loss."""
    x, y = data
    opt = torch.optim.Adam(model.param_groups(cfg.lr, cfg.base_width))
    g = torch.Generator().manual_seed(seed)
    for step in range(cfg.steps):
        idx = torch.randint(0, len(x), (cfg.batch_size,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if tracker is not None:
            tracker.log("train/loss", loss.item(), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def main(cfg: Config, ctx: runner.Context) -> dict:
    # tiny inits make subnormal floats, which are ~100x slower on CPUs: flush them to zero for this run
    torch.set_flush_denormal(True)
    try:
        return experiment(cfg, ctx)
    finally:
        torch.set_flush_denormal(False)


def experiment(cfg: Config, ctx: runner.Context) -> dict:
    d, m = ctx.deliverable, {}
    train_data, (xs, ys) = make_task(cfg, cfg.n_train, 1), make_task(cfg, cfg.n_stats, 2)
    new = lambda s, act="relu", depth=cfg.depth, norm=False: DeepMLP(  # noqa: E731
        cfg.d_in, cfg.width, depth, cfg.n_classes, act, norm, s)

    d.section("The rules, checked on a hidden layer")
    rows = []
    for s in SCHEMES:
        torch.manual_seed(ctx.seed)
        lin, out = new(s).layers[1], new(s).layers[-1]
        for name, layer, is_out in (("hidden", lin, False), ("output", out, True)):
            want = weight_var(s, layer.in_features, layer.out_features, is_out)
            rows.append({"init": s, "layer": name, "Var(w) formula": FORMULA[s], "expected": want,
                         "empirical": layer.weight.var().item(), "ratio": layer.weight.var().item() / want})
    d.table(rows)
    m["max_var_ratio_error"] = round(max(abs(r["ratio"] - 1) for r in rows), 4)
    same = all(abs(r["ratio"] - rows[i % 2]["ratio"]) < 1e-6 for i, r in enumerate(rows))
    d.text(f"What to look at: every sampled variance is within {m['max_var_ratio_error']:.1%} of its formula; the "
           f"output layer has only {cfg.width * cfg.n_classes:,} weights (a hidden one {cfg.width ** 2:,}), so its "
           "ratio wanders more. "
           + ("The ratio column repeats across inits because the same seed draws the same standard normals and each "
              "scheme only multiplies them by its own std. " if same else "")
           + f"μP's hidden rule equals Xavier's here: with fan_in = fan_out = {cfg.width}, 2/(n + n) = 1/n; "
           + ("only the input and output layers differ." if cfg.d_in != cfg.width else
              f"with d_in = width = {cfg.width} the input layers agree too, and only the output layer differs."))

    d.section(f"Per-layer statistics at init (depth {cfg.depth}, width {cfg.width})")
    stats, hist = {}, {}
    for act in ("relu", "tanh"):
        for s in SCHEMES:
            torch.manual_seed(ctx.seed)
            stats[act, s], keep = layer_stats(new(s, act), xs, ys)
            for i, v in enumerate(stats[act, s]["act_std"]):
                ctx.tracker.log(f"init_act_std/{act}/{s}", v, i + 1)
            if act == "tanh":
                hist[s] = keep[-1].detach().flatten().numpy()
        layers = list(range(1, cfg.depth + 1))
        p = plotting.lines(ctx.plot_path(f"act_std_{act}"), {s: (layers, stats[act, s]["act_std"]) for s in SCHEMES},
                           "hidden layer", "std of activations", f"{act}: activation std per layer at init",
                           logy=True, markers=True)
        d.image(p, f"{act}: per-layer activation std at init (log scale)")
        first_last = {sc: (stats[act, sc]["act_std"][0], stats[act, sc]["act_std"][-1]) for sc in SCHEMES}
        gain = {sc: (0.5 if act == "relu" else 1.0) * cfg.width * weight_var(sc, cfg.width, cfg.width, False)
                for sc in SCHEMES}  # predicted per-layer variance gain (tanh ~ linear near 0)
        measured = ", ".join(f"{sc} {b / a:.2g} (predicted {gain[sc] ** ((cfg.depth - 1) / 2):.2g})"
                             for sc, (a, b) in first_last.items())
        if act == "relu":
            d.text(f"What to look at: a constant per-layer gain is a straight line on this log scale. Theory: the "
                   f"variance gain per ReLU layer is ½·n·Var(w), so layer {cfg.depth} / layer 1 std should be "
                   f"gain^({cfg.depth - 1}/2). Measured: {measured}. "
                   + ("Xavier and μP lie on top of each other: at width = d_in the two rules agree in every layer "
                      "before the output." if weight_var("xavier", cfg.d_in, cfg.width, False)
                      == weight_var("mup", cfg.d_in, cfg.width, False) else
                      "Xavier and μP are parallel lines: the same hidden rule, a different input layer (ReLU is "
                      "scale-free and the seed is shared, so their ratios agree exactly)."))
        else:
            d.text(f"What to look at: tanh is nearly linear near 0, so the gain per layer is n·Var(w), without "
                   f"ReLU's ½: 1 for Xavier and μP, 2 for Kaiming. Layer {cfg.depth} / layer 1 std: {measured}. "
                   "The linear prediction fails away from 0: tanh squashes large inputs, so gain 1 "
                   + ("drifts down" if first_last["xavier"][1] < first_last["xavier"][0] else "holds")
                   + f" and Kaiming's gain 2 is capped by saturation (std {first_last['kaiming'][1]:.2f} at layer "
                   f"{cfg.depth}"
                   + (", not growing)." if first_last["kaiming"][1] <= first_last["kaiming"][0] else
                      f" against {first_last['kaiming'][0]:.2f} at layer 1)."))
    p = plotting.lines(ctx.plot_path("grad_std_relu"), {s: (layers, stats["relu", s]["w_grad_std"]) for s in SCHEMES},
                       "hidden layer", "std of dLoss/dW", "relu: weight-gradient std per layer at init", logy=True,
                       markers=True)
    d.image(p, "relu: per-layer weight-gradient std at init (log scale)")
    gw = {sc: stats["relu", sc]["w_grad_std"] for sc in SCHEMES}
    flat = max(max(v) / min(v) for v in gw.values())
    d.text("What to look at: the schemes sit at very different levels (layer 1: "
           + ", ".join(f"{sc} {v[0]:.1e}" for sc, v in gw.items())
           + f"), while within a scheme each line varies by at most {flat:.1f}x across layers"
           + (": the level is set by the gains of the whole network, so a bad init lowers every layer's "
              "gradient at once, not just the early ones. " if flat < 10 else ". ")
           + (f"N(0, 0.01²) at {max(gw['small']):.0e} is far below Adam's eps (1e-8), so even Adam's "
              "per-coordinate rescaling barely moves it." if max(gw["small"]) < 1e-8 else ""))
    spike = float(abs(hist["small"]).max())
    # a collapsed scheme is one off-scale spike at 0: keep its legend entry (and colour), draw no bars
    shown = {(sc if sc != "small" or spike > 0.05 else "small (spike at 0, not drawn)"):
             (v if sc != "small" or spike > 0.05 else v[:0]) for sc, v in hist.items()}
    p = plotting.histogram(ctx.plot_path("hist_tanh"), shown, "activation value (last hidden layer, tanh)",
                           title=f"tanh, layer {cfg.depth}, at init (same bins for every scheme)",
                           bins=np.linspace(-1, 1, 61))
    d.image(p, "Histogram of the last hidden layer's tanh activations at init, per scheme, on shared bins"
               + ("" if "small" in shown else "; N(0, 0.01²) is not drawn: its values form a single spike at 0"))
    sat = float((abs(hist["kaiming"]) > 0.9).mean())
    d.text(f"What to look at: Kaiming (gain 2 for tanh) spreads the outputs over [-1, 1], {sat:.0%} of them beyond "
           f"|0.9| where tanh' < 0.19 (saturated); Xavier and μP make a bell around 0 (std {hist['xavier'].std():.2f} "
           f"and {hist['mup'].std():.2f}), their hidden layers sharing one rule. "
           + (f"N(0, 0.01²) would be a spike: every value is within {spike:.0e} of 0." if "small" not in shown
              else f"N(0, 0.01²) reaches {spike:.2f} at most."))

    d.section("Before and after training (relu, no LayerNorm)")
    rows = []
    for s in SCHEMES:
        torch.manual_seed(ctx.seed)
        model = new(s)
        loss = fit(model, cfg, train_data, ctx.seed, ctx.tracker.scoped(f"init_{s}"))
        after, _ = layer_stats(model, xs, ys)
        a, b = stats["relu", s], after
        rows.append({"init": s, "act std L1 init": a["act_std"][0], "act std L_last init": a["act_std"][-1],
                     "act mean L_last init": a["act_mean"][-1], "act std L_last trained": b["act_std"][-1],
                     "dW std L1 init": a["w_grad_std"][0], "dW std L1 trained": b["w_grad_std"][0],
                     "final loss": loss})
        m[f"act_std_ratio_{s}"] = a["act_std"][-1] / a["act_std"][0]
    d.table(rows)
    by = {r["init"]: r for r in rows}
    win = min(by, key=lambda k: by[k]["final loss"])
    chance = math.log(cfg.n_classes)
    stuck = [k for k, r in by.items() if r["final loss"] > 0.95 * chance]
    mr = by["kaiming"]["act mean L_last init"] / by["kaiming"]["act std L_last init"]
    d.text(f"What to look at: after {cfg.steps} Adam steps {win} has the lowest loss ({by[win]['final loss']:.3f}); "
           f"chance for {cfg.n_classes} classes is ln {cfg.n_classes} = {chance:.3f}"
           + (f"; {', '.join(stuck)} ended above 95% of it, hardly better than a uniform guess." if stuck else ".")
           + "".join(f" {k}'s layer-1 gradient at init ({by[k]['dW std L1 init']:.0e}) is far below Adam's eps (1e-8), "
                     "so it cannot start learning." for k in stuck if by[k]["dW std L1 init"] < 1e-8)
           + f" The mean column is positive, {mr:.2f} x the std for Kaiming (a ReLU of a zero-mean Gaussian gives "
           "0.68): why E[x²], not Var(x), is what propagates.")

    d.section("Ablation grid: init x depth x LayerNorm (relu), final training loss (nats)")
    depths = [int(v) for v in cfg.depths.split(",")]
    grid, labels = [], []
    jobs = [(s, norm) for norm in (False, True) for s in SCHEMES]
    bar = progress(total=len(jobs) * len(depths), desc="grid")
    for s, norm in jobs:
        labels.append(s + (" + LN" if norm else ""))
        grid.append([])
        for D in depths:
            torch.manual_seed(ctx.seed)
            grid[-1].append(fit(new(s, depth=D, norm=norm), cfg, train_data, ctx.seed,
                                ctx.tracker.scoped(f"grid/{labels[-1].replace(' ', '')}_d{D}")))
            ctx.tracker.log(f"grid_loss/{labels[-1]}", grid[-1][-1], D)
            bar.update()
    bar.close()
    d.table([{"init": lab, **{f"depth {D}": v for D, v in zip(depths, row)}} for lab, row in zip(labels, grid)])
    n = len(SCHEMES)
    helps = [(i, j) for i in range(n) for j in range(len(depths)) if grid[n + i][j] < grid[i][j]]
    shallow = [j for j in range(len(depths)) if depths[j] < depths[-1]]
    near = sum(v > 0.95 * math.log(cfg.n_classes) for row in grid for v in row)
    helps_deep = sum(j == len(depths) - 1 for _, j in helps)
    d.text(f"What to look at: the last {n} rows add LayerNorm after every hidden layer; ln {cfg.n_classes} = "
           f"{math.log(cfg.n_classes):.3f} is chance, and {near} of {len(grid) * len(depths)} cells end above 95% of "
           f"it (hardly better than chance, or worse). LayerNorm lowers the loss in "
           f"{sum(j in shallow for _, j in helps)} of {n * len(shallow)} cells below depth {depths[-1]} "
           f"and in {helps_deep} of {n} at "
           f"depth {depths[-1]}.")
    p = plotting.heatmap(ctx.plot_path("grid"), grid, "depth (hidden layers)", "init", "final training loss",
                         "loss (nats)", xticks=depths, yticks=labels)
    d.image(p, "Final training loss per init, depth and LayerNorm")
    spread = lambda rows: max(r[-1] for r in rows) - min(r[-1] for r in rows)  # noqa: E731
    m["loss_spread_deepest_no_ln"], m["loss_spread_deepest_ln"] = spread(grid[:n]), spread(grid[n:])
    mean_no, mean_ln = (sum(r[-1] for r in rows) / n for rows in (grid[:n], grid[n:]))
    best = labels[min(range(len(grid)), key=lambda i: grid[i][-1])]
    d.text(f"What to look at: dark is low loss, yellow high. With ReLU at init, Kaiming keeps the "
           f"last/first activation std ratio at {m['act_std_ratio_kaiming']:.2f} while N(0, 0.01²) shrinks it to "
           f"{m['act_std_ratio_small']:.1e} and Xavier to {m['act_std_ratio_xavier']:.2e}. At depth {depths[-1]} the "
           f"spread of final loss across inits is {m['loss_spread_deepest_no_ln']:.3f} nats without LayerNorm and "
           f"{m['loss_spread_deepest_ln']:.3f} with it "
           f"({'smaller' if m['loss_spread_deepest_ln'] < m['loss_spread_deepest_no_ln'] else 'not smaller'}); "
           f"the mean final loss there is {mean_no:.3f} without and {mean_ln:.3f} with LayerNorm, and the best cell "
           f"is {best} ({min(r[-1] for r in grid):.3f})."
           + (" A smaller spread at a higher mean is uniform failure, not robustness: LayerNorm fixes the forward "
              "scale, not trainability at this depth." if m["loss_spread_deepest_ln"] < m["loss_spread_deepest_no_ln"]
              and mean_ln > mean_no else ""))
    m["best_at_max_depth"] = best
    for lab, row in zip(labels, grid):
        m[f"loss_{lab.replace(' + ', '_')}_d{depths[-1]}"] = round(row[-1], 4)
    return {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in m.items()}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
