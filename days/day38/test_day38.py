"""Day 38: distance bins, the decay fits against curves with known parameters, the cost model, and a quick run."""

import numpy as np
import pytest

from common.lab import retrieval
from common.run import runner
from days.day38 import run


def test_distance_edges_are_half_octaves_covering_the_range():
    e = run.distance_edges(1000)
    assert e[:5] == [8, 11, 16, 23, 32] and e[-1] > 1000 >= e[-2]
    assert all(1.3 < b / a < 1.5 for a, b in zip(e, e[1:]))


def test_pooled_bins_count_every_record_once():
    rng = np.random.default_rng(0)
    recs = [{"distance": int(d), "hit": bool(h)} for d, h in zip(rng.integers(8, 2000, 300), rng.random(300) < 0.5)]
    rows = retrieval.hit_rate_by_distance(recs, run.distance_edges(2000))
    assert sum(r["n"] for r in rows) == 300 and sum(r["hits"] for r in rows) == sum(r["hit"] for r in recs)
    assert all(r["lo"] <= r["mean_distance"] < r["hi"] and r["rate"] == r["hits"] / r["n"] for r in rows)


def test_attention_model_of_retention_is_fitted_by_the_logistic():
    """The notes' one-head model: the needle's weight 1 / (1 + Z e^(m x - s)) falls as a logistic in distance x;
    with the hit rate = that weight, the logistic form recovers x50 = s / m and beta = s (Z = 1)."""
    m, s = 1 / 64, 6.0
    x = np.geomspace(8, 4096, 16)
    hit = 1 / (1 + np.exp(m * x - s))
    f = retrieval.fit_decay(x, hit, form="logistic")
    assert f["x50"] == pytest.approx(s / m, rel=1e-2) and f["beta"] == pytest.approx(s, rel=2e-2)
    assert f["rmse"] < 5e-3 < retrieval.fit_decay(x, hit, form="exponential")["rmse"]


def test_fit_is_weighted_by_prompts():
    x = np.array([10.0, 100.0, 1000.0, 5000.0])
    rate = retrieval.decay_curve(x, 1.0, 300.0, 2.0)
    rate[-1] = 0.5  # one outlying bin ...
    light = retrieval.fit_decay(x, rate, weight=[100, 100, 100, 1])
    heavy = retrieval.fit_decay(x, rate, weight=[1, 1, 1, 100])
    assert abs(light["x50"] - 300) < abs(heavy["x50"] - 300)  # ... pulls the fit only when it carries weight


def test_cost_fit_recovers_a_quadratic():
    secs = {L: 2e-5 * L + 3e-8 * L * L for L in (1024, 2048, 4096)}
    a, b = run.cost_fit(secs)
    assert a == pytest.approx(2e-5, rel=1e-6) and b == pytest.approx(3e-8, rel=1e-6)


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["max_len"] == 128 and 0 <= m["hit_rate_max_len"] <= 1
    assert m["best_fit"] in retrieval.DECAY_FORMS and m["fit_rmse"] == min(
        m[f"{f}_rmse"] for f in retrieval.DECAY_FORMS)
    for what in ("retention", "distance"):
        assert (tmp_path / "plots" / f"day38_{what}.png").is_file()
