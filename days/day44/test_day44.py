"""Day 44: win values, the KL estimators summed per reply, the rating items, and a quick run."""

import numpy as np
import pytest
import torch

from common.eval import metrics, ratings
from common.run import runner
from days.day44 import run


def test_win_values_and_the_accuracy_identity():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert run.win_values(a, b) == [0.5, 1.0, 0.0, 0.5, 1.0]
    rng = np.random.default_rng(0)
    a, b = rng.random(200) < 0.6, rng.random(200) < 0.4
    w = np.mean(run.win_values(a, b))  # a verifier win rate is 1/2 + (acc_a - acc_b) / 2 exactly
    assert w == pytest.approx(0.5 + (a.mean() - b.mean()) / 2)
    assert w == pytest.approx(metrics.win_rate(a.astype(float), b.astype(float)))


def test_sequence_kl_sums_the_token_estimators_over_the_reply():
    lp = torch.tensor([[-1.0, -0.5, -2.0], [-0.1, -0.2, -0.3]])
    lr = torch.tensor([[-1.5, -0.5, -1.0], [-0.1, -0.4, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    k1, k3 = run.sequence_kl(lp, lr, mask)
    torch.testing.assert_close(k1, torch.tensor([0.5 + 0.0, 0.2 + 8.7]))
    r = lr - lp  # log(ref / policy)
    by_hand = (torch.exp(r) - 1 - r) * mask
    torch.testing.assert_close(k3, by_hand.sum(-1))
    assert (k3 >= 0).all()


def test_kl_estimators_agree_with_the_exact_kl_on_a_categorical():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(6, generator=g), 0)
    q = torch.softmax(torch.randn(6, generator=g), 0)
    exact = (p * (p / q).log()).sum()
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    k1, k3 = run.sequence_kl(p.log()[x][None], q.log()[x][None], torch.ones(1, len(x)))
    assert (k1 / len(x)).item() == pytest.approx(exact.item(), abs=0.01)
    assert (k3 / len(x)).item() == pytest.approx(exact.item(), abs=0.01)


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["win_rate_test_low"] <= m["win_rate_test"] <= m["win_rate_test_high"]
    assert m["win_rate_test"] == pytest.approx(0.5 + (m["exact_match_test_dpo"] - m["exact_match_test_sft"]) / 2,
                                               abs=1e-4)
    assert "helpfulness_score" not in m  # nobody rated: the human target stays pending


def test_rating_items_are_blind_and_reproducible():
    its = ratings.blind_items(["p0", "p1"], {"sft": ["a", "b"], "dpo": ["c", "d"]}, seed=1)
    assert its == ratings.blind_items(["p0", "p1"], {"sft": ["a", "b"], "dpo": ["c", "d"]}, seed=1)
    assert all(set(it) == {"item", "prompt", "reply_a", "reply_b", "model_a", "model_b"} for it in its)


def test_rate_command_refuses_a_bad_count(capsys):
    from days.day44 import rate

    assert rate.main(["--n", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_rate_items_come_from_both_models(tmp_path, require_data):
    require_data("tinystories")
    from days.day44 import rate

    items = rate.build_items(4, seed=0, preset="nano", cache=tmp_path)
    assert len(items) == 4 and all({it["model_a"], it["model_b"]} == {"sft", "dpo"} for it in items)
    assert items == rate.build_items(4, seed=0, preset="nano", cache=tmp_path)  # the same items every session
