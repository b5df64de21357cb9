"""Day 11: hand-derived Jacobians of softmax, LayerNorm and GELU against autograd, and their structure.

The closed forms live in common/lab/jacobians.py. This day builds the full n x n matrices for several n
in float64, compares them with torch.autograd.functional.jacobian, checks the structure the notes
derive (softmax: symmetric, rows sum to 0, PSD, rank n - 1, eigenvalues in [0, max p]; LayerNorm:
J 1 = 0 and J xh = s eps / (var + eps) w xh), prints a pass/fail table and plots two Jacobians.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

from common.lab import jacobians as jac
from common.nn.layers import gelu_reference
from common.run import plotting, runner
from common.run.tracking import progress

DAY = 11
F64 = torch.float64


@dataclass
class Config:
    sizes: str = "4,16,64,256"  # vector lengths n; each case builds n x n Jacobians
    logit_scale: float = 3.0    # z ~ scale * N(0, 1): larger -> peakier softmax
    ln_eps: float = 1e-5
    tol: float = 1e-12          # float64 pass threshold on max |manual - autograd| and on structure checks
    plot_n: int = 16            # size of the plotted Jacobians


PRESETS = {"nano": dict(sizes="4,16", plot_n=8), "cpu": {}, "gpu": {}}  # float64 math: the CPU is the device


def verdict(ok) -> str:
    return "pass" if bool(ok) else "FAIL"


def structure(z: torch.Tensor, tol: float) -> dict:
    """The softmax-Jacobian properties of the notes, measured on one vector z."""
    p, j = torch.softmax(z, -1), jac.softmax_jacobian(z)
    ev = torch.linalg.eigvalsh(j)
    n = z.numel()
    rank = int(torch.linalg.matrix_rank(j, hermitian=True))
    return {"n": n, "max |J - J^T|": (j - j.T).abs().max().item(), "max |row sum|": j.sum(-1).abs().max().item(),
            "min eigenvalue": ev.min().item(), "max eigenvalue": ev.max().item(), "max p": p.max().item(),
            "rank": rank, "pass": verdict((j - j.T).abs().max() <= tol and j.sum(-1).abs().max() <= tol
            and ev.min() >= -tol and ev.max() <= p.max() + tol and rank == n - 1)}


def main(cfg: Config, ctx) -> dict:
    gen = torch.Generator().manual_seed(ctx.seed)
    sizes = [int(s) for s in cfg.sizes.split(",")]
    err_rows, struct_rows, ln_rows = [], [], []
    for step, n in enumerate(progress(sizes, desc="sizes")):
        z = cfg.logit_scale * torch.randn(n, generator=gen, dtype=F64)
        x = 2 * torch.randn(n, generator=gen, dtype=F64) + 0.5
        w = 1 + 0.5 * torch.randn(n, generator=gen, dtype=F64)
        cases = {
            "softmax": (jac.softmax_jacobian(z), jacobian(lambda t: torch.softmax(t, -1), z, vectorize=True)),
            "layer_norm": (jac.layer_norm_jacobian(x, w, cfg.ln_eps),
                           jacobian(lambda t, n=n, w=w: F.layer_norm(t, (n,), w, None, cfg.ln_eps), x,
                                    vectorize=True)),
            "gelu": (jac.gelu_jacobian(x), jacobian(gelu_reference, x, vectorize=True)),
        }
        for name, (manual, auto) in cases.items():
            err = (manual - auto).abs().max().item()
            err_rows.append({"function": name, "n": n, "max |J|": auto.abs().max().item(),
                             "max abs err": err, "pass": verdict(err <= cfg.tol)})
            ctx.tracker.log(f"max_abs_err/{name}", err, step)
        struct_rows.append(structure(z, cfg.tol))
        jl = cases["layer_norm"][0]
        mu, var = x.mean(), x.var(unbiased=False)
        s = (var + cfg.ln_eps).rsqrt()
        xh = (x - mu) * s
        predicted = s * cfg.ln_eps / (var + cfg.ln_eps) * w * xh
        ln_rows.append({"n": n, "max |J 1|": (jl @ torch.ones(n, dtype=F64)).abs().max().item(),
                        "max |J xh|": (jl @ xh).abs().max().item(),
                        "max |J xh - s eps/(var+eps) w xh|": (jl @ xh - predicted).abs().max().item(),
                        "pass": verdict((jl @ torch.ones(n, dtype=F64)).abs().max().item() <= cfg.tol
                                        and (jl @ xh - predicted).abs().max().item() <= cfg.tol)})

    ctx.deliverable.section("Manual Jacobians vs torch.autograd.functional.jacobian (float64, full matrices)")
    ctx.deliverable.table(err_rows, floatfmt=".3g")
    worst = max(err_rows, key=lambda r: r["max abs err"])
    eps64 = torch.finfo(F64).eps
    ctx.deliverable.text(
        f"What to look at: the largest gap between a hand-derived matrix and autograd is {worst['max abs err']:.2g} "
        f"({worst['function']}, n={worst['n']}), about {worst['max abs err'] / eps64:.1f} float64 epsilons "
        f"({eps64:.1e}) on entries of size up to {max(r['max |J|'] for r in err_rows):.2f}. "
        + ("That is rounding, not a formula error: every closed form is the exact Jacobian."
           if worst["max abs err"] <= cfg.tol else
           f"Some gap is above the {cfg.tol:g} tolerance: a closed form is wrong."))
    ctx.deliverable.section("Structure of the softmax Jacobian J = diag(p) - p p^T")
    ctx.deliverable.table(struct_rows, floatfmt=".3g")
    sym0 = all(r["max |J - J^T|"] == 0 for r in struct_rows)
    below = all(r["max eigenvalue"] <= r["max p"] + cfg.tol for r in struct_rows)
    rank_ok = all(r["rank"] == r["n"] - 1 for r in struct_rows)
    tiny = max(max(r["max |row sum|"], abs(r["min eigenvalue"])) for r in struct_rows)
    ctx.deliverable.text(
        "What to look at: "
        + ("J - J^T is exactly 0 because entry (i, j) is p_i p_j and float multiplication commutes; "
           if sym0 else
           f"J - J^T is at most {max(r['max |J - J^T|'] for r in struct_rows):.2g}, rounding; ")
        + f"row sums and the smallest eigenvalue are within {tiny:.1g} of 0, "
        "zero up to rounding (a tiny negative value is rounding too), so the vector of ones is the null "
        "direction and J is positive semi-definite. "
        + ("In every row the largest eigenvalue stays below max p and the rank is n - 1, as derived in the notes."
           if below and rank_ok else
           "Some row breaks the eigenvalue bound or the rank n - 1: see the pass column."))
    ctx.deliverable.section("Null space of the LayerNorm Jacobian")
    ctx.deliverable.text("A shift x + c1 leaves LayerNorm unchanged, so J 1 = 0 exactly. A scaling x -> (1 + t) x "
                         "would too if eps were 0; with eps > 0 the notes predict J xh = s eps / (var + eps) w xh, "
                         "small but not zero.")
    ctx.deliverable.table(ln_rows, floatfmt=".3g")
    j1 = max(r["max |J 1|"] for r in ln_rows)
    jx = min(r["max |J xh|"] for r in ln_rows)
    miss = max(r["max |J xh - s eps/(var+eps) w xh|"] for r in ln_rows)
    ctx.deliverable.text(
        f"What to look at: |J 1| is at most {j1:.1g}, rounding, so a shift is invisible to LayerNorm; "
        f"|J xh| is at least {jx:.1g}, {'far above' if jx > 100 * j1 else 'not clearly above'} that rounding "
        f"level, yet the notes' formula predicts it to within {miss:.1g}. "
        f"So the scaling direction is almost, not exactly, a null vector: eps = {cfg.ln_eps:g} leaks through it.")

    zp = cfg.logit_scale * torch.randn(cfg.plot_n, generator=gen, dtype=F64)
    xp = 2 * torch.randn(cfg.plot_n, generator=gen, dtype=F64)
    js, jl = jac.softmax_jacobian(zp), jac.layer_norm_jacobian(xp, None, cfg.ln_eps)
    ps = plotting.heatmap(ctx.plot_path("softmax_jacobian"), js.numpy(), "input index j (logit z_j)",
                          "output index i (p_i)", f"softmax Jacobian dp_i/dz_j, n={cfg.plot_n}",
                          cbar="dp_i/dz_j (dimensionless)", cmap="RdBu_r", vmin=-js.abs().max(), vmax=js.abs().max())
    pl = plotting.heatmap(ctx.plot_path("layernorm_jacobian"), jl.numpy(), "input index j (x_j)",
                          "output index i (y_i)", f"LayerNorm Jacobian dy_i/dx_j, n={cfg.plot_n}, w=1",
                          cbar="dy_i/dx_j (1 / units of x)", cmap="RdBu_r", vmin=-jl.abs().max(), vmax=jl.abs().max())
    ctx.deliverable.section("Two Jacobians")
    ctx.deliverable.image(ps, "softmax Jacobian: positive diagonal p_i(1 - p_i), negative off-diagonal -p_i p_j")
    pp = torch.softmax(zp, -1)
    k = int(torch.diag(js).argmax())
    n_small = int((pp < 0.01).sum())
    ctx.deliverable.text(
        f"What to look at: entry (i, j) is -p_i p_j off the diagonal, so colour appears only where both "
        f"probabilities are sizeable. The darkest cell is the diagonal of index {k} (p = {pp[k].item():.2f}, "
        f"p(1 - p) = {js[k, k].item():.3f}); the {n_small} of {cfg.plot_n} indices with p < 0.01 are near-white "
        "rows and columns: a gradient hardly moves a probability the softmax has already squashed."
        + (f" Here the top p is {pp.max().item():.2f}, nearly one-hot, so the whole matrix is faint: the "
           "saturation that makes gradients vanish." if pp.max() > 0.9 else ""))
    ctx.deliverable.image(pl, "LayerNorm Jacobian: diagonal ~ s(1 - 1/n - xh_i^2/n), off-diagonal -s(1 + xh_i xh_j)/n")
    s_p = (xp.var(unbiased=False) + cfg.ln_eps).rsqrt().item()
    xhp = (xp - xp.mean()) * s_p
    far = int(xhp.abs().argmax())
    offd = (jl - torch.diag(torch.diag(jl))).abs()
    oi, oj = divmod(int(offd.argmax()), cfg.plot_n)
    ctx.deliverable.text(
        f"What to look at: the diagonal (mean {torch.diag(jl).mean().item():.2f}) "
        f"{'dominates' if torch.diag(jl).mean() > offd.max() else 'stands out'}: it is s = 1/std(x) "
        f"= {s_p:.2f} times (1 - 1/n - xh_i^2/n), so each output mostly follows its own input, rescaled. The input "
        f"farthest from the mean (index {far}, xh = {xhp[far].item():.2f}) has the weakest diagonal "
        f"({jl[far, far].item():.2f}): moving an outlier mostly changes the std. The largest off-diagonal entry, "
        f"({oi}, {oj}) = {jl[oi, oj].item():.2f}, links inputs with xh = {xhp[oi].item():.2f} and {xhp[oj].item():.2f}"
        + (": -s(1 + xh_i xh_j)/n is largest when both lie far out on the same side." if xhp[oi] * xhp[oj] > 0
           else "."))

    all_rows = err_rows + struct_rows + ln_rows
    n_pass = sum(r["pass"] == "pass" for r in all_rows)
    ctx.deliverable.section("Verdict")
    ctx.deliverable.text(f"{n_pass} of {len(all_rows)} checks pass at tolerance {cfg.tol:g}: "
                         f"{'all pass' if n_pass == len(all_rows) else 'SOME FAIL'}.")
    err = {name: max(r["max abs err"] for r in err_rows if r["function"] == name) for name in cases}
    return {"softmax_jac_max_err": err["softmax"], "layernorm_jac_max_err": err["layer_norm"],
            "gelu_jac_max_err": err["gelu"], "checks_passed": n_pass, "checks_total": len(all_rows),
            "all_pass": "yes" if n_pass == len(all_rows) else "no"}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
