"""common/lab/paging.py: first-fit allocation, the slot classes, paged growth, and the simulator's
conservation laws (every request finishes, the memory classes add up to the budget)."""

import numpy as np
import pytest

from common.lab.paging import CLASSES, FirstFit, grow, make_trace, paged_slots, reservation, simulate, slot_classes

SMALL = dict(budget=4096, max_len=512)


def small_trace(n=300, rate=float("inf"), seed=0):
    return make_trace(n, rate, seed, max_len=512, prompt_median=32, output_median=48)


def test_first_fit_takes_the_lowest_hole_that_fits_and_merges_on_free():
    s = FirstFit(10)
    assert [s.alloc(4), s.alloc(4), s.alloc(4)] == [0, 4, None]
    s.free(0, 4)
    assert s.holes() == [(0, 4), (8, 2)] and s.free_total == 6
    s2 = FirstFit(10)
    a, b, c = s2.alloc(3), s2.alloc(3), s2.alloc(4)
    s2.free(a, 3), s2.free(c, 4)
    assert s2.free_total == 7 and s2.largest() == 4 and s2.alloc(5) is None  # external fragmentation
    s2.free(b, 3)
    assert s2.holes() == [(0, 10)] and s2.free_total == 10                   # merged back into one hole


def test_first_fit_prefers_the_first_hole_over_the_best():
    s = FirstFit(20)
    a, _, c, _ = s.alloc(5), s.alloc(1), s.alloc(2), s.alloc(1)
    s.free(a, 5), s.free(c, 2)                         # holes (0, 5), (6, 2), (9, 11)
    assert s.alloc(2) == 0 and s.holes() == [(2, 3), (6, 2), (9, 11)]


def test_free_in_any_order_leaves_one_hole():
    rng = np.random.default_rng(0)
    s, runs = FirstFit(1000), []
    while (a := s.alloc(n := int(rng.integers(1, 60)))) is not None:
        runs.append((a, n))
    for k in rng.permutation(len(runs)):
        s.free(*runs[k])
    assert s.holes() == [(0, 1000)] and s.free_total == 1000


def test_equal_reservations_never_fragment():
    """With one size s and a space of k*s, every run starts at a multiple of s: free >= s always fits."""
    rng = np.random.default_rng(1)
    s, live = FirstFit(8 * 64), []
    for _ in range(500):
        if live and rng.random() < 0.5:
            s.free(live.pop(int(rng.integers(len(live)))), 64)
        else:
            had = s.free_total
            a = s.alloc(64)
            assert (a is None) == (had < 64)
            if a is not None:
                assert a % 64 == 0
                live.append(a)


def test_reservations_and_pages():
    assert reservation("max", 300, 2048) == 2048 and reservation("oracle", 300, 2048) == 300
    assert [reservation("pow2", f, 2048) for f in (1, 300, 512, 513, 2000)] == [1, 512, 512, 1024, 2048]
    with pytest.raises(ValueError):
        reservation("paged", 300, 2048)
    for b in (1, 4, 16, 128):
        for t in (1, 15, 16, 17, 300):
            held = paged_slots(t, b)
            assert held % b == 0 and 0 <= held - t < b


def test_slot_classes_split_what_is_held():
    A, L, F = [2048, 512, 48], [100, 300, 40], [400, 350, 40]  # max-len, pow2, a paged request at its end
    tok, fut, nev = slot_classes(A, L, F)
    assert (tok, fut, nev) == (440, 300 + 50, 1648 + 162 + 8)
    assert tok + fut + nev == sum(A)


def test_grow_preempts_the_latest_arrivals_until_the_rest_fit():
    length, held = np.array([16, 5, 32, 8]), np.array([16, 16, 32, 16])
    assert grow([0, 1, 2], length, held, 16, 2) == ([0, 2], [])
    assert grow([0, 1, 2], length, held, 16, 1) == ([0], [2])         # 2 frees its own two blocks
    assert grow([0, 1, 2, 3], length, held, 8, 0) == ([0, 2], [3])    # 3 is full too, and frees 2 blocks of 8
    assert grow([1], length, held, 16, 0) == ([], [])


def test_every_request_finishes_and_the_classes_fill_the_budget():
    tr = small_trace()
    for alloc, b in (("max", 16), ("pow2", 16), ("oracle", 16), ("paged", 1), ("paged", 16), ("paged", 128)):
        r = simulate(tr, alloc, block=b, **SMALL)
        assert (r.finish > 0).all() and (r.latency >= tr.output).all() and (r.wait >= 0).all()
        sh = r.shares()
        assert sum(sh[k] for k in CLASSES) == pytest.approx(100.0)
        assert r.slots["tokens"] > 0 and r.bound_steps > 0
        if alloc == "paged":
            assert sh["external"] == 0                  # any free block will do
        else:
            assert r.preempted.sum() == 0               # a reservation never grows
        if alloc == "oracle" or (alloc == "paged" and b == 1):
            assert sh["never"] == 0
        if alloc == "max":
            assert sh["external"] == 0                  # budget = 8 * max_len: equal runs never fragment
    r1 = simulate(tr, "paged", block=1, **SMALL)
    assert r1.shares()["future"] == 0 and r1.shares()["internal"] == 0


def test_simulation_is_deterministic():
    a, b = small_trace(seed=3), small_trace(seed=3)
    ra, rb = simulate(a, "pow2", **SMALL), simulate(b, "pow2", **SMALL)
    assert (ra.finish == rb.finish).all() and ra.slots == rb.slots


def test_with_ample_memory_no_request_waits():
    tr = small_trace(n=100, rate=0.5)
    for alloc in ("max", "oracle", "paged"):
        r = simulate(tr, alloc, budget=100 * 512, max_len=512)
        assert (r.latency == tr.output).all() and r.bound_steps == 0 and not r.shares()


def test_paging_packs_more_requests_than_reservations():
    tr = small_trace()
    batch = {a: simulate(tr, a, **SMALL).batch_bound for a in ("max", "pow2", "oracle", "paged")}
    assert batch["max"] == pytest.approx(8, abs=0.01)  # 4096 / 512 slots
    assert batch["max"] < batch["pow2"] < batch["paged"] and batch["oracle"] < batch["paged"]
