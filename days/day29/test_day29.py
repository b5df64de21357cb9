"""Day 29: the three schedules share peak and budget; the selection rule does what it says."""

import pytest

from common.run import runner
from common.train import TrainConfig, lr_at
from days.day29 import run


def test_schedules_share_the_peak_and_end_low():
    cfg = run.Config()
    for name, over in run.schedules(cfg).items():
        tc = TrainConfig(max_iters=cfg.max_iters, lr=cfg.lr, **over)
        lrs = [lr_at(i, tc) for i in range(cfg.max_iters)]
        assert max(lrs) == pytest.approx(cfg.lr), name
        assert lrs[-1] <= cfg.lr / 10 * 1.1, name  # one step short of the floor


def test_wsd_holds_the_peak_longest():
    cfg = run.Config()
    at_peak = {}
    for name, over in run.schedules(cfg).items():
        tc = TrainConfig(max_iters=cfg.max_iters, lr=cfg.lr, **over)
        at_peak[name] = sum(lr_at(i, tc) >= 0.99 * cfg.lr for i in range(cfg.max_iters))
    assert at_peak["wsd"] > at_peak["cosine"] > 0 and at_peak["wsd"] > at_peak["one-cycle"]


def test_pick_best_rule():
    r = {"a": {"final": 1.900, "val": [2.0, 1.95, 1.91]}, "b": {"final": 1.903, "val": [1.92, 1.91, 1.90]},
         "c": {"final": 1.95, "val": [1.0, 1.0, 1.0]}}
    assert run.pick_best(r, 0.005) == "b"  # a and b tie; b has the lower recent mean; c is out of the tie
    assert run.pick_best(r, 0.0) == "a"


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    assert s["metrics"]["best_schedule"] in ("cosine", "one-cycle", "wsd")
    assert (tmp_path / "plots" / "day29_val_loss.png").is_file()
