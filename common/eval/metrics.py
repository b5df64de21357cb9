"""Scores for generated answers: exact match, win rate with a bootstrap interval, distinct-n, Wilson intervals.

    exact_match("42.0", "42")                  # True: numbers compare by value
    win_rate([1, 0, 1], [0, 0, 1])             # 0.667: A wins one, ties two (a tie counts half)
    bootstrap_ci(wins, np.mean, seed=0)        # (low, high), the 95% percentile interval
    distinct_n([["a", "b", "a", "b"]], 2)      # 0.667: 2 distinct bigrams of 3
"""

from __future__ import annotations

import numpy as np


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def exact_match(prediction: str, answer: str) -> bool:
    """Whether `prediction` is `answer`, after stripping and collapsing spaces; numbers compare by value."""
    p, a = " ".join(prediction.split()), " ".join(answer.split())
    if p == a:
        return True
    pn, an = _as_number(p), _as_number(a)
    return pn is not None and an is not None and pn == an


def paired_outcomes(scores_a, scores_b) -> np.ndarray:
    """Per paired item, A against B: 1 (A scores higher), 0 (B does) or 0.5 (a tie); bootstrap these for an
    interval that keeps the pairing."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two equally long, non-empty score lists, got {a.size} and {b.size}")
    return (a > b) + 0.5 * (a == b)


def win_rate(scores_a, scores_b) -> float:
    """Share of paired items where A scores above B, ties counted as half a win."""
    return float(np.mean(paired_outcomes(scores_a, scores_b)))


def bootstrap_ci(values, stat=np.mean, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of stat(values): resample the items with replacement n_boot times.

    For paired comparisons pass one value per item (e.g. 1 / 0.5 / 0 for win / tie / loss) so the pairing
    is kept.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("need at least one value to bootstrap")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    stats = np.array([stat(x[i]) for i in idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def distinct_n(sequences, n: int = 2) -> float:
    """Distinct n-grams over all n-grams across `sequences` (lists of tokens or strings); 0 when there are none."""
    grams = [tuple(s[i:i + n]) for s in sequences for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval for a proportion k / n (never empty at k = 0 or n, never outside [0, 1])."""
    if n <= 0:
        raise ValueError(f"need n > 0, got {n}")
    p, denom = k / n, 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
