"""Scaling laws: fit Chinchilla's L(N, D) = E + A/N^alpha + B/D^beta and read budgets off it (day 23).

    f = fit_law(N, D, L)                    # {"E", "A", "alpha", "B", "beta", "objective"}
    predict(f, N, D)                        # the law at (N, D)
    n_opt, d_opt = compute_optimal(f, C)    # the split of C = 6ND that minimises the law
    preds, fits = leave_one_out(N, D, L)    # honest error: each point predicted by a fit without it

The fit follows Hoffmann et al. (2022): a Huber loss on log-loss residuals, the law written as a
log-sum-exp of its three terms so every parameter lives on an unconstrained scale, many starts from
a grid, the best polished by L-BFGS. Torch only (no SciPy).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F


def log_law(p, logN, logD):
    """log L(N, D) for p (..., 5) = (log E, log A, alpha, log B, beta), as a log-sum-exp of the three terms."""
    e, a, al, b, be = (t.unsqueeze(-1) for t in p.unbind(-1))
    return torch.logsumexp(torch.stack(torch.broadcast_tensors(e, a - al * logN, b - be * logD)), dim=0)


def fit_law(N, D, L, delta: float = 1e-3, steps: int = 800, polish: int = 3) -> dict:
    """Minimise sum_i Huber_delta(log L_hat_i - log L_i) over (E, A, alpha, B, beta), Chinchilla's way.

    Every start of a grid is optimised at once by Adam (elementwise, so each start is its own problem);
    the `polish` best go on to L-BFGS, and the lowest objective wins."""
    logN, logD, logL = (torch.tensor(np.log(np.asarray(x, dtype=float)), dtype=torch.float64) for x in (N, D, L))
    grid = itertools.product([-1.0, 0.0, 1.0, 1.5], [0, 5, 10, 15, 20], [0.25, 0.5, 1.0], [0, 5, 10, 15, 20],
                             [0.25, 0.5, 1.0])
    p = torch.tensor(list(grid), dtype=torch.float64, requires_grad=True)  # (starts, 5)

    def objective(q):  # (starts,)
        r = log_law(q, logN, logD)  # (starts, points); / delta keeps the objective O(|r|) for L-BFGS's tolerances
        return F.huber_loss(r, logL.expand_as(r), delta=delta, reduction="none").sum(-1) / delta

    opt = torch.optim.Adam([p], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        objective(p).sum().backward()
        opt.step()
    best_v, best_q = math.inf, None
    for i in torch.nan_to_num(objective(p).detach(), nan=math.inf).argsort()[:polish]:
        q = p.detach()[i : i + 1].clone().requires_grad_()
        lbfgs = torch.optim.LBFGS([q], max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

        def closure(q=q, lbfgs=lbfgs):
            lbfgs.zero_grad()
            v = objective(q).sum()
            v.backward()
            return v

        lbfgs.step(closure)
        v = objective(q).item()
        if v < best_v:
            best_v, best_q = v, q.detach()[0]
    e, a, al, b, be = best_q.tolist()
    return {"E": math.exp(e), "A": math.exp(a), "alpha": al, "B": math.exp(b), "beta": be, "objective": best_v}


def predict(f: dict, N, D):
    return f["E"] + f["A"] / np.asarray(N, dtype=float) ** f["alpha"] + f["B"] / np.asarray(D, dtype=float) ** f["beta"]


def compute_optimal(f: dict, C):
    """(N_opt, D_opt) minimising the law at compute C = 6ND: N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = C/(6 N_opt),
    with G = (alpha A / (beta B))^(1/(alpha+beta))."""
    # >>> exercise day23.compute_optimal: minimise the law on C = 6ND: the closed-form N_opt, then D_opt = C / (6 N_opt)
    a, b = f["alpha"], f["beta"]
    G = (a * f["A"] / (b * f["B"])) ** (1 / (a + b))
    n = G * (np.asarray(C, dtype=float) / 6) ** (b / (a + b))
    return n, np.asarray(C, dtype=float) / (6 * n)
    # <<< exercise day23.compute_optimal


def optimal_tokens(f: dict, n: float) -> float:
    """The D at which n parameters are compute-optimal: where alpha A / N^alpha = beta B / D^beta."""
    # >>> exercise day23.optimal_tokens: the D where the two marginal terms balance, alpha A / N^alpha = beta B / D^beta
    if f["alpha"] <= 0 or f["beta"] <= 0:
        return math.nan
    log_d = (math.log(f["beta"] * f["B"] / (f["alpha"] * f["A"])) + f["alpha"] * math.log(n)) / f["beta"]
    return math.exp(min(log_d, 700.0))  # a near-zero beta sends it past any float: cap at ~1e304
    # <<< exercise day23.optimal_tokens


def leave_one_out(N, D, L, **kw) -> tuple[np.ndarray, list[dict]]:
    """Each point's prediction from a fit to all the others, and those fits (their spread is a jackknife)."""
    N, D, L = (np.asarray(x, dtype=float) for x in (N, D, L))
    fits = [fit_law(N[k], D[k], L[k], **kw) for k in (np.arange(len(L)) != i for i in range(len(L)))]
    return np.array([float(predict(f, N[i], D[i])) for i, f in enumerate(fits)]), fits
