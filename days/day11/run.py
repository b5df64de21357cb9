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
    ctx.deliverable.section("Structure of the softmax Jacobian J = diag(p) - p p^T")
    ctx.deliverable.table(struct_rows, floatfmt=".3g")
    ctx.deliverable.section("Null space of the LayerNorm Jacobian")
    ctx.deliverable.text("A shift x + c1 leaves LayerNorm unchanged, so J 1 = 0 exactly. A scaling x -> (1 + t) x "
                         "would too if eps were 0; with eps > 0 the notes predict J xh = s eps / (var + eps) w xh, "
                         "small but not zero.")
    ctx.deliverable.table(ln_rows, floatfmt=".3g")

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
    ctx.deliverable.image(pl, "LayerNorm Jacobian: diagonal ~ s(1 - 1/n - xh_i^2/n), off-diagonal -s(1 + xh_i xh_j)/n")

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
