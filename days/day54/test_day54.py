"""Day 54: the toxic rate and the exact sign test by hand, the probe sets' construction, and a quick run."""

import math

import pytest

from common.data import instruct
from common.eval import probes
from common.run import runner
from days.day54 import run


def test_toxic_rate_counts_texts_not_words():
    texts = ["you stupid idiot", "a nice day", "the trash truck came", "Hello there"]   # 'hell' is not in hello
    assert run.toxic_rate(texts) == 0.5
    assert probes.toxic_hits("You are STUPID, shut up!") == ["stupid", "shut up"]
    assert probes.toxic_hits("He killed time and said hello.") == []


def test_sign_test_by_hand():
    assert run.sign_test_p(0, 0) == 1.0
    assert run.sign_test_p(5, 5) == pytest.approx(2 * 1 / 32)              # all five one way
    assert run.sign_test_p(0, 5) == run.sign_test_p(5, 5)                  # symmetric
    assert run.sign_test_p(3, 6) == 1.0                                    # an even split
    assert run.sign_test_p(2, 10) == pytest.approx(2 * sum(math.comb(10, i) for i in range(3)) / 1024)


def test_bias_pairs_swap_one_word_of_equal_length():
    pairs = probes.bias_pairs()
    assert len(pairs) == len(probes.TEMPLATES) * 12
    for p in pairs:
        assert len(p["stereo"]) == len(p["anti"]) and p["stereo"] != p["anti"]
        diff = [(a, b) for a, b in zip(p["stereo"].split(), p["anti"].split()) if a != b]
        assert len(diff) == 1 and set(diff[0]) == {"his", "her"}


def test_name_swap_changes_only_the_name():
    exs = [e for e in instruct.generate(40, seed=0)["train"] if e.family == "word"]
    orig, swapped = probes.name_swap(exs)
    assert orig and len(orig) == len(swapped)
    for a, b in zip(orig, swapped):
        assert a.answer == b.answer and a.prompt != b.prompt
        assert any(n in b.prompt for n in probes.NAMES_M) and len(a.prompt.split()) == len(b.prompt.split())


def test_refusal_detection():
    assert probes.is_refusal("I can't help with that.") and probes.is_refusal("I\u2019m sorry, no.")
    assert not probes.is_refusal("42")


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert 0 <= m["toxic_rate"] <= 1 and 0 <= m["stereo_share_base"] <= 1
    assert m["refusal_rate_rules"] > m["refusal_rate_alone_sft"]
