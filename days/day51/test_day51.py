"""Day 51: the multiple-choice pick and bits per byte by hand, and a quick run end to end."""

import math

import pytest

from common.run import runner
from days.day51 import run


def test_pick_total_and_per_byte():
    lls, choices = [-2.0, -4.0], ["ab", "longer"]        # per byte: -1.0 vs -0.67
    assert run.pick(lls, choices, normalise=False) == 0
    assert run.pick(lls, choices, normalise=True) == 1
    assert run.pick([-3.0, -3.0], ["é", "ab"], normalise=True) in (0, 1)   # "é" is 2 bytes: a tie
    assert run.pick([-1.0, -5.0, -0.5], ["a", "b", "c"], normalise=False) == 2


def test_bits_per_byte_by_hand():
    assert run.bits_per_byte(-8 * math.log(2), 8) == pytest.approx(1.0)     # 1 bit per byte
    assert run.bits_per_byte(-100 * math.log(256), 100) == pytest.approx(8.0)  # uniform over bytes


def test_hf_parity_is_exact_to_rounding():
    par = run.hf_parity(6, seed=0)
    assert par["same_choices"] and par["max_abs_diff"] < 1e-3 and par["pairs"] == 24


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["definitions_agree"] == 1.0 and m["hf_same_choices"] == 1.0
    assert all(0 <= m[f"instruct_mc_acc_{k}"] <= 1 for k in run.MODELS)
    assert all(m[f"tinystories_bpb_{k}"] > 0 for k in run.MODELS)
