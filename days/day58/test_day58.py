"""Day 58: Wilson's interval by hand and by coverage, against the normal approximation, and a quick run."""

import math

import numpy as np
import pytest

from common.run import runner
from days.day58 import run


def test_wilson_by_hand():
    lo, hi = run.wilson(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(3.8415 / 13.8415, rel=1e-4)   # z^2/(n+z^2)
    lo, hi = run.wilson(5, 10)
    assert (lo + hi) / 2 == pytest.approx(0.5)                                  # symmetric at one half
    assert run.normal_interval(0, 10) == (0.0, 0.0)                             # the normal one collapses
    lo, hi = run.wilson(300, 1000)
    nlo, nhi = run.normal_interval(300, 1000)
    assert abs(lo - nlo) < 2e-3 and abs(hi - nhi) < 2e-3                        # they agree in the middle, large n


def test_wilson_covers_about_95_percent():
    rng = np.random.default_rng(0)
    p, n = 0.1, 40
    hits = 0
    for _ in range(4000):
        k = int(rng.binomial(n, p))
        lo, hi = run.wilson(k, n)
        hits += lo <= p <= hi
    assert 0.93 <= hits / 4000 <= 0.97
    assert not math.isnan(run.wilson(40, 40)[0])


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["n_figures"] == 4 and (tmp_path / "plots" / "day58_scores.png").is_file()
    assert m["wilson_width_cloze_base"] > 0


def test_wilson_matches_the_library():
    from common.eval import metrics

    for k, n in [(0, 10), (3, 10), (10, 10), (144, 444)]:
        assert run.wilson(k, n) == pytest.approx(metrics.wilson_interval(k, n), abs=1e-12)
