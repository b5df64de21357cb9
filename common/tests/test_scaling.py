"""common/lab/scaling.py: the fit recovers a known law, ignores an outlier, and the compute-optimal
split is the minimum."""

import math

import numpy as np
import pytest

from common.lab.scaling import compute_optimal, fit_law, optimal_tokens, predict
from common.nn.model import GPT, GPTConfig, non_embedding_params

CHINCHILLA = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}  # Hoffmann et al. (2022), approach 3


def grid(n_lo, n_hi, d_lo, d_hi, k=5):
    N, D = np.meshgrid(np.geomspace(n_lo, n_hi, k), np.geomspace(d_lo, d_hi, k))
    return N.ravel(), D.ravel()


def test_fit_recovers_a_known_law():
    N, D = grid(1e7, 1e10, 1e9, 1e12)
    f = fit_law(N, D, predict(CHINCHILLA, N, D), steps=300)
    for k, v in CHINCHILLA.items():
        assert f[k] == pytest.approx(v, rel=1e-3), k


def test_fit_shrugs_off_an_outlier_but_least_squares_would_not():
    N, D = grid(1e7, 1e10, 1e9, 1e12)
    L = predict(CHINCHILLA, N, D) * np.exp(np.random.default_rng(0).normal(0, 0.002, N.size))
    L[7] *= 1.3  # one broken run
    f = fit_law(N, D, L, steps=300)
    assert f["alpha"] == pytest.approx(0.34, abs=0.02) and f["beta"] == pytest.approx(0.28, abs=0.02)
    assert abs(predict(f, N[7], D[7]) / L[7] - 1) > 0.2  # the outlier is left unexplained, not chased
    ls = fit_law(N, D, L, delta=10.0, steps=300)  # delta >> every residual: plain least squares
    assert abs(ls["alpha"] - 0.34) > 3 * abs(f["alpha"] - 0.34) and abs(ls["beta"] - 0.28) > 0.05


def test_compute_optimal_is_the_minimum_along_the_isoflop():
    C = 1e21
    n_opt, d_opt = compute_optimal(CHINCHILLA, C)
    assert 6 * n_opt * d_opt == pytest.approx(C)
    ns = np.geomspace(n_opt / 10, n_opt * 10, 20001)
    brute = ns[np.argmin(predict(CHINCHILLA, ns, C / (6 * ns)))]
    assert brute == pytest.approx(float(n_opt), rel=1e-3)
    assert optimal_tokens(CHINCHILLA, float(n_opt)) == pytest.approx(float(d_opt), rel=1e-9)
    # Chinchilla's own exponents give N_opt ~ C^(beta / (alpha + beta)) = C^0.45
    n2, _ = compute_optimal(CHINCHILLA, 100 * C)
    assert math.log(n2 / n_opt, 100) == pytest.approx(0.28 / 0.62)


def test_non_embedding_count_matches_the_model():
    c = GPTConfig(vocab_size=2048, block_size=64, n_layer=3, n_head=3, n_embd=96)
    m = GPT(c)
    blocks = sum(p.numel() for n, p in m.named_parameters() if not n.startswith(("wte", "wpe", "lm_head")))
    assert non_embedding_params(c) == blocks
    assert blocks == pytest.approx(12 * c.n_layer * c.n_embd**2, rel=0.01)  # the 12 L C^2 rule, plus norm gains
