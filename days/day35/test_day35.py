"""Day 35: first-fit allocation, the slot classes and paged growth (the exercises), the closed forms the
simulator should reproduce, and a quick end-to-end run."""

import numpy as np
import pytest

from common.lab.paging import FirstFit, grow, make_trace, simulate, slot_classes
from common.run import runner
from days.day35 import run

SMALL = dict(budget=4096, max_len=512)


def trace(n=400, seed=0):
    return make_trace(n, float("inf"), seed, max_len=512, prompt_median=32, output_median=48)


def test_first_fit_places_at_the_lowest_fitting_address():
    s = FirstFit(16)
    assert [s.alloc(5), s.alloc(5), s.alloc(5), s.alloc(5)] == [0, 5, 10, None]
    assert s.free_total == 1 and s.holes() == [(15, 1)]
    s.free(5, 5)
    assert s.alloc(3) == 5 and s.alloc(1) == 8 and s.alloc(2) is None  # (9, 1) and (15, 1) left: 2 free, no run of 2
    assert s.free_total == 2 and s.largest() == 1
    assert s.alloc(1) == 9 and s.alloc(1) == 15 and s.free_total == 0 and s.holes() == []


def test_slot_classes_of_three_allocators():
    # contiguous max (2048 held), oracle (F held), paged b=16 at L = 100 of F = 120 (112 held)
    assert slot_classes([2048], [100], [120]) == (100, 20, 1928)
    assert slot_classes([120], [100], [120]) == (100, 20, 0)
    assert slot_classes([112], [100], [120]) == (100, 12, 0)
    assert slot_classes([128], [120], [120]) == (120, 0, 8)   # a finished paged request: the tail of its last block
    a, l, f = np.array([2048, 120, 112, 128]), np.array([100, 100, 100, 120]), np.array([120, 120, 120, 120])
    assert sum(slot_classes(a, l, f)) == a.sum()


def test_grow_takes_blocks_and_preempts_the_latest_arrival():
    length, held = np.array([16, 5, 32, 48]), np.array([16, 16, 32, 48])
    assert grow([0, 1, 2, 3], length, held, 16, 3) == ([0, 2, 3], [])
    assert grow([0, 1, 2, 3], length, held, 16, 1) == ([0, 2], [3])   # 3 frees its 3 blocks: enough for 0 and 2
    assert grow([0, 1, 2, 3], length, held, 16, 0) == ([0, 2], [3])
    assert grow([2, 1], np.array([0, 3, 16]), np.array([0, 16, 16]), 16, 0) == ([], [2])


def test_max_len_token_share_is_the_renewal_reward_formula():
    """Saturated, `max` always runs budget / max_len requests; a request of (p, o) holds p+1 ... p+o tokens
    over its o steps, so the token share is E[o (p + (o+1)/2)] / (E[o] max_len)."""
    tr = trace(1000)
    r = simulate(tr, "max", **SMALL)
    p, o = tr.prompt.astype(float), tr.output.astype(float)
    pred = 100 * (o * (p + (o + 1) / 2)).mean() / o.mean() / 512
    assert r.batch_bound == pytest.approx(8, abs=0.01)
    assert r.shares()["tokens"] == pytest.approx(pred, abs=1.5)


def test_paged_internal_fragmentation_is_half_a_block_per_sequence():
    tr = trace(600)
    for b in (8, 32):
        r = simulate(tr, "paged", block=b, **SMALL)
        pred = 100 * r.batch_bound * (b - 1) / 2 / 4096
        assert r.shares()["internal"] == pytest.approx(pred, rel=0.15), b
        assert r.shares()["external"] == 0


def test_only_unequal_reservations_fragment_externally():
    tr = trace(400)
    assert simulate(tr, "max", **SMALL).shares()["external"] == 0
    assert simulate(tr, "oracle", **SMALL).shares()["external"] > 1


def test_quick_run_end_to_end(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["waste_pct_b1"] <= m["waste_pct_b16"] < m["waste_pct_b128"]
    assert m["waste_pct_paged"] == m["waste_pct_b16"] < 100 - m["token_pct_oracle"]
    assert m["token_pct_max"] < m["token_pct_pow2"] < m["token_pct_oracle"]
    assert m["token_pct_max"] == pytest.approx(m["token_pct_pred_max"], abs=2)
    assert m["capacity_gain_paged"] > 2 and m["batch_paged"] > m["batch_max"] == 8
    assert m["lat_var_max"] > m["lat_var_paged"] and m["lat_p99_max"] > m["lat_p99_paged"]
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"day35_waste_vs_block.png", "day35_latency_cdf.png",
                                                                "day35_latency_std_vs_rate.png"}
