"""Day 36: RoPE's score is a function of the offset (closed form vs rotating both vectors), RoFormer's
decay bound really bounds it, the long-length evaluation scores an oracle perfectly, and the run end to end."""

import math

import pytest
import torch

from common.lab.positions import copy_accuracy_at
from common.nn.positional import apply_rope
from common.run import runner
from days.day36 import run
from days.day36.run import (
    eval_plan,
    inv_freq,
    matching_key_score,
    offset_check,
    parse_variant,
    rope_decay_bound,
    rope_relative_score,
)


def rotate(x, t, base):
    """R_t x with float64 angles, through the model's own apply_rope."""
    ang = t * inv_freq(x.shape[-1], base)  # (d/2,)
    return apply_rope(x[None], ang.cos()[None], ang.sin()[None])[0]


@pytest.mark.parametrize("base", [10000.0, 500.0])
def test_rope_relative_score_equals_rotating_both(base):
    torch.manual_seed(0)
    q, k = torch.randn(2, 16, dtype=torch.float64)
    pairs = [(0, 0), (5, 2), (2, 5), (100, 37), (1999, 3), (7, 1500)]
    direct = torch.tensor([rotate(q, m, base) @ rotate(k, n, base) for m, n in pairs], dtype=torch.float64)
    closed = rope_relative_score(q, k, torch.tensor([m - n for m, n in pairs]), base)
    torch.testing.assert_close(closed, direct, rtol=0, atol=1e-10)
    assert closed[0].item() == pytest.approx((q @ k).item())  # offset 0: no rotation at all
    shifted = torch.tensor([rotate(q, m + 300, base) @ rotate(k, n + 300, base) for m, n in pairs])
    torch.testing.assert_close(shifted, direct, rtol=0, atol=1e-10)  # a shift of both changes nothing
    assert abs(closed[1] - closed[2]) > 1e-3  # +3 and -3 differ: the score sees the sign of the offset


def test_rope_decay_bound_closed_form_and_it_bounds_the_score():
    dist = torch.arange(0, 400)
    assert rope_decay_bound(dist[:1], 16)[0].item() == pytest.approx(1.0)
    assert torch.allclose(rope_decay_bound(dist, 2), torch.ones(400, dtype=torch.float64))  # one pair: |S_1| = 1
    th1 = 10000.0 ** -0.5  # d = 4: (1 + |1 + e^(i D (th1 - 1))|) / 3
    expect = (1 + 2 * (dist.double() * (1 - th1) / 2).cos().abs()) / 3
    torch.testing.assert_close(rope_decay_bound(dist, 4), expect)
    torch.manual_seed(1)
    d, n = 16, 8
    for _ in range(5):
        q, k = torch.randn(2, d, dtype=torch.float64)
        h = torch.complex(q[:n], q[n:]) * torch.complex(k[:n], -k[n:])  # z_i conj(w_i)
        jump = (torch.cat([h, h.new_zeros(1)]).diff()).abs().max()  # max_j |h_j - h_(j-1)|, h_n = 0
        bound = jump * rope_decay_bound(dist, d) * n * (n + 1) / 2
        assert (rope_relative_score(q, k, dist).abs() <= bound + 1e-9).all()


def test_matching_key_score_is_the_score_of_a_flat_query_with_itself():
    dist = torch.arange(0, 3000, 7)
    ones = torch.ones(16, dtype=torch.float64)  # every pair has |z_i|^2 = 2
    torch.testing.assert_close(matching_key_score(dist, 16), rope_relative_score(ones, ones, dist) / 16)
    assert matching_key_score(dist[:1], 16).item() == pytest.approx(1.0)


def test_offset_check_by_angle_precision():
    e64, e32, e16 = (offset_check(16, 600, 10000.0, dt) for dt in (torch.float64, torch.float32, torch.bfloat16))
    assert e64 < 1e-12 < e32 < 1e-4 < e16  # float32 angles near 600 are off by ~600 * 2^-24


def test_eval_plan_bounds_the_batch():
    for L, ex, cap in [(64, 32, 8192), (2048, 32, 8192), (4096, 32, 2048), (100, 7, 350)]:
        bs, nb = eval_plan(L, ex, cap)
        assert 1 <= bs <= ex and bs * nb >= ex and (bs * L <= cap or bs == 1) and bs * (nb - 1) < ex


def test_parse_variant():
    assert parse_variant("alibi", 300) == ("alibi", {}, 300, "alibi")
    assert parse_variant("rope:1e6", 300) == ("rope", {"rope_base": 1e6}, 300, "rope_base1e6")
    assert parse_variant("rope@20", 300) == ("rope", {}, 20, "rope_20steps")


def test_long_length_eval_scores_an_oracle_and_a_blind_model():
    n = 5

    def oracle(x):  # the answer at every scored position is the input token n_copy positions back
        return (torch.nn.functional.one_hot(x.roll(n, dims=1), 12).float(),)

    def blind(x):  # always predicts token 0 (the separator), never a content symbol
        return (torch.zeros(*x.shape, 12),)
    for L in (10, 300):
        assert copy_accuracy_at(oracle, L, n, 12, n_batches=3, batch_size=4) == (1.0, 1.0)
        assert copy_accuracy_at(blind, L, n, 12, n_batches=2, batch_size=4) == (0.0, 0.0)


def test_quick_run(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    keys = ("rope", "alibi", "rope_base1e6", "rope_60steps")
    for key in keys:
        for L in (16, 32, 64):
            assert 0 <= m[f"copy_acc_{key}_{L}"] <= 1
        assert m[f"copy_kept_{key}"] == pytest.approx(m[f"copy_acc_{key}_64"] / m[f"copy_acc_{key}_16"], abs=1e-3)
    assert m["rope_offset_only_f64"] is True and 1e-12 < m["rope_offset_err_f32"] < m["rope_offset_err_bf16"]
    assert m["rope_slow_pairs_base10000"] == 7 and set(m["best_at_longest"].split("+")) <= set(keys)
    assert m["alibi_heads_reaching_copy"] == sum(math.exp(-s * 5) > 0.5 for s in (1 / 16, 1 / 256))
    text = (tmp_path / "deliverable.md").read_text()
    assert text.count("What to look at") >= 8  # after each of the 5 tables and 3 plots
    for name in ("rope_decay", "alibi_factor", "copy_accuracy_vs_length"):
        assert (tmp_path / "plots" / f"day36_{name}.png").is_file()
