"""Day 18: the cross-entropy gradient dL/dz = (softmax(z) - onehot(y)) / B, checked two ways.

1. The closed form (common/lab/jacobians.py: cross_entropy_grad) against F.cross_entropy's backward for
   several batch / vocabulary sizes, with and without label smoothing (float64).
2. Central differences (common/lab/numerics.py) against the closed form over a sweep of steps eps, in
   float64 and float32: the truncation (eps^2) / round-off (u / eps) V, the best eps per dtype
   measured and compared with u^(1/3), and a bound on the V built from the exact third derivative.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from common.lab import jacobians as jac
from common.lab import numerics as nm
from common.run import plotting, runner
from common.run.tracking import progress

DAY = 18
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class Config:
    shapes: str = "1x10,8x100,32x1000,16x50257"  # BxK for manual vs autograd (50257: GPT-2's vocabulary)
    smoothings: str = "0.0,0.1"                  # label smoothing values compared
    sweep_batch: int = 8          # the eps sweep: logits (sweep_batch, sweep_classes)
    sweep_classes: int = 16
    logit_scale: float = 2.0
    eps_max: float = 1e-1         # eps_max down to eps_min, log-spaced
    eps_min: float = 1e-12
    eps_per_decade: int = 3


PRESETS = {"nano": dict(shapes="2x5,4x50", sweep_batch=2, sweep_classes=5, eps_per_decade=1),
           "cpu": {}, "gpu": {}}  # a Python loop of tiny float64 evaluations: the CPU is the device


def error_bound(z, y, eps: float, u: float) -> torch.Tensor:
    """Bound on the |error| per element of the central difference: eps^2 |L'''|/6 + u |L| / eps.

    Along coordinate (b, i) the loss is L(t) = (1/B)(logsumexp(z_b + t e_i) - z_by - t[i == y]) + const,
    whose derivatives in t are p', p'' of the softmax: L''' = p_i (1 - p_i)(1 - 2 p_i) / B.
    """
    # >>> exercise day18.error_bound: eps^2 |L'''| / 6 + u |L| / eps per logit, with L''' = p (1 - p)(1 - 2p) / B
    p, batch = torch.softmax(z, -1), z.shape[0]
    third = p * (1 - p) * (1 - 2 * p) / batch
    return eps ** 2 * third.abs() / 6 + u * float(F.cross_entropy(z, y)) / eps
    # <<< exercise day18.error_bound


def main(cfg: Config, ctx) -> dict:
    gen = torch.Generator().manual_seed(ctx.seed)
    rows = []
    for shape in progress(cfg.shapes.split(","), desc="shapes"):
        b, k = (int(v) for v in shape.split("x"))
        z = cfg.logit_scale * torch.randn(b, k, generator=gen, dtype=torch.float64)
        y = torch.randint(0, k, (b,), generator=gen)
        for a in (float(s) for s in cfg.smoothings.split(",")):
            zl = z.clone().requires_grad_()
            F.cross_entropy(zl, y, label_smoothing=a).backward()
            manual = jac.cross_entropy_grad(z, y, "mean", a)
            rows.append({"B": b, "K": k, "label smoothing": a, "max |grad|": zl.grad.abs().max().item(),
                         "max abs err": (manual - zl.grad).abs().max().item(),
                         "max |row sum| of B*grad": (b * manual).sum(-1).abs().max().item()})
    ce_err = max(r["max abs err"] for r in rows)
    ctx.deliverable.section("Closed form vs F.cross_entropy backward (float64, mean over the batch)")
    ctx.deliverable.text("dL/dz = (softmax(z) - q) / B with q = (1 - a) onehot(y) + a / K; each row of B * grad sums "
                         "to 0 because both softmax(z) and q sum to 1.")
    ctx.deliverable.table(rows, floatfmt=".3g")
    bounded = all(r["max |grad|"] <= 1 / r["B"] + 1e-12 for r in rows)
    ctx.deliverable.text(
        f"What to look at: the closed form matches autograd to {ce_err:.0e} in every shape, with and without "
        f"smoothing: float64 rounding. The row sums are at most "
        f"{max(r['max |row sum| of B*grad'] for r in rows):.0e}, zero up to rounding, so the gradient never moves "
        "a row's mean logit. "
        + ("Every max |grad| is at most 1/B (1/B times |p - q| < 1): the gradient is bounded whatever the logits."
           if bounded else "Some max |grad| exceeds 1/B: check the mean over the batch."))

    z64 = cfg.logit_scale * torch.randn(cfg.sweep_batch, cfg.sweep_classes, generator=gen, dtype=torch.float64)
    y = torch.randint(0, cfg.sweep_classes, (cfg.sweep_batch,), generator=gen)
    exact = jac.cross_entropy_grad(z64, y)
    tiny = 1e-3 * exact.abs().max().item()  # ignore the ill-conditioned tail of ~0 gradients
    n_eps = round(np.log10(cfg.eps_max / cfg.eps_min)) * cfg.eps_per_decade + 1
    epss = [float(e) for e in np.logspace(np.log10(cfg.eps_max), np.log10(cfg.eps_min), n_eps)]
    med, mx, pred = {dt: {} for dt in DTYPES}, {dt: {} for dt in DTYPES}, {dt: {} for dt in DTYPES}
    for i, (dt, eps) in enumerate(progress([(d, e) for d in DTYPES for e in epss], desc="eps sweep")):
        z = z64.to(DTYPES[dt])
        num = nm.numerical_grad(lambda t: F.cross_entropy(t, y), z, eps)
        med[dt][eps] = nm.relative_error(num, exact, tiny).median().item()
        mx[dt][eps] = (num - exact).abs().max().item()
        u = torch.finfo(DTYPES[dt]).eps
        pred[dt][eps] = (error_bound(z64, y, eps, u) / exact.abs().clamp_min(tiny)).median().item()
        ctx.tracker.log(f"median_rel_err/{dt}", med[dt][eps], i % n_eps)
    best = {dt: nm.best_eps(med[dt]) for dt in DTYPES}

    ctx.deliverable.section("Central differences vs the closed form: the eps sweep")
    ctx.deliverable.text(f"Logits {cfg.sweep_batch}x{cfg.sweep_classes}, L = mean cross-entropy computed in the "
                         "dtype, central differences one logit at a time; median relative error (floor "
                         f"{tiny:.2g}), max absolute error, and the bound eps^2 |L'''| / 6 + u |L| / eps.")
    ctx.deliverable.table([{"eps": e, **{f"{dt} median rel err": med[dt][e] for dt in DTYPES},
                            **{f"{dt} bound": pred[dt][e] for dt in DTYPES},
                            **{f"{dt} max abs err": mx[dt][e] for dt in DTYPES}} for e in epss], floatfmt=".3g")
    p = plotting.lines(ctx.plot_path("error_vs_eps"),
                       {**{f"{dt} measured": (epss, [med[dt][e] for e in epss]) for dt in DTYPES},
                        **{f"{dt} bound": (epss, [pred[dt][e] for e in epss]) for dt in DTYPES}},
                       "step eps (logit units)", "median relative error of dL/dz (dimensionless)",
                       "central-difference error vs step: truncation (slope +2) vs round-off (slope -1)",
                       logx=True, logy=True, logx_base=10, markers=True)
    ones = [e for e in epss if med["float32"][e] == 1.0]
    trunc_fit = pred["float64"][epss[0]] / med["float64"][epss[0]]
    ctx.deliverable.text(
        "What to look at: read a median column from the top: the error first falls as eps shrinks (truncation), "
        f"bottoms out at eps = {best['float64']:.2g} in float64 and {best['float32']:.2g} in float32, then rises "
        f"again (round-off). At eps = {epss[0]:g} the float64 bound is {trunc_fit:.2f}x the measurement"
        + (": the truncation term is nearly exact. " if 0.8 < trunc_fit < 1.25 else ". ")
        + (f"float32 sits at exactly 1 from eps = {ones[0]:.2g} down: the change of the loss over the step is "
           f"below the spacing of float32 numbers near L = {float(F.cross_entropy(z64, y)):.2f} (about "
           f"{torch.finfo(torch.float32).eps * float(F.cross_entropy(z64, y)):.0e}), so both evaluations round to "
           "the same number and the estimate is 0." if ones else ""))

    def slope(dt, lo, hi):  # least-squares slope of log(error) on log(eps) over lo <= eps <= hi
        pts = [(np.log10(e), np.log10(med[dt][e])) for e in epss if lo <= e <= hi and med[dt][e] > 0]
        return float(np.polyfit(*zip(*pts), 1)[0]) if len(pts) >= 2 else None

    right = slope("float64", 10 * best["float64"], epss[0])
    left = slope("float64", epss[-1], best["float64"] / 10)
    ctx.deliverable.image(p, "left branch: round-off ~ u/eps; right branch: truncation ~ eps^2; the bound counts "
                      "worst-case rounding of both evaluations")
    ctx.deliverable.text(
        "What to look at: on log-log axes each error source is a straight line and the best step is the bottom of "
        "the V. "
        + (f"Fitted float64 slopes: {right:+.2f} on the right (theory +2) and {left:+.2f} on the left (theory -1). "
           if right is not None and left is not None else "")
        + ("The float64 bound hugs the measured truncation branch; " if 0.8 < trunc_fit < 1.25 else "")
        + "the bounds lie above the round-off branches, since real rounding errors partly cancel"
        + ("; float32's flat line at 1 is the step lost to rounding." if ones else "."))

    p64 = torch.softmax(z64, -1)
    third = (p64 * (1 - p64) * (1 - 2 * p64)).abs() / cfg.sweep_batch  # |L'''| per element
    loss = float(F.cross_entropy(z64, y))
    best_rows, notes, metrics = [], [], {"ce_grad_max_err": ce_err}
    for dt in DTYPES:
        u, cube = torch.finfo(DTYPES[dt]).eps, nm.suggested_eps(DTYPES[dt])
        h_star = (3 * u * loss / third).pow(1 / 3).median().item()  # the bound's optimum, median over elements
        err = med[dt][best[dt]]
        best_rows.append({"dtype": dt, "u": u, "best eps (measured)": best[dt], "u^(1/3)": cube,
                          "measured / u^(1/3)": best[dt] / cube, "h* = (3u|L|/|L'''|)^(1/3)": h_star,
                          "measured / h*": best[dt] / h_star, "median rel err at best": err,
                          "u^(2/3)": u ** (2 / 3), "err / u^(2/3)": err / u ** (2 / 3)})
        notes.append(f"- {dt}: the best step is {best[dt] / cube:.2g}x u^(1/3) and {best[dt] / h_star:.2g}x the "
                     f"bound's optimum h*; h* / u^(1/3) = (3|L|/|L'''|)^(1/3) = {h_star / cube:.2g} because "
                     f"|L| = {loss:.2f} while the median |L'''| is {third.median().item():.2g}. Its error is "
                     f"{err / u ** (2 / 3):.2g}x u^(2/3).")
        metrics |= {f"best_eps_{dt}": best[dt], f"min_median_rel_err_{dt}": err, f"h_star_{dt}": h_star}
    ctx.deliverable.section("Best step per dtype")
    ctx.deliverable.table(best_rows, floatfmt=".3g")
    between = all(r["u^(1/3)"] < r["best eps (measured)"] < r["h* = (3u|L|/|L'''|)^(1/3)"] for r in best_rows)
    ctx.deliverable.text(
        "What to look at: the two ratio columns place the measured best step against the textbook rule u^(1/3) and "
        "against the bound's optimum h*. "
        + ("In both dtypes it lands between them: above u^(1/3) because cross-entropy's |L| is large and its |L'''| "
           "small, below h* because the round-off bound is pessimistic." if between else
           "It does not land between them in every dtype: see the bullets.")
        + " The error at the best step, over u^(2/3), says how far the textbook error estimate is off.")
    ratio = med["float32"][best["float32"]] / med["float64"][best["float64"]]
    over = pred["float64"][epss[-1]] / med["float64"][epss[-1]]
    notes.append(f"- float32's best error is {ratio:.3g}x float64's. At eps = {epss[-1]:.2g} the float64 round-off "
                 f"bound is {over:.2g}x the measured error: rounding errors are random and partly cancel.")
    ctx.deliverable.text("\n".join(notes))
    return metrics


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
