"""Finite-difference gradient checking: is the gradient autograd (or a hand-written backward) gives right?

A gradient check compares an analytic gradient with one measured by perturbing the input.
Everything here works on a *scalar* function `f(x) -> 0-d tensor` of one tensor `x`; a function
with a tensor output is made scalar by `projected` (a fixed random weighting r, so the check
tests the vector-Jacobian product J^T r, exactly what backward computes).

    f = projected(layer_norm_reference, x)              # x -> sum(r * LN(x))
    check = gradient_errors(f, x, eps=1e-6)             # autograd vs central differences
    check.rel_err.max(), check.stats(threshold=1e-7)

Two ways to measure the gradient numerically:
  * `numerical_grad`: central differences, one coordinate at a time: 2 n evaluations of f for
    n elements; gives every element of the gradient (what the error histograms need);
  * `directional_errors`: central differences along k random unit directions u, compared with
    <grad, u>: 2 k evaluations, independent of n. A wrong gradient almost surely fails along a
    random direction, so this is the cheap check for large tensors (torch's "fast mode" idea).

The error of a central difference with step eps is truncation + round-off,
    |f'(x) - (f(x+eps) - f(x-eps)) / (2 eps)|  ~  eps^2 |f'''| / 6  +  u |f| / eps
(u = machine epsilon of the dtype), smallest near eps ~ u^(1/3) (`suggested_eps`): about 6e-6 in
float64 and 5e-3 in float32. `THRESHOLDS` are the relative errors a correct gradient passes at
that step. Days 5 (LayerNorm, GELU), 11 and 18 use this module; `torch.autograd.gradcheck` is
the reference check the tests compare against. The stable `logsumexp` / `log_softmax` at the end
are day 17's: the max-subtraction trick that keeps them finite for any finite input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# A correct gradient's relative error at the suggested step stays below these (see the module doc):
# float64 leaves ~1e-10 typical, float32 ~1e-4, with a tail near zeros of the gradient.
THRESHOLDS = {torch.float64: 1e-7, torch.float32: 1e-2}
TINY = 1e-12  # floor of the relative-error denominator: 0/0 -> 0, not NaN


def suggested_eps(dtype: torch.dtype, scale: float = 1.0) -> float:
    """Step that balances eps^2 truncation against u/eps round-off: u^(1/3) * scale.

    >>> round(suggested_eps(torch.float64), 8), round(suggested_eps(torch.float32), 5)
    (6.06e-06, 0.00492)
    """
    return torch.finfo(dtype).eps ** (1.0 / 3.0) * scale


def relative_error(a: torch.Tensor, b: torch.Tensor, tiny: float = TINY) -> torch.Tensor:
    """Elementwise |a - b| / max(|a|, |b|, tiny), computed in float64.

    Symmetric, 0 for equal values, at most 2; `tiny` keeps a pair of zeros at 0 instead of NaN.
    Near a zero of the gradient both values are small and the ratio is ill-conditioned: a tiny
    absolute error shows up as a large relative one. Raise `tiny` to the scale of the gradient
    (e.g. 1e-3 * max|grad|) to ignore that tail.

    >>> relative_error(torch.tensor([1.0, 0.0, -2.0]), torch.tensor([1.25, 0.0, 2.0])).tolist()
    [0.2, 0.0, 2.0]
    """
    a, b = a.detach().double(), b.detach().double()
    denom = torch.maximum(torch.maximum(a.abs(), b.abs()), torch.full_like(a, tiny))
    return (a - b).abs() / denom


def projected(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, seed: int = 0):
    """x -> sum(r * fn(x)) with a fixed r ~ N(0, 1) of fn(x)'s shape: a scalar whose gradient is J^T r.

    r is drawn in float64 from its own generator (the global RNG is untouched), so float32 and
    float64 checks of the same function use the same r, and the sum is accumulated in float64:
    the check then sees fn's own round-off, not that of a long float32 sum (which would dominate
    it). The returned function carries r as `.r`.
    """
    with torch.no_grad():
        out = fn(x)
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device)

    def f(t):
        return (fn(t).double() * r).sum()  # (...,) -> (): the weighted sum in float64

    f.r = r  # the upstream gradient dL/dfn(x), for checking a hand-written backward
    return f


def autograd_grad(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """df/dx by backpropagation, for a leaf copy of x (x itself is left alone)."""
    with torch.enable_grad():  # also inside a caller's no_grad block
        xl = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(xl), xl)
    return g


@torch.no_grad()
def numerical_grad(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float) -> torch.Tensor:
    """Central differences, one element at a time, in x's own dtype: 2 * x.numel() calls of f.

    Divides by the step actually taken, (x_i + eps) - (x_i - eps) as stored in x's dtype, not by
    2 eps: in float32 x_i + eps is rounded, and dividing by the intended step would add an error
    of about u |x_i| / eps on top of f's own round-off. A step that rounds to nothing (eps below
    half an ulp of x_i) leaves f unchanged and gives the estimate 0.
    """
    # >>> exercise day05.central_diff: central differences per element, divided by the step actually stored
    xp = x.detach().clone()
    flat = xp.view(-1)
    grad = torch.empty(flat.numel(), dtype=torch.float64)
    for i in range(flat.numel()):
        xi = flat[i].clone()
        flat[i] = xi + eps
        hi, fp = flat[i].clone(), float(f(xp))
        flat[i] = xi - eps
        lo, fm = flat[i].clone(), float(f(xp))
        flat[i] = xi  # restore before the next coordinate
        step = float(hi - lo)  # 0 when eps is below half an ulp of x_i: f cannot see the change
        grad[i] = (fp - fm) / step if step else 0.0
    return grad.view(x.shape)
    # <<< exercise day05.central_diff


@dataclass
class GradCheck:
    """Autograd vs finite differences for one function, one input, one step."""

    analytic: torch.Tensor   # autograd (or hand-written) gradient, float64
    numeric: torch.Tensor    # central-difference gradient, float64
    rel_err: torch.Tensor    # elementwise relative_error(analytic, numeric)
    eps: float

    def stats(self, threshold: float) -> dict:
        """median and max relative error, and the fraction of elements above `threshold`."""
        e = self.rel_err.flatten()
        return {"median": float(e.median()), "max": float(e.max()),
                "frac_above": float((e > threshold).double().mean())}


def gradient_errors(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float,
                    analytic: torch.Tensor | None = None, tiny: float = TINY) -> GradCheck:
    """Per-element relative errors between `analytic` (default: autograd of f) and `numerical_grad`."""
    a = autograd_grad(f, x) if analytic is None else analytic
    n = numerical_grad(f, x, eps)
    return GradCheck(a.detach().double(), n, relative_error(a, n, tiny), eps)


@torch.no_grad()
def directional_errors(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float,
                       n_dirs: int = 8, analytic: torch.Tensor | None = None, seed: int = 0,
                       tiny: float = TINY) -> torch.Tensor:
    """Relative errors of <grad, u> vs (f(x + eps u) - f(x - eps u)) / (2 eps), for n_dirs random unit u.

    2 * n_dirs calls of f whatever x's size. `analytic` defaults to autograd of f. Seed the
    directions apart from x: along a direction where the exact derivative is ~0 the relative
    error is ill-conditioned (LayerNorm ignores shifts and scalings of each row, so u parallel to
    x is such a direction).
    """
    a = autograd_grad(f, x) if analytic is None else analytic.detach()
    g = torch.Generator().manual_seed(seed)
    exact, fd = [], []
    for _ in range(n_dirs):
        u = torch.randn(x.shape, generator=g, dtype=torch.float64)
        u = (u / u.norm()).to(x.dtype).to(x.device)
        fd.append((float(f(x + eps * u)) - float(f(x - eps * u))) / (2 * eps))
        exact.append(float((a.double() * u.double()).sum()))
    f64 = torch.float64
    return relative_error(torch.tensor(exact, dtype=f64), torch.tensor(fd, dtype=f64), tiny)  # (n_dirs,)


def best_eps(errors_by_eps: dict[float, float]) -> float:
    """The step with the smallest error in a {eps: error} sweep (ties: the larger step)."""
    return min(sorted(errors_by_eps, reverse=True), key=lambda e: errors_by_eps[e])


def logsumexp(z: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """log(sum(exp(z))) without overflow: m + log(sum(exp(z - m))), m = max(z) (day 17).

    Every exp() argument is <= 0, so nothing overflows, and the largest term is exactly 1, so
    the sum never underflows to 0. Rows of all -inf give -inf (not nan).
    """
    m = z.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # all -inf row: shift by 0
    out = m + torch.log(torch.exp(z - m).sum(dim=dim, keepdim=True))
    return out if keepdim else out.squeeze(dim)


def log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """z - logsumexp(z): finite wherever z is, unlike log(softmax(z)), which underflows to -inf."""
    return z - logsumexp(z, dim=dim, keepdim=True)
