"""Closed-form Jacobians and gradients of the small functions a transformer is built from.

Each function here is a formula derived by hand (days 11 and 18, see their notes), written with
plain tensor ops, no autograd. Tests and days compare them with `torch.autograd.functional.jacobian`
and with `F.cross_entropy`'s backward.

All work over the last dimension and batch over the leading ones: an input (..., n) gives a
Jacobian (..., n, n), with J[..., i, j] = d out_i / d in_j (rows: outputs, columns: inputs).

    p = softmax(z)          J = diag(p) - p p^T                          softmax_jacobian
    y = LN(x) * w + b       J = diag(w) s (I - 1 1^T / n - xh xh^T / n)   layer_norm_jacobian
                            (s = 1 / sqrt(var + eps), xh = (x - mean) s)
    y = GELU(x)             J = diag(Phi(x) + x phi(x))                  gelu_jacobian
    L = CE(z, y)            dL/dz = softmax(z) - q, q the target distribution  cross_entropy_grad

The vector-Jacobian product of softmax, J^T g = p * (g - <g, p>), is `softmax_vjp`: what a
backward pass computes without ever building the n x n matrix.
"""

from __future__ import annotations

import math

import torch


def softmax_jacobian(z: torch.Tensor) -> torch.Tensor:
    """d softmax(z) / dz = diag(p) - p p^T, for z (..., n) -> (..., n, n).

    Symmetric, rows and columns sum to 0 (softmax is invariant to z + c 1), positive
    semi-definite (v^T J v is the variance of v under p), rank n - 1 when every p_i > 0, and
    its eigenvalues lie in [0, max p].
    """
    # >>> exercise day11.softmax_jacobian: build diag(p) - p p^T from p = softmax(z), batched over the leading dims
    p = torch.softmax(z, dim=-1)
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    # <<< exercise day11.softmax_jacobian


def softmax_vjp(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """J^T g = p * (g - <g, p>) for p = softmax(z): the softmax backward in O(n), not O(n^2)."""
    # >>> exercise day11.softmax_vjp: the softmax backward J^T g = p * (g - <g, p>) in O(n), without building J
    return p * (g - (g * p).sum(dim=-1, keepdim=True))
    # <<< exercise day11.softmax_vjp


def layer_norm_jacobian(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """d (LN(x) * weight + bias) / dx for x (..., n) -> (..., n, n); the bias drops out.

    With mu = mean(x), var = mean((x - mu)^2) (biased, as torch), s = 1 / sqrt(var + eps) and
    xh = (x - mu) s:   d xh_i / d x_j = s (delta_ij - 1/n - xh_i xh_j / n),   exact with eps > 0.
    The weight scales row i by w_i. J @ 1 = 0 (a shift of x changes nothing); J @ xh is not
    exactly 0 but s * eps / (var + eps) * w * xh (eps breaks the scale invariance).
    """
    # >>> exercise day11.layer_norm_jacobian: s (I - 1/n - xh xh^T / n), rows scaled by the weight when given
    n = x.shape[-1]
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    s = torch.rsqrt(var + eps)                              # (..., 1)
    xh = (x - mu) * s                                       # (..., n)
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    j = eye - 1.0 / n - xh.unsqueeze(-1) * xh.unsqueeze(-2) / n  # (..., n, n)
    j = s.unsqueeze(-1) * j
    if weight is not None:
        j = weight.unsqueeze(-1) * j                        # row i times w_i
    return j
    # <<< exercise day11.layer_norm_jacobian


def gelu_jacobian(x: torch.Tensor) -> torch.Tensor:
    """d GELU(x) / dx for exact GELU x Phi(x): diagonal, Phi(x) + x phi(x); (..., n) -> (..., n, n)."""
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return torch.diag_embed(cdf + x * pdf)


def cross_entropy_grad(z: torch.Tensor, y: torch.Tensor, reduction: str = "mean",
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """dL/dz of L = F.cross_entropy(z, y, reduction, label_smoothing) for logits z (B, K), labels y (B,).

    Per row, L_b = -sum_k q_k log softmax(z_b)_k with q = (1 - a) onehot(y_b) + a / K, so
    dL_b/dz_b = softmax(z_b) - q (q sums to 1). "mean" divides by B, "sum" does not.
    """
    # >>> exercise day18.ce_grad: dL/dz = softmax(z) - q (q: one-hot, label-smoothed), divided by B for 'mean'
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    k = z.shape[-1]
    q = torch.nn.functional.one_hot(y, k).to(z.dtype) * (1.0 - label_smoothing) + label_smoothing / k
    g = torch.softmax(z, dim=-1) - q
    return g / z.shape[0] if reduction == "mean" else g
    # <<< exercise day18.ce_grad
