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
    dead = {fn: max((e for e in epss if med[fn, "float32"][e] >= 0.99), default=None) for fn in res["funcs"]}
    dead = {fn: e for fn, e in dead.items() if e is not None}
    d.text("What to look at: read a *median* column downwards. As eps shrinks the error first falls (truncation, "
           "∝ eps²), reaches a minimum, then rises again (round-off, ∝ 1/eps); the minima are at eps "
           + ", ".join(f"{best[k]:.1e} ({k[0]} {k[1]})" for k in keys) + "."
           + (" The float32 medians reach 1, every element wrong, at eps ≤ "
              + " and ≤ ".join(f"{e:.1e} ({fn})" for fn, e in dead.items())
              + ": the step is lost in float32 rounding (x ± eps rounds back to x, or f cannot see the change), so "
              "the difference is 0." if dead else ""))
    d.image(vplot, "median relative error vs step: the V of truncation and round-off")
    d.text(v_text(epss, med, best, keys))
    d.section("At the best step")
    d.table(res["best_rows"], floatfmt=".3g")
    ratios = [r["worst element: abs(g) / rms(g)"] for r in res["best_rows"]]
    d.text(f"What to look at: the last column. At the worst element the gradient is only {min(ratios):.1e} to "
           f"{max(ratios):.1e} times the typical (rms) gradient"
           + (": the largest relative errors sit at near-zeros of the gradient, where the relative error blows up "
              "although the absolute error is as small as anywhere." if max(ratios) < 0.1 else
              ", so the largest errors are not explained by a near-zero gradient alone."))
    for r in res["best_rows"]:
        frac = r["fraction above"]
        d.text(f"- {r['function']} {r['dtype']}: best eps {r['best eps (measured)']:.1e} is "
               f"{r['best eps (measured)'] / r['u^(1/3)']:.2g}x the rule of thumb u^(1/3); "
               + ("all elements pass" if frac == 0 else f"{frac:.2%} of the elements fail")
               + f" the {r['threshold']:g} threshold.")
    u_gap = 2 / 3 * np.log10(torch.finfo(torch.float32).eps / torch.finfo(torch.float64).eps)
    for fn, p in hists.items():
        d.image(p, f"{fn}: relative errors at the best eps, float64 vs float32")
        c = {dt: checks[fn, dt, best[fn, dt]] for dt in DTYPES}
        m = {dt: c[dt].stats(1.0)["median"] for dt in DTYPES}
        out = {dt: int((c[dt].rel_err > nm.THRESHOLDS[DTYPES[dt]]).sum()) for dt in DTYPES}
        d.text(f"What to look at: the float64 bars (median {m['float64']:.1e}) sit about "
               f"{np.log10(m['float32'] / m['float64']):.1f} decades left of the float32 bars (median "
               f"{m['float32']:.1e}); the u^(2/3) law of the notes predicts {u_gap:.1f} decades. Right of its own "
               "dashed threshold: "
               + ", ".join(f"{out[dt]} of {c[dt].rel_err.numel()} {dt} elements" for dt in DTYPES) + ".")
    d.section("Directional (fast) check")
    d.table(res["fast_rows"], floatfmt=".3g")
    fr = res["fast_rows"]
    speed = [r["elementwise (ms)"] / r["directional (ms)"] for r in fr]
    ok = all(r["directional max rel err"] <= nm.THRESHOLDS[DTYPES[r["dtype"]]] for r in fr)
    flagged = [f"{r['function']} {r['dtype']}" for r in res["best_rows"] if r["fraction above"] > 0]
    d.text(f"What to look at: the directional check calls f {fr[0]['f calls, directional']} times instead of "
           f"{fr[0]['f calls, elementwise']} and was {min(speed):.1f}–{max(speed):.1f}× as fast here; its max error "
           + ("stays under each dtype's threshold in every row, so it accepts these correct gradients"
              + (f", even {', '.join(flagged)}, where the elementwise check flags a few near-zero elements (a random "
                 "direction mixes them with larger ones)." if flagged else ".")
              if ok else "passes a threshold in some row: read that row against the full check above."))
    d.section("A hand-written backward, and two planted bugs")
    d.table(res["bug_rows"], floatfmt=".3g")
    good, bugs = res["bug_rows"][0], res["bug_rows"][1:]
    caught = all(r["verdict at 1e-7"] == "FAIL" for r in bugs)
    d.text(f"What to look at: the correct backward matches float64 finite differences to {good['max rel err']:.1e} "
           f"({good['verdict at 1e-7']}); dropping a term gives a max error of at least "
           f"{min(r['max rel err'] for r in bugs):.2g}"
           + (", so both planted bugs are caught, and the cheap directional column (at least "
              f"{min(r['directional max rel err'] for r in bugs):.2g}) catches them too." if caught else
              ": a bug marked pass here would slip through this check."))
    d.section("torch.autograd.gradcheck")
    d.table(res["gc_rows"])
    verdict = {dt: {r["gradcheck"] for r in res["gc_rows"] if r["dtype"] == dt} for dt in DTYPES}
    e6 = min(epss, key=lambda e: abs(np.log10(e / 1e-6)))
    d.text("What to look at: gradcheck " + " and ".join(
        f"{'passes every' if v == {'pass'} else 'fails every' if v == {'fail'} else 'is mixed on the'} {dt} row"
        + ("" if v == {"pass"} or v == {"fail"} else "s") for dt, v in verdict.items())
        + f". Its default step (1e-6) and tolerances (atol 1e-5, rtol 1e-3) are set for float64: in the sweep "
        f"above, a float32 step of {e6:.0e} gives median relative errors of "
        + " and ".join(f"{med[fn, 'float32'][e6]:.2g} ({fn})" for fn in res["funcs"]) + ".")
    return metrics


def v_text(epss, med, best, keys) -> str:
    """'What to look at' for the V plot: the measured slopes of the float64 arms against the theory's 2 and -1."""
    arms = []
    for fn, dt in keys:
        b, lo, hi = best[fn, dt], min(epss), max(epss)
        if dt != "float64" or not (lo * 10 <= b <= hi / 10):  # each arm needs a decade to give a slope
            continue
        right = np.log10(med[fn, dt][hi] / med[fn, dt][b]) / np.log10(hi / b)
        left = np.log10(med[fn, dt][lo] / med[fn, dt][b]) / np.log10(lo / b)
        arms.append(f"{fn} {right:.2f} and {left:.2f}")
    larger = all(best[fn, "float32"] > best[fn, "float64"] for fn, _ in keys)
    return ("What to look at: " + (f"the float64 curves are the V of the notes: right of the minimum and left of it "
            f"they have slopes {'; '.join(arms)} (theory: 2 for truncation, −1 for round-off). " if arms else
            "at this sweep's few steps the arms are too short for a slope. ")
            + ("The float32 curves have the same shape, shifted up and to the right (larger best steps, as u^(1/3) "
               "is larger), and flat at 1 where the step is lost in rounding." if larger else
               "The float32 curves sit higher: float32 round-off is about 10^9 times float64's."))


def main(cfg: Config, ctx) -> dict:
    """Measure, then narrate: run the checks, then write the deliverable from their results."""
    return report(measure(cfg, ctx), cfg, ctx)


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
