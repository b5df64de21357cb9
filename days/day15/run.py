"""Day 15: binary logistic regression from scratch (float64) — gradient descent vs Newton's method.

Two overlapping Gaussian blobs (so the optimum is finite), a small L2 term (so it is unique), and
the two classic solvers run to ||grad|| < tol. Sanity checks: same optimum, Hessian eigenvalues
>= lam, the fitted weights vs the closed-form Bayes boundary of the two blobs (LDA), and a
separable data set on which, without L2, GD sends ||w|| -> infinity while the loss -> 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common.run import plotting, runner

DAY = 15


@dataclass
class Config:
    n: int = 2000               # points, half per class
    dim: int = 2                # features (a bias column is appended)
    sep: float = 1.0            # class means at +-sep/2 along every axis, unit variance: they overlap
    stretch: float = 4.0        # the last feature is scaled by this (mean and noise): ill-conditioned
    lam: float = 1e-3           # L2 on all weights incl. bias: Hessian >= lam I, strictly convex
    tol: float = 1e-8           # stop when ||grad|| < tol
    gd_max_iters: int = 20000
    newton_max_iters: int = 50
    sep_iters: int = 100000     # GD iterations on the separable set (no L2)


PRESETS = {"nano": dict(n=200, sep_iters=2000, gd_max_iters=5000), "cpu": {}, "gpu": {}}


def scales(dim, stretch):
    """Per-feature scale: 1, ..., 1, stretch (the last feature is `stretch` times wider)."""
    s = torch.ones(dim, dtype=torch.float64)
    s[-1] = stretch
    return s


def blobs(n, dim, sep, seed, std=1.0, stretch=1.0):
    """x = s * (+-sep/2 + std z), z ~ N(0, I), y in {0, 1}: returns X with a bias column (n, dim + 1), y (n,)."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).double()
    mu = (y[:, None] - 0.5) * sep * torch.ones(dim, dtype=torch.float64)
    x = (mu + std * torch.randn(n, dim, generator=g, dtype=torch.float64)) * scales(dim, stretch)
    return torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1), y


def loss(w, X, y, lam):
    """Mean logistic loss + lam/2 |w|^2; log(1 + e^z) - y z written stably with softplus."""
    z = X @ w
    return (torch.nn.functional.softplus(z) - y * z).mean() + 0.5 * lam * w @ w


def grad(w, X, y, lam):
    """X^T (p - y) / n + lam w."""
    # >>> exercise day15.grad: the gradient X^T (sigmoid(X w) - y) / n + lam w, no autograd
    return X.T @ (torch.sigmoid(X @ w) - y) / len(y) + lam * w
    # <<< exercise day15.grad


def hessian(w, X, y, lam):
    """X^T S X / n + lam I with S = diag(p (1 - p))."""
    # >>> exercise day15.hessian: the Hessian X^T diag(p (1 - p)) X / n + lam I
    p = torch.sigmoid(X @ w)
    return (X * (p * (1 - p))[:, None]).T @ X / len(y) + lam * torch.eye(X.shape[1], dtype=X.dtype)
    # <<< exercise day15.hessian


def gradient_descent(X, y, lam, tol, max_iters, lr=None):
    """Fixed step 1/L, L = lambda_max(X^T X) / (4 n) + lam >= every Hessian eigenvalue (p(1-p) <= 1/4)."""
    lr = lr or 1.0 / (torch.linalg.eigvalsh(X.T @ X)[-1].item() / (4 * len(y)) + lam)
    w = torch.zeros(X.shape[1], dtype=X.dtype)
    hist = []
    for _ in range(max_iters + 1):
        g = grad(w, X, y, lam)
        hist.append((loss(w, X, y, lam).item(), g.norm().item(), w.norm().item()))
        if g.norm() < tol:
            break
        w = w - lr * g
    return w, hist


def newton(X, y, lam, tol, max_iters):
    """Damped Newton (Boyd & Vandenberghe alg. 9.5): step -H^{-1} g, backtracking on the loss."""
    # >>> exercise day15.newton: damped Newton from w = 0 with backtracking; history (loss, |g|, |w|) per step
    w = torch.zeros(X.shape[1], dtype=X.dtype)
    hist = []
    for _ in range(max_iters + 1):
        g = grad(w, X, y, lam)
        f = loss(w, X, y, lam).item()
        hist.append((f, g.norm().item(), w.norm().item()))
        if g.norm() < tol:
            break
        step = -torch.linalg.solve(hessian(w, X, y, lam), g)
        t = 1.0
        while loss(w + t * step, X, y, lam).item() > f + 0.25 * t * (g @ step).item() and t > 1e-10:
            t *= 0.5
        w = w + t * step
    return w, hist
    # <<< exercise day15.newton


def main(cfg: Config, ctx) -> dict:
    X, y = blobs(cfg.n, cfg.dim, cfg.sep, ctx.seed, stretch=cfg.stretch)
    w_gd, h_gd = gradient_descent(X, y, cfg.lam, cfg.tol, cfg.gd_max_iters)
    w_nt, h_nt = newton(X, y, cfg.lam, cfg.tol, cfg.newton_max_iters)
    f_star = min(h_nt[-1][0], h_gd[-1][0])
    ev = torch.linalg.eigvalsh(hessian(w_nt, X, y, cfg.lam))
    for i, (_, gn, _) in enumerate(h_gd):
        ctx.tracker.log("gd/grad_norm", gn, i)
    rows = [{"method": name, "iterations": len(h) - 1, "final loss": h[-1][0], "final ||grad||": h[-1][1],
             "converged": h[-1][1] < cfg.tol} for name, h in (("gradient descent", h_gd), ("Newton", h_nt))]
    dist = (w_gd - w_nt).norm().item()
    d = ctx.deliverable
    d.section("Gradient descent vs Newton on the same strictly convex problem")
    d.text(f"{cfg.n} points, {cfg.dim} features + bias, class means {cfg.sep} apart per axis (unit variance: "
           f"the blobs overlap; the last feature stretched {cfg.stretch}x), L2 lam = {cfg.lam}. Both start at "
           f"w = 0 and stop at ||grad|| < {cfg.tol:g}.")
    d.table(rows, floatfmt=".3e")
    ratio = (len(h_gd) - 1) / max(1, len(h_nt) - 1)
    d.text(f"The two solutions are {dist:.2e} apart (Euclidean). Newton needed {len(h_nt) - 1} iterations, "
           f"GD {len(h_gd) - 1} ({ratio:.0f}x more). Newton's ||grad|| per iteration: "
           + ", ".join(f"{h[1]:.1e}" for h in h_nt) + ". Hessian eigenvalues at the optimum: "
           + ", ".join(f"{e:.4g}" for e in ev.tolist())
           + f" (all >= lam = {cfg.lam}: {bool((ev >= cfg.lam - 1e-12).all())}); condition number "
           f"{(ev[-1] / ev[0]).item():.1f}.")
    # GD's linear rate: with step 1/L_max the slowest direction keeps (1 - lambda_min / L_max) of its error per
    # step, so the loss gap shrinks by that factor squared near the optimum
    l_max = torch.linalg.eigvalsh(X.T @ X)[-1].item() / (4 * cfg.n) + cfg.lam
    rate = (1 - ev[0].item() / l_max) ** 2
    gaps = [f - f_star for f, _, _ in h_gd]
    window = [k for k in range(1, len(gaps)) if 1e-12 < gaps[k] < 1e-4]
    measured = (gaps[window[-1]] / gaps[window[0]]) ** (1 / (window[-1] - window[0])) if len(window) > 1 else None
    expo = [math.log10(h[1]) for h in h_nt[-3:] if h[1] > 0]
    quad = len(expo) == 3 and expo[2] < 1.5 * expo[1] < 0
    d.text(f"What to look at: over Newton's last steps the exponent of ||grad|| goes "
           f"{', '.join(f'{e:.1f}' for e in expo)}: "
           + ("it roughly doubles each step, quadratic convergence. " if quad else "it falls. ")
           + f"GD takes {ratio:.0f}x more iterations because its fixed step 1/L_max (L_max = {l_max:.3g}) is far "
           f"too short for the flattest direction (Hessian eigenvalue {ev[0].item():.3g}). "
           + (f"Theory says GD's loss gap shrinks by (1 - {ev[0].item():.3g}/{l_max:.3g})² = {rate:.4f} per step; "
              f"measured between gaps 1e-4 and 1e-12: {measured:.4f}." if measured else
              f"Theory says GD's loss gap shrinks by (1 - {ev[0].item():.3g}/{l_max:.3g})² = {rate:.4f} per step."))
    series = {name: (list(range(len(h))), [max(f - f_star, 1e-17) for f, _, _ in h])
              for name, h in (("gradient descent (step 1/L_max)", h_gd), ("Newton", h_nt))}
    if measured:
        k0 = window[0]
        # drawn 10x above GD so that it does not hide the measured curve: parallel lines = the same rate
        series[f"predicted GD rate, ×{rate:.4f} per step (drawn 10x higher)"] = (
            list(range(k0, len(gaps))), [10 * gaps[k0] * rate ** (k - k0) for k in range(k0, len(gaps))])
    p = plotting.lines(ctx.plot_path("convergence"), series, "iteration", "loss - optimum (nats, log scale)",
                       logy=True, title="Logistic regression: suboptimality per iteration")
    d.image(p, "Newton: quadratic convergence, a near-vertical drop in a handful of steps at the left; GD: linear "
               "convergence, a constant factor per step, i.e. a straight line on this log-y axis")
    d.text("What to look at: the GD curve bends at first, while the loss is far from quadratic, then becomes a "
           "straight line"
           + (" parallel to the predicted rate (drawn 10x higher so as not to hide it)" if measured else "")
           + (f"; Newton reaches the 1e-17 floor (float64 resolution of a loss near {f_star:.2f}) after "
              f"{len(h_nt) - 1} steps." if h_nt[-1][0] - f_star <= 1e-17 else "."))

    # closed-form reference: equal-covariance Gaussian classes => the true posterior is logistic
    s = scales(cfg.dim, cfg.stretch)                                       # Sigma = diag(s^2), mu1 - mu0 = sep s
    w_bayes = torch.cat([cfg.sep / s, torch.zeros(1, dtype=torch.float64)])  # Sigma^-1 (mu1 - mu0), b = 0
    m1, m0 = X[y == 1, :-1].mean(0), X[y == 0, :-1].mean(0)
    xc = torch.cat([X[y == 1, :-1] - m1, X[y == 0, :-1] - m0])
    S = xc.T @ xc / (cfg.n - 2)                                            # pooled covariance
    w_lda = torch.linalg.solve(S, m1 - m0)
    b_lda = -0.5 * (m1 @ torch.linalg.solve(S, m1) - m0 @ torch.linalg.solve(S, m0))
    w_lda = torch.cat([w_lda, b_lda[None]])
    d.section("Sanity check against a closed form")
    d.text("For two Gaussian classes with a shared covariance and equal priors, p(y=1|x) is exactly "
           "sigmoid(w^T x + b) with w = Sigma^-1 (mu1 - mu0): the population optimum is known in closed form, "
           "and LDA is its plug-in estimate from this sample.")
    d.table([{"weights": k, **{f"w{i}": v for i, v in enumerate(w.tolist())}, "|w - Newton|": (w - w_nt).norm().item()}
             for k, w in (("Newton (fit)", w_nt), ("LDA plug-in (closed form)", w_lda),
                          ("population truth", w_bayes))], floatfmt=".4f")
    d_lda, d_pop = (w_lda - w_nt).norm().item(), (w_bayes - w_nt).norm().item()
    d.text(f"What to look at: the fit is {d_lda:.4f} from LDA and {d_pop:.4f} from the population truth; 1/sqrt(n) = "
           f"{1 / math.sqrt(cfg.n):.4f} is the scale of sampling noise per weight, and the L2 term shrinks the fit "
           "a little. "
           + ("LDA is the closer one: it is computed from the same sample, so it shares that noise. " if d_lda < d_pop
              else "")
           + f"The stretched feature gets weight sep/{cfg.stretch:g} = {cfg.sep / cfg.stretch:.4f} in the truth: a "
           f"feature {cfg.stretch:g}x wider needs a {cfg.stretch:g}x smaller weight for the same effect; w{cfg.dim} is "
           "the bias, 0 for symmetric classes.")

    # separable data, no L2: the infimum 0 is approached only as |w| -> infinity
    Xs, ys = blobs(cfg.n, cfg.dim, 8.0, ctx.seed + 1, std=0.5)
    _, h_sep = gradient_descent(Xs, ys, 0.0, 0.0, cfg.sep_iters)
    marks = sorted({10 ** k for k in range(int(math.log10(cfg.sep_iters)) + 1)} | {cfg.sep_iters})
    d.section("Separable data, no L2: there is no optimum")
    d.table([{"iteration": t, "loss": h_sep[t][0], "||grad||": h_sep[t][1], "||w||": h_sep[t][2]} for t in marks],
            floatfmt=".4g")
    grow = h_sep[-1][2] / h_sep[marks[-2]][2]
    decades = [10 ** k for k in range(1, int(math.log10(cfg.sep_iters)) + 1)]
    per_dec = [h_sep[b][2] - h_sep[a][2] for a, b in zip(decades[:-1], decades[1:])]
    steady = bool(per_dec) and max(per_dec) < 1.25 * min(per_dec)
    d.text(f"What to look at: classes 8 std apart, so a separating line exists. From iteration {marks[-2]} to "
           f"{marks[-1]} ||w|| grew {grow:.2f}x while the loss fell from {h_sep[marks[-2]][0]:.2e} to "
           f"{h_sep[-1][0]:.2e}. Scaling a separating w by c > 1 lowers every term log(1 + e^{{-c m_i}}), so no "
           "finite w attains the infimum 0. "
           + (("||w|| gained per decade of iterations: " + ", ".join(f"{v:.3f}" for v in per_dec)
               + (" (about constant: growth like log t)." if steady else " (not yet constant).")) if per_dec else ""))
    p2 = plotting.lines(ctx.plot_path("separable"), {"||w||": (list(range(1, len(h_sep))),
                        [h[2] for h in h_sep[1:]])}, "iteration (log scale)", "||w|| (weight norm)",
                        logx=True, logx_base=10,
                        title="Separable data without L2: weight norm grows without bound")
    d.image(p2, "weight norm vs iteration on separable data (log x): roughly a straight line, i.e. ~ log t")
    return {"final_loss": h_nt[-1][0], "grad_norm_gd": h_gd[-1][1], "grad_norm_newton": h_nt[-1][1],
            "solution_dist": dist, "iters_gd": len(h_gd) - 1, "iters_newton": len(h_nt) - 1,
            "hess_min_eig": ev[0].item(), "lda_dist": (w_lda - w_nt).norm().item(),
            "sep_w_norm": h_sep[-1][2], "sep_loss": h_sep[-1][0]}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
