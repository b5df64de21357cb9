"""Day 28: the grid keeps the effective batch, accumulation is exact, Amdahl and Karp–Flatt, the run works."""

import pytest
import torch

from common.data import corpus
from common.nn.model import GPT, gpt_config
from common.run import runner
from common.run.errors import UserError
from days.day28 import run


def test_grid_keeps_the_effective_batch():
    assert run.grid(32) == [(1, 32), (2, 16), (4, 8), (8, 4), (16, 2), (32, 1)]
    for e in (1, 12, 64):
        g = run.grid(e)
        assert all(m * a == e for m, a in g) and len({m for m, _ in g}) == len(g)
        assert g[0] == (1, e) and g[-1] == (e, 1)
    with pytest.raises(UserError):
        run.grid(0)


def test_accumulation_in_the_loop_equals_one_big_batch():
    torch.manual_seed(0)
    model = GPT(gpt_config("nano", vocab_size=50, block_size=16))
    x, y = torch.randint(0, 50, (8, 16)), torch.randint(0, 50, (8, 16))
    direct = torch.autograd.grad(model(x, y)[1], list(model.parameters()))
    for micro in (1, 2, 4, 8):
        assert run.max_rel_diff(run.accumulated_grads(model, x, y, micro), direct) < 1e-5, micro
    # not vacuous: one micro-batch alone, or a sum instead of a mean, is far from the full-batch gradient
    alone = torch.autograd.grad(model(x[:2], y[:2])[1], list(model.parameters()))
    assert run.max_rel_diff(alone, direct) > 0.05
    summed = [4 * g for g in run.accumulated_grads(model, x, y, 2)]
    assert run.max_rel_diff(summed, direct) > 1


def test_amdahl_closed_form():
    assert run.amdahl(0.3, 1) == pytest.approx(1.0)
    assert run.amdahl(0.0, 8) == pytest.approx(8.0)      # nothing serial: the full k
    assert run.amdahl(1.0, 8) == pytest.approx(1.0)      # all serial: no gain
    assert run.amdahl(0.25, 3) == pytest.approx(2.0)     # 1 / (1/4 + 1/4)
    assert run.amdahl(0.1, 1e12) == pytest.approx(10.0)  # the 1/s ceiling
    s = [run.amdahl(0.2, k) for k in (1, 2, 4, 8, 16)]
    assert all(a < b < 5 for a, b in zip(s, s[1:]))


def test_karp_flatt_inverts_amdahl():
    for e in (0.01, 0.1, 0.5):
        for p in (2, 4, 16):
            assert run.karp_flatt(run.amdahl(e, p), p) == pytest.approx(e)
    assert run.karp_flatt(4.0, 4) == pytest.approx(0.0)  # perfect scaling
    assert run.karp_flatt(1.0, 4) == pytest.approx(1.0)  # no scaling


def test_quick_run_end_to_end(tmp_path, require_data):
    for n, f in corpus.SOURCES:
        require_data(n, f)
    threads = torch.get_num_threads()
    m = runner.quick(run, tmp_path, threads=2)["metrics"]
    assert torch.get_num_threads() == threads  # the thread count is restored
    tps = [m[f"tps_mb{mb}_acc{8 // mb}"] for mb in (1, 2, 4, 8)]
    assert all(t > 0 for t in tps) and m["best_tps"] == max(tps) and m["best_over_worst"] >= 1
    assert m["grad_accum_max_rel_diff"] < 1e-5
    fr = [m[f"frac_{k}"] for k in ("data", "forward", "backward", "optimizer", "other")]
    assert sum(fr) == pytest.approx(1, abs=1e-3) and min(fr[:4]) > 0 and fr[4] > -0.05
    assert m["amdahl_limit"] == pytest.approx(1 / m["amdahl_serial"], rel=1e-2)
    assert "karp_flatt_serial_fraction" in m
    for what in ("tokens_per_s", "amdahl"):
        assert (tmp_path / "plots" / f"day28_{what}.png").is_file()
