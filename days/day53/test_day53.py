"""Day 53: the grid-search temperature agrees with L-BFGS, ECE from bins matches the library, and a quick run."""

import numpy as np
import pytest
import torch

from common.eval import calibration as C
from common.run import runner
from days.day53 import run


def test_grid_temperature_agrees_with_lbfgs():
    torch.manual_seed(0)
    logits = torch.randn(5000, 10) * 2
    labels = torch.distributions.Categorical(logits=logits).sample()
    grid = np.round(np.arange(0.5, 4.0001, 0.01), 2)
    t_grid = run.fit_temperature_grid(logits * 2.5, labels, grid)
    assert t_grid == pytest.approx(C.fit_temperature(logits * 2.5, labels), abs=0.011)
    assert t_grid == pytest.approx(2.5, rel=0.06)


def test_ece_from_bins_matches_the_library():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 1000)
    correct = rng.uniform(size=1000) < conf ** 2           # overconfident on purpose
    bins = C.reliability(conf, correct, 10)
    assert run.ece_from_bins(bins, 1000) == pytest.approx(C.ece(conf, correct, 10))
    assert run.ece_from_bins([{"count": 0, "accuracy": None, "confidence": None}], 1) == 0


def test_answer_logits_cover_only_the_answer_and_end():
    from common.data import instruct
    from common.nn.model import GPT, GPTConfig
    from common.train import posttrain

    model = GPT(GPTConfig(vocab_size=posttrain.TOKENIZER.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=16,
                          pos="rope")).eval()
    exs = instruct.generate(20, seed=0)["val"][:5]
    lg, tg = run.answer_logits(model, exs)
    assert len(tg) == sum(len(posttrain.TOKENIZER.encode(e.answer)) + 1 for e in exs) and lg.shape == (len(tg), 105)


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("mnist", "train-images-idx3-ubyte.gz")
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["accuracy_after"] == m["test_accuracy"] and m["ece_from_bins_agrees"] == 1.0
    assert m["temperature"] > 0 and 0 <= m["ece_after"] <= 1 and 0 <= m["lm_ece_before"] <= 1
