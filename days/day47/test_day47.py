"""Day 47: the nucleus by hand, the mass each cut-off keeps, and a quick run of the sweep."""

import math

import pytest
import torch

from common.nn import sampling
from common.run import runner
from days.day47 import run


def test_nucleus_is_the_smallest_set_reaching_p():
    probs = torch.tensor([0.1, 0.5, 0.25, 0.15])
    assert run.nucleus(probs, 0.5).tolist() == [False, True, False, False]    # 0.5 alone reaches 0.5
    assert run.nucleus(probs, 0.6).tolist() == [False, True, True, False]     # 0.75 >= 0.6, 0.5 < 0.6
    assert run.nucleus(probs, 0.9).tolist() == [False, True, True, True]      # 0.9 exactly
    assert run.nucleus(probs, 1.0).all()
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        logits = torch.randn(1, 30, generator=g) * 2
        p = float(torch.rand(1, generator=g)) * 0.98 + 0.01
        keep = run.nucleus(torch.softmax(logits[0], -1), p)
        assert torch.equal(keep, torch.isfinite(sampling.top_p(p)(logits, None))[0])
        kept = torch.softmax(logits[0], -1)[keep]
        assert kept.sum() >= p - 1e-6 and kept.sum() - kept.min() < p  # reaches p; one fewer would not


def test_kept_mass_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    n, m = run.kept_mass(logits, [sampling.top_k(2)])
    assert n.tolist() == [2] and m.item() == pytest.approx(0.8)
    n, m = run.kept_mass(logits, [sampling.min_p(0.25)])  # keeps p >= 0.125
    assert n.tolist() == [3] and m.item() == pytest.approx(0.95)
    n, m = run.kept_mass(logits, [sampling.temperature(2.0)])
    assert n.tolist() == [4] and m.item() == pytest.approx(1.0)
    n, m = run.kept_mass(logits, [sampling.temperature(3.0), sampling.top_p(0.5)])  # flatter: more tokens for p
    assert n.item() >= run.kept_mass(logits, [sampling.top_p(0.5)])[0].item()
    assert math.isclose(run.kept_mass(logits, [sampling.top_p(0.5)])[1].item(), 0.5, rel_tol=1e-5)


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert 0 <= m["accuracy_greedy"] <= 1 and 0 <= m["accuracy_t1"] <= m["best_of_k_t1"] + 1e-9
    assert 0 < m["distinct_t1"] <= 1 and m["nucleus_agreement"] == 1.0
