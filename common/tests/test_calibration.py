"""common/eval/calibration.py: ECE and reliability bins by hand, temperature scaling recovers a known
temperature and never changes accuracy, and the MNIST reader parses IDX headers."""

import gzip
import struct

import numpy as np
import pytest
import torch

from common.data import mnist
from common.eval import calibration as C


def test_ece_by_hand():
    # two bins of width 0.5: (0, .5] holds conf .3 (wrong) and .4 (right); (.5, 1] holds .9, .9, .8 (right, right,
    # wrong). gaps: |.5 - .35| = .15 with weight 2/5, |2/3 - 2.6/3| = .2 with weight 3/5 -> .06 + .12 = .18
    conf, correct = [0.3, 0.4, 0.9, 0.9, 0.8], [0, 1, 1, 1, 0]
    assert C.ece(conf, correct, n_bins=2) == pytest.approx(0.18)
    assert C.mce(conf, correct, n_bins=2) == pytest.approx(0.2)
    bins = C.reliability(conf, correct, n_bins=2)
    assert [b["count"] for b in bins] == [2, 3] and bins[1]["accuracy"] == pytest.approx(2 / 3)


def test_edges_and_empty_bins():
    bins = C.reliability([0.0, 0.5, 1.0], [1, 1, 1], n_bins=4)
    assert [b["count"] for b in bins] == [1, 1, 0, 1]          # 0 -> first bin, .5 -> (.25, .5], 1 -> last
    assert bins[2]["accuracy"] is None


def test_ece_of_a_calibrated_sampler_is_small():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, 200_000)
    correct = rng.uniform(size=conf.size) < conf              # right with probability exactly `conf`
    assert C.ece(conf, correct) < 0.005
    assert C.ece(np.full(1000, 0.99), np.zeros(1000)) == pytest.approx(0.99)


def test_temperature_scaling_recovers_the_true_temperature():
    torch.manual_seed(0)
    true_logits = torch.randn(20_000, 10) * 2
    labels = torch.distributions.Categorical(logits=true_logits).sample()   # calibrated at T = 1
    T = C.fit_temperature(true_logits * 3.0, labels)                        # an overconfident model: x3
    assert T == pytest.approx(3.0, rel=0.05)
    before, after = C.summary(true_logits * 3.0, labels), C.summary(true_logits * 3.0, labels, T)
    assert after["accuracy"] == before["accuracy"]                          # argmax unchanged
    assert after["ece"] < before["ece"] / 3 and after["nll"] < before["nll"]


def test_fitted_temperature_minimises_nll():
    torch.manual_seed(1)
    logits, labels = torch.randn(500, 5) * 4, torch.randint(0, 5, (500,))
    T = C.fit_temperature(logits, labels)
    assert all(C.nll(logits, labels, T) <= C.nll(logits, labels, T * f) + 1e-6 for f in (0.8, 0.95, 1.05, 1.25))


def test_brier_by_hand():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    assert C.brier(logits, torch.tensor([0])) == pytest.approx(0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2)


def test_read_idx():
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = struct.pack(">HBB3I", 0, 8, 3, 2, 3, 4) + data.tobytes()
    assert (mnist.read_idx(raw) == data).all()
    with pytest.raises(ValueError, match="holds"):
        mnist.read_idx(raw[:-1])
    assert gzip.decompress(gzip.compress(raw)) == raw


def test_mnist_loads(require_data):
    require_data("mnist", "t10k-images-idx3-ubyte.gz")
    x, y = mnist.load("test")
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8 and y.tolist()[:5] == [7, 2, 1, 0, 4]
    assert torch.bincount(y).min() > 800
