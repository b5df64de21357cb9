"""Day 2: torch.compile must change speed, never results."""

import time

import pytest
import torch

from common import data
from common.lab import bench
from common.nn.model import GPT, gpt_config
from common.run import runner
from common.train import TrainConfig, train
from days.day02 import run


def _model(seed=0):
    torch.manual_seed(seed)
    return GPT(gpt_config("nano"))


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_forward_and_backward_match_eager(backend):
    torch._dynamo.reset()
    eager, comp = _model(), _model()
    compiled = torch.compile(comp, backend=backend)
    x = torch.randint(0, 65, (2, 16))
    le, loss_e = eager(x, x)
    lc, loss_c = compiled(x, x)
    torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-5)
    loss_e.backward()
    loss_c.backward()
    for (n, pe), pc in zip(eager.named_parameters(), comp.parameters()):
        torch.testing.assert_close(pc.grad, pe.grad, rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.slow
def test_inductor_matches_eager():
    """The real CPU code generator (slow: compiles C++)."""
    torch._dynamo.reset()
    eager, comp = _model(), _model()
    x = torch.randint(0, 65, (2, 16))
    torch.testing.assert_close(torch.compile(comp)(x)[0], eager(x)[0], rtol=1e-4, atol=1e-5)


def test_train_loop_compile_switch_gives_the_same_losses():
    torch._dynamo.reset()
    tokens = torch.arange(3000) % 11
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(1)
        m = GPT(gpt_config("nano"))
        tb, vb = data.Batches(tokens, 32, 4), data.Batches(tokens, 32, 4)
        r = train(m, tb, vb, TrainConfig(max_iters=5, eval_iters=1, log_interval=1, compile=compiled,
                                          compile_backend="aot_eager"), "cpu", show_progress=False)
        losses[compiled] = r.train_log["loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_time_fn_warms_up_untimed_and_interleave_alternates_the_variants():
    calls = []
    t = bench.time_fn(lambda: calls.append(len(calls)) or time.sleep(0.002), warmup=2, repeats=3)
    assert len(calls) == 5 and len(t.times) == 3  # 2 warm-up calls, none of them timed
    assert all(0.002 <= x < 1.0 for x in t.times)  # each timed call includes its own sleep
    order = []
    out = bench.interleave({n: (lambda n=n: order.append(n) or len(order)) for n in "abc"}, rounds=2, rotate=True)
    assert order == ["a", "b", "c", "b", "c", "a"]  # one call of each per round, round r starts at variant r
    assert out == {"a": [1, 6], "b": [2, 4], "c": [3, 5]}


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["eager_tokens_per_s"] > 0 and m["compiled_tokens_per_s"] > 0 and m["compile_speedup"] > 0
    assert m["max_loss_gap"] < 1e-3  # same seed, same batches: the curves coincide
    assert (tmp_path / "plots" / "day02_loss_eager_vs_compiled.png").is_file()
    assert "Eager vs compiled" in (tmp_path / "deliverable.md").read_text()
