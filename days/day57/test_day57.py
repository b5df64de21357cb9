"""Day 57: Holm's correction by hand, the scoreboard's intervals and paired test on known data, a quick run."""

import math

import numpy as np
import pytest

from common.eval import scoreboard
from common.run import runner
from days.day57 import run


def test_holm_by_hand():
    # sorted: .01 x3 = .03, .02 x2 = .04, .04 x1 = .04 (running max); back in input order
    assert run.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert run.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])                 # capped at 1
    assert run.holm([0.001]) == [0.001]


def test_paired_and_sign_test_by_hand():
    a, b = [1, 1, 1, 0, 1, 0], [0, 0, 1, 0, 1, 1]            # A alone right twice, B alone once
    r = scoreboard.paired(a, b, n_boot=500)
    assert r["diff"] == pytest.approx(1 / 6) and (r["a_only"], r["b_only"]) == (2, 1)
    assert r["p"] == pytest.approx(1.0) and r["lo"] <= r["diff"] <= r["hi"]
    assert scoreboard.sign_test_p(0, 6) == pytest.approx(2 / 64)
    with pytest.raises(ValueError):
        scoreboard.paired([1], [1, 0])


def test_interval_covers_the_value_and_bpb_is_a_ratio_of_sums():
    rng = np.random.default_rng(0)
    samples = [{"exact_match": float(x)} for x in rng.uniform(size=400) < 0.3]
    lo, hi = scoreboard.interval(samples, "exact_match")
    assert lo < np.mean([s["exact_match"] for s in samples]) < hi and hi - lo < 0.12
    docs = [{"loglikelihood": -math.log(2) * 10, "bytes": 10}, {"loglikelihood": -math.log(2) * 30, "bytes": 10}]
    assert scoreboard._stat(docs, "bits_per_byte") == pytest.approx(2.0)     # 40 bits / 20 bytes


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert all(1 <= m[f"mean_rank_{k}"] <= 5 for k in run.MODELS)
    assert 0 <= m["significant_pairs_instruct"] <= 10
