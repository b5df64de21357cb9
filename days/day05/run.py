"""Day 5: finite-difference gradient checks of LayerNorm and GELU, and the step size that makes them work.

The checking code is common/lab/numerics.py; the functions checked are the from-scratch references in
common/nn/layers.py. This day sweeps the step eps in float64 and float32, finds the best step from the
errors, shows the truncation / round-off V, checks a hand-written LayerNorm backward (and two
broken ones), and runs torch.autograd.gradcheck as the reference verdict.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from common.lab import bench
from common.lab import numerics as nm
from common.nn.layers import gelu_reference, layer_norm_reference
from common.run import plotting, runner
from common.run.tracking import progress

DAY = 5


@dataclass
class Config:
    rows: int = 16  # input x is (rows, dim); LayerNorm normalises each row over dim
    dim: int = 64
    eps_max: float = 1e-1  # the sweep: eps_max down to eps_min, log-spaced
    eps_min: float = 1e-10
    eps_per_decade: int = 2
    n_dirs: int = 16  # random directions of the directional (fast) check


# The check is a Python loop over tiny evaluations in float64: it runs on the CPU, a GPU adds nothing.
PRESETS = {"nano": dict(rows=4, dim=8, eps_per_decade=1, n_dirs=4), "cpu": {}, "gpu": {}}
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def ln_backward(x, w, dy, eps=1e-5, drop=None):
    """dL/dx of y = LN(x) * w (the notes' derivation); `drop` removes one term to plant a bug."""
    # >>> exercise day05.ln_backward: dL/dx = s (g - mean(g) - xhat mean(g xhat)), g = dy w; drop= omits one term
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    s = torch.rsqrt(var + eps)  # 1 / sigma, (rows, 1)
    xhat, g = (x - mu) * s, dy * w
    mean_term = 0 if drop == "mean" else g.mean(-1, keepdim=True)
    var_term = 0 if drop == "variance" else xhat * (g * xhat).mean(-1, keepdim=True)
    return s * (g - mean_term - var_term)
    # <<< exercise day05.ln_backward


def measure(cfg: Config, ctx) -> dict:
    """Run every check, in order: the eps sweep, the fast check, the hand-written backward, gradcheck."""
    gen = torch.Generator().manual_seed(ctx.seed)
    x64 = torch.randn(cfg.rows, cfg.dim, generator=gen, dtype=torch.float64)
    w64, b64 = torch.randn(cfg.dim, generator=gen, dtype=torch.float64), torch.randn(cfg.dim, generator=gen,
                                                                                     dtype=torch.float64)
    funcs = {"layer_norm": lambda t: layer_norm_reference(t, w64.to(t.dtype), b64.to(t.dtype)),
             "gelu": gelu_reference}
    res = sweep_eps(cfg, ctx, x64, funcs)
    res["fast_rows"] = directional_rows(cfg, ctx, x64, res)
    res["bug_rows"] = backward_rows(cfg, ctx, x64, w64, res)
    res["gc_rows"] = gradcheck_rows(x64, w64, b64)
    return res


def sweep_eps(cfg: Config, ctx, x64, funcs) -> dict:
    """Gradient errors of each function and dtype at every step eps; the best eps of each, and their tables."""
    n_eps = round(np.log10(cfg.eps_max / cfg.eps_min)) * cfg.eps_per_decade + 1
    epss = [float(e) for e in np.logspace(np.log10(cfg.eps_max), np.log10(cfg.eps_min), n_eps)]
    checks, fs = {}, {}
    for i, (fn, dt, eps) in enumerate(progress([(f, d, e) for f in funcs for d in DTYPES for e in epss], desc="sweep")):
        x = x64.to(DTYPES[dt])
        fs[fn, dt] = fs.get((fn, dt)) or nm.projected(funcs[fn], x, seed=ctx.seed + 1)
        checks[fn, dt, eps] = c = nm.gradient_errors(fs[fn, dt], x, eps)
        ctx.tracker.log(f"median_rel_err/{fn}_{dt}", c.stats(1.0)["median"], i % n_eps)
    keys = [(fn, dt) for fn in funcs for dt in DTYPES]
    med = {k: {e: checks[(*k, e)].stats(1.0)["median"] for e in epss} for k in keys}
    best = {k: nm.best_eps(med[k]) for k in keys}

    sweep = [{"eps": e, **{f"{fn} {dt} median": med[fn, dt][e] for fn, dt in keys},
              **{f"{fn} {dt} > thr": checks[fn, dt, e].stats(nm.THRESHOLDS[DTYPES[dt]])["frac_above"]
                 for fn, dt in keys}} for e in epss]
    best_rows = []
    for fn, dt in keys:
        c, thr = checks[fn, dt, best[fn, dt]], nm.THRESHOLDS[DTYPES[dt]]
        s, worst = c.stats(thr), int(c.rel_err.argmax())
        best_rows.append({"function": fn, "dtype": dt, "best eps (measured)": best[fn, dt],
                          "u^(1/3)": nm.suggested_eps(DTYPES[dt]), "median rel err": s["median"],
                          "max rel err": s["max"], "threshold": thr, "fraction above": s["frac_above"],
                          "worst element: abs(g) / rms(g)": c.analytic.flatten()[worst].abs().item()
                          / c.analytic.pow(2).mean().sqrt().item()})
    return {"funcs": list(funcs), "epss": epss, "checks": checks, "fs": fs, "keys": keys, "med": med, "best": best,
            "sweep": sweep, "best_rows": best_rows}


def directional_rows(cfg: Config, ctx, x64, res: dict) -> list[dict]:
    """The directional (fast) check at each best eps: its error, f-call counts and times against elementwise."""
    fast_rows = []
    for fn, dt in res["keys"]:
        x, f, e = x64.to(DTYPES[dt]), res["fs"][fn, dt], res["best"][fn, dt]
        d_err = nm.directional_errors(f, x, e, cfg.n_dirs, seed=ctx.seed + 2)
        t_el = bench.time_fn(lambda f=f, x=x, e=e: nm.numerical_grad(f, x, e), warmup=0, repeats=2).median
        t_dir = bench.time_fn(lambda f=f, x=x, e=e: nm.directional_errors(f, x, e, cfg.n_dirs), warmup=0,
                              repeats=2).median
        fast_rows.append({"function": fn, "dtype": dt, "f calls, elementwise": 2 * x.numel(),
                          "f calls, directional": 2 * cfg.n_dirs, "directional max rel err": d_err.max().item(),
                          "elementwise (ms)": t_el * 1e3, "directional (ms)": t_dir * 1e3})
    return fast_rows


def backward_rows(cfg: Config, ctx, x64, w64, res: dict) -> list[dict]:
    """The hand-written LayerNorm backward, correct and with a term dropped, against float64 finite differences."""
    best, checks = res["best"], res["checks"]
    num = checks["layer_norm", "float64", best["layer_norm", "float64"]].numeric
    bug_rows = []
    f, e = res["fs"]["layer_norm", "float64"], best["layer_norm", "float64"]
    for drop in (None, "mean", "variance"):
        manual = ln_backward(x64, w64, f.r, drop=drop)
        err = nm.relative_error(manual, num)
        bug_rows.append({"hand-written LayerNorm backward": "correct" if drop is None else f"{drop} term dropped",
                         "median rel err": err.median().item(), "max rel err": err.max().item(),
                         "directional max rel err": nm.directional_errors(f, x64, e, cfg.n_dirs, manual,
                                                                          seed=ctx.seed + 2).max().item(),
                         "verdict at 1e-7": "pass" if err.max() <= 1e-7 else "FAIL"})
    return bug_rows


def gradcheck_rows(x64, w64, b64) -> list[dict]:
    """torch.autograd.gradcheck's verdict on each function in each dtype."""
    gc_rows = []
    for dt in DTYPES:
        xs = [t.to(DTYPES[dt]).clone().requires_grad_() for t in (x64[:4], w64, b64)]
        with warnings.catch_warnings():  # gradcheck warns that float32 inputs are not double precision
            warnings.simplefilter("ignore")
            for name, fn, args in [("layer_norm_reference (x, w, b)", layer_norm_reference, xs),
                                   ("gelu_reference, exact", gelu_reference, xs[:1]),
                                   ("gelu_reference, tanh", lambda t: gelu_reference(t, "tanh"), xs[:1])]:
                ok = torch.autograd.gradcheck(fn, tuple(args), raise_exception=False)
                gc_rows.append({"function": name, "dtype": dt, "gradcheck": "pass" if ok else "fail"})
    return gc_rows


def report(res: dict, cfg: Config, ctx) -> dict:
    """Draw the plots and write the deliverable from `measure`'s results; returns the metrics."""
    epss, med, keys, best, checks = res["epss"], res["med"], res["keys"], res["best"], res["checks"]
    metrics = {}
    for r in res["best_rows"]:
        fn, dt = r["function"], r["dtype"]
        metrics |= {f"{fn}_{dt}_best_eps": best[fn, dt], f"{fn}_{dt}_median_rel_err": r["median rel err"],
                    f"{fn}_{dt}_frac_above": r["fraction above"]}
    metrics["manual_ln_backward_max_rel_err"] = res["bug_rows"][0]["max rel err"]
    metrics["gradcheck_float64_all_pass"] = "yes" if all(
        r["gradcheck"] == "pass" for r in res["gc_rows"] if r["dtype"] == "float64") else "no"

    vplot = plotting.lines(ctx.plot_path("error_vs_eps"),
                           {f"{fn} {dt}": (np.log10(epss), [med[fn, dt][e] for e in epss]) for fn, dt in keys},
                           "log10 of the step eps", "median relative error (autograd vs central difference)",
                           "truncation (right, slope 2) vs round-off (left, slope -1)", logy=True, markers=True)
    hists = {fn: plotting.histogram(
        ctx.plot_path(f"grad_error_hist_{fn}"),
        {f"{dt} (eps={best[fn, dt]:.1e})": checks[fn, dt, best[fn, dt]].rel_err.numpy() for dt in DTYPES},
        "relative error per gradient element", "elements", f"{fn}: autograd vs finite differences at the best eps",
        logx=True, vlines={f"{dt} threshold": nm.THRESHOLDS[DTYPES[dt]] for dt in DTYPES}) for fn in res["funcs"]}

    d = ctx.deliverable
    d.section("The eps sweep")
    d.text(f"On the CPU whatever the device (a loop of tiny float64 calls). x is ({cfg.rows}, {cfg.dim}) ~ N(0, 1); "
           "each function is made scalar as sum(r * f(x)) with a fixed "
           "random r (summed in float64), so the gradient checked is the vector-Jacobian product backward computes. "
           "Columns: median relative error, and the fraction of elements above the dtype's threshold "
           f"({', '.join(f'{k} {nm.THRESHOLDS[v]:g}' for k, v in DTYPES.items())}).")
    d.table(res["sweep"], floatfmt=".2g")
    d.image(vplot, "median relative error vs step: the V of truncation and round-off")
    d.section("At the best step")
    d.table(res["best_rows"], floatfmt=".3g")
    for r in res["best_rows"]:
        frac = r["fraction above"]
        d.text(f"- {r['function']} {r['dtype']}: best eps {r['best eps (measured)']:.1e} is "
               f"{r['best eps (measured)'] / r['u^(1/3)']:.2g}x the rule of thumb u^(1/3); "
               + ("all elements pass" if frac == 0 else f"{frac:.2%} of the elements fail")
               + f" the {r['threshold']:g} threshold.")
    for fn, p in hists.items():
        d.image(p, f"{fn}: relative errors at the best eps, float64 vs float32")
    d.section("Directional (fast) check")
    d.table(res["fast_rows"], floatfmt=".3g")
    d.section("A hand-written backward, and two planted bugs")
    d.table(res["bug_rows"], floatfmt=".3g")
    d.section("torch.autograd.gradcheck")
    d.table(res["gc_rows"])
    return metrics


def main(cfg: Config, ctx) -> dict:
    """Measure, then narrate: run the checks, then write the deliverable from their results."""
    return report(measure(cfg, ctx), cfg, ctx)


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
