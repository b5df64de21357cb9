"""Day 49: the alignment tax and perplexity by hand, bad sweeps refused, and a quick run."""

import math

import pytest

from common.run import runner
from common.run.errors import UserError
from days.day49 import run


def test_tax_and_perplexity_by_hand():
    assert run.perplexity(0.0) == 1.0
    assert run.perplexity(math.log(5)) == pytest.approx(5.0)
    assert run.alignment_tax(5.5, 5.0) == pytest.approx(0.1)
    assert run.alignment_tax(4.0, 5.0) == pytest.approx(-0.2)
    # a rise of d nats in mean NLL is a tax of exp(d) - 1
    assert run.alignment_tax(run.perplexity(1.3), run.perplexity(1.2)) == pytest.approx(math.exp(0.1) - 1)


def test_sweep_values_are_checked():
    assert run.floats("0.1, 1") == [0.1, 1.0]
    with pytest.raises(UserError, match="comma-separated"):
        run.floats("0.1,lots")


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["win_rate_low"] <= m["win_rate"] <= m["win_rate_high"]
    assert m["alignment_tax"] == m["tax_dpo_0.1"]
    assert {"win_rate_dpo_1", "kl_ppo_0", "kl_grpo_0.05"} <= set(m)
