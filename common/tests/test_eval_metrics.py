"""Answer scores: exact match by value, win rate with ties, the bootstrap interval against the normal one."""

import math

import numpy as np
import pytest

from common.eval.metrics import bootstrap_ci, distinct_n, exact_match, win_rate


def test_exact_match():
    assert exact_match(" 42 ", "42") and exact_match("42.0", "42") and exact_match("1,000", "1000")
    assert exact_match("olos  ak", "olos ak") and not exact_match("olosak", "Olosak")
    assert not exact_match("41", "42") and not exact_match("", "0")


def test_win_rate_counts_ties_as_half():
    assert win_rate([1, 0, 1], [0, 0, 1]) == pytest.approx(2 / 3)
    assert win_rate([0, 0], [1, 1]) == 0 and win_rate([1], [1]) == 0.5
    with pytest.raises(ValueError):
        win_rate([1, 2], [1])


def test_bootstrap_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    x = (rng.random(400) < 0.7).astype(float)
    lo, hi = bootstrap_ci(x, seed=0)
    m, se = x.mean(), math.sqrt(x.mean() * (1 - x.mean()) / x.size)
    assert lo < m < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci(x, seed=0) == (lo, hi)  # seeded
    assert bootstrap_ci(np.ones(10)) == (1.0, 1.0)


def test_distinct_n():
    assert distinct_n([["a", "b", "a", "b"]], 2) == pytest.approx(2 / 3)
    assert distinct_n(["abab"], 1) == 0.5 and distinct_n([["x"]], 2) == 0.0
    assert distinct_n([["a", "b"], ["a", "b"]], 2) == 0.5  # repeats across samples count too


def test_paired_outcomes_by_hand():
    from common.eval.metrics import paired_outcomes

    assert paired_outcomes([1, 1, 0, 0], [1, 0, 1, 0]).tolist() == [0.5, 1.0, 0.0, 0.5]
