import json
import random

import numpy as np
import pytest
import torch

from common.lab import bench, determinism
from common.run import tracking


def test_tracker_writes_jsonl_tensorboard_and_summary(tmp_path):
    t = tracking.Tracker(tmp_path / "run")
    for step in range(3):
        t.log("train/loss", 1.0 / (step + 1), step)
    t.log_dict({"a": 1, "b": 2.5}, step=7, prefix="eval/")
    t.summary(status="ok", metrics={"x": 1.5})
    t.close()
    recs = tracking.read_metrics(tmp_path / "run")
    assert [r["name"] for r in recs] == ["train/loss"] * 3 + ["eval/a", "eval/b"]
    assert recs[1] == {**recs[1], "step": 1, "value": 0.5} and set(recs[0]) == {"step", "name", "value", "time"}
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "ok" and s["metrics"] == {"x": 1.5} and s["wall_time_s"] >= 0


def test_environment_and_banner():
    env = tracking.environment("cpu")
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    text = tracking.banner("Day 1: x", env, 1337, "cpu", "abc123")
    assert "seed 1337" in text and f"torch {torch.__version__}" in text and "config abc123" in text


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))
    determinism.seed_everything(3)
    a = draw()
    determinism.seed_everything(3)
    assert draw() == a
    determinism.seed_everything(4)
    assert draw() != a
    with pytest.raises(ValueError):
        determinism.seed_everything(-1)


def test_rng_state_round_trip():
    determinism.seed_everything(0)
    state = determinism.rng_state()
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    determinism.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == a


def test_time_fn_counts_and_orders():
    calls = []
    t = bench.time_fn(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7 and len(t.times) == 5 and t.min <= t.mean and t.std >= 0
    slow = bench.time_fn(lambda: sum(range(200_000)), warmup=1, repeats=3)
    fast = bench.time_fn(lambda: sum(range(2_000)), warmup=1, repeats=3)
    assert slow.median > fast.median


def test_peak_memory_sees_an_allocation():
    with bench.PeakMemory("cpu") as m:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB
        x += 1
        import time
        time.sleep(0.05)
    del x
    assert m.delta_bytes > 40 * 2**20


def test_mean_std_format():
    assert bench.mean_std([1, 2, 3]) == (2.0, 1.0)
    assert bench.fmt_mean_std([1.0, 1.0]) == "1 ± 0"


def test_compare_interleaves_and_counts():
    order = []
    t = bench.compare({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=3, repeats=2,
                      warmup=1)
    assert order[:2] == ["a", "b"]  # warm-up of each
    assert order[2:] == ["a", "a", "b", "b"] * 3  # rounds alternate the variants
    assert len(t["a"].times) == 6
    assert len(bench.compare({"x": lambda: None}, rounds=4, per_round=True)["x"].times) == 4


def test_deterministic_context_restores_every_switch():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    with determinism.deterministic(True, warn_only=True):
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


def test_interleave_rotates_the_starting_variant():
    order = []
    out = bench.interleave({n: (lambda n=n: order.append(n) or len(order)) for n in "abc"}, rounds=3, rotate=True)
    assert order == list("abc" "bca" "cab")
    assert out["a"] == [1, 6, 8] and out["c"] == [3, 5, 7]
    order.clear()
    bench.interleave({n: (lambda n=n: order.append(n)) for n in "ab"}, rounds=2)
    assert order == list("abab")


def test_compare_min_time_keeps_calling():
    import time

    t = bench.compare({"x": lambda: time.sleep(0.001)}, rounds=1, repeats=1, warmup=0, min_time=0.02)
    assert len(t["x"].times) >= 5


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from common.run import atomic

    umask = os.umask(0o022)
    try:
        p = atomic.write_text(tmp_path / "new.txt", "x")
        assert p.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        p.chmod(0o640)
        atomic.write_text(p, "y")
        assert p.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode
    finally:
        os.umask(umask)
