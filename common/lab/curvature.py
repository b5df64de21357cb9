"""Curvature of a loss: Hessian-vector products and the Hessian's top eigenvalues, never the Hessian.

A model with P parameters has a P x P Hessian: 28k parameters already means 3 GB in float32.
Pearlmutter's trick computes H v for the price of about two backward passes, and iterative
eigensolvers (power iteration, Lanczos) need nothing more than H v. Two routes to H v:

  * `hvp`       double backward: g = grad(L, create_graph=True), then H v = grad(g . v). Works on
                any closure that rebuilds the loss (a model's forward); the day-16 default.
  * `hvp_func`  torch.func forward-over-reverse: jvp(grad(f), theta; v). Needs a pure function of
                the parameters (functional_call) and forward-mode rules for every op inside.

Vectors are flat 1-D tensors of length P; `flatten`/`unflatten` convert to and from a list shaped
like the parameters. Used by day 16 (HVP checks, spectrum during training) and day 19 (edge of
stability).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


# ---- flat-vector helpers --------------------------------------------------------------------------

def params_of(model: torch.nn.Module) -> list[torch.Tensor]:
    """The parameters that train (requires_grad), in `model.parameters()` order."""
    return [p for p in model.parameters() if p.requires_grad]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one 1-D vector (P,)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vec: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a (P,) vector into views shaped like `like` (the inverse of `flatten`)."""
    total = sum(t.numel() for t in like)
    if total != vec.numel():
        raise ValueError(f"vector has {vec.numel()} entries, the tensors {total}")
    out, i = [], 0
    for t in like:
        out.append(vec[i:i + t.numel()].view_as(t))
        i += t.numel()
    return out


# ---- Hessian-vector products -----------------------------------------------------------------------

def grad_flat(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The gradient of `loss_fn()` with respect to `params`, flattened (no graph kept)."""
    return flatten(torch.autograd.grad(loss_fn(), params))


def hvp(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """H v by double backward (Pearlmutter 1994): d/dtheta (grad L(theta) . v), v held constant.

    `loss_fn()` recomputes the scalar loss from `params` (e.g. `lambda: model(x, y)[1]`).
    Cost: one forward, one backward with graph, one backward through that backward.
    """
    # >>> exercise day16.hvp: H v by double backward: grad with create_graph, dot with v, grad again
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
    dot = sum((g * u).sum() for g, u in zip(grads, unflatten(v.detach(), params)))
    return flatten(torch.autograd.grad(dot, params))
    # <<< exercise day16.hvp


def hvp_func(f: Callable[[tuple], torch.Tensor], params: Sequence[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """H v by forward-over-reverse with torch.func: the directional derivative of grad f along v.

    `f(params_tuple)` must be a pure function of the tuple (use torch.func.functional_call for a
    module). Every op inside needs a forward-mode (jvp) rule.
    """
    primals = tuple(p.detach() for p in params)
    tangents = tuple(unflatten(v.detach(), primals))
    _, hv = torch.func.jvp(torch.func.grad(f), (primals,), (tangents,))
    return flatten(hv)


def hvp_fd(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], v: torch.Tensor,
           eps: float = 1e-4) -> torch.Tensor:
    """H v by central differences of gradients: (g(theta + eps v) - g(theta - eps v)) / (2 eps).

    Error O(eps^2) truncation + O(machine eps / eps) rounding: a check, not a method. Restores params.
    """
    steps = unflatten(eps * v.detach(), params)
    with torch.no_grad():
        for p, s in zip(params, steps):
            p.add_(s)
    g_plus = grad_flat(loss_fn, params)
    with torch.no_grad():
        for p, s in zip(params, steps):
            p.sub_(2 * s)
    g_minus = grad_flat(loss_fn, params)
    with torch.no_grad():
        for p, s in zip(params, steps):
            p.add_(s)
    return (g_plus - g_minus) / (2 * eps)


def hessian_from_hvp(matvec: MatVec, n: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The explicit (n, n) matrix, one H e_i per column: only for small n (tests, checks)."""
    eye = torch.eye(n, dtype=dtype, device=device)
    return torch.stack([matvec(eye[i]) for i in range(n)], dim=1)


# ---- eigenvalues from matrix-vector products -------------------------------------------------------

def power_iteration(matvec: MatVec, n: int, iters: int = 100, tol: float = 1e-6, dtype=torch.float32,
                    device="cpu", seed: int = 0) -> tuple[float, torch.Tensor, list[float]]:
    """The eigenvalue of largest |lambda| and its unit eigenvector: v <- H v / |H v|.

    Returns (lambda, v, Rayleigh quotients per iteration). Converges like (|l2| / |l1|)^k; stops
    when the Rayleigh quotient changes by less than `tol` relative.
    """
    # >>> exercise day16.power_iteration: v <- H v / |H v| from a seeded unit vector; Rayleigh quotients; stop at tol
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(n, generator=g, dtype=dtype).to(device)
    v /= v.norm()
    lam, history = 0.0, []
    for _ in range(iters):
        hv = matvec(v)
        new = float(v @ hv)              # Rayleigh quotient v^T H v, |v| = 1
        history.append(new)
        v = hv / hv.norm()
        if len(history) > 1 and abs(new - lam) <= tol * abs(new):
            lam = new
            break
        lam = new
    return lam, v, history
    # <<< exercise day16.power_iteration


def top_eigenvalue(matvec: MatVec, n: int, **kw) -> float:
    """The largest (most positive) eigenvalue. Power iteration finds the largest |lambda|; if that
    is negative (l_min), iterate on H - l_min I, whose largest |eigenvalue| is l_max - l_min >= 0."""
    lam, _, _ = power_iteration(matvec, n, **kw)
    if lam >= 0:
        return lam
    shifted, _, _ = power_iteration(lambda v: matvec(v) - lam * v, n, **kw)
    return shifted + lam


def lanczos(matvec: MatVec, n: int, k: int = 5, m: int = 30, dtype=torch.float32, device="cpu",
            seed: int = 0) -> torch.Tensor:
    """The k largest eigenvalues (descending) from m Lanczos steps with full reorthogonalisation.

    Builds an orthonormal Krylov basis Q (n, m) with Q^T H Q = T tridiagonal; the extreme
    eigenvalues of T (Ritz values) converge to H's extreme ones first. Cost: m H v products.
    """
    m = min(m, n)
    g = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(n, generator=g, dtype=torch.float64).to(device)
    Q = [q / q.norm()]
    alphas, betas = [], []
    for j in range(m):
        w = matvec(Q[j].to(dtype)).to(torch.float64)
        alphas.append(float(Q[j] @ w))
        basis = torch.stack(Q)                           # (j+1, n)
        for _ in range(2):                               # twice is enough (Kahan): keeps Q orthogonal
            w = w - basis.T @ (basis @ w)
        beta = float(w.norm())
        if j == m - 1 or beta < 1e-10:
            break
        betas.append(beta)
        Q.append(w / beta)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas[:len(alphas) - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(T).flip(0)[:k]
