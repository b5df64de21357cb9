"""Day 52: SQuAD normalisation and token F1 by hand and against rouge-score, and a quick run end to end."""

import pytest

from common.eval import harness
from common.run import runner
from days.day52 import run


def test_normalise_answer():
    assert run.normalise_answer("  The Cat, sat!  ") == "cat sat"
    assert run.normalise_answer("An apple a day") == "apple day"
    assert run.normalise_answer("theater") == "theater"          # only whole words are articles


def test_token_f1_by_hand():
    assert run.token_f1("the cat sat", "a cat sat down") == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert run.token_f1("Max", "max.") == 1.0
    assert run.token_f1("", "max") == 0.0 and run.token_f1("dog", "cat") == 0.0
    assert run.token_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)   # overlap counted with multiplicity


@pytest.mark.parametrize("pred,ref", [("cat sat on mat", "cat sat on red mat"), ("big dog runs", "dog big"),
                                      ("one two three", "four five six")])
def test_token_f1_equals_rouge1_without_stemming_or_articles(pred, ref):
    assert run.token_f1(pred, ref) == pytest.approx(harness.rouge(pred, ref)["rouge1"])


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    require_data("wikitext2", "test.txt")
    m = runner.quick(run, tmp_path)["metrics"]
    assert 0 <= m["cloze_em_raw_base"] <= m["cloze_em_strip_base"] <= 1
    assert all(0 <= m[f"xsum_rougeL_{k}"] <= 1 for k in run.MODELS)
    assert m["wikitext2_bpb_base"] > 0 and m["bpb_stride_16_base"] > 0
