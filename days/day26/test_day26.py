"""Day 26: the CE / perplexity / bits-per-byte relations, and early stopping in a quick run."""

import math

import pytest
import torch
import torch.nn.functional as F

from common.data import corpus
from common.run import runner
from days.day26 import run


def test_perplexity_of_uniform_prediction_is_the_vocabulary_size():
    logits = torch.zeros(10, 65)
    ce = F.cross_entropy(logits, torch.randint(0, 65, (10,))).item()
    assert math.exp(ce) == pytest.approx(65.0)
    assert ce / math.log(2) == pytest.approx(math.log2(65))  # bits per token = log2 V


def test_bits_per_byte_is_tokenizer_independent():
    """The same text costs the same bits whichever way it is cut into tokens: BPB = CE * tokens / bytes / ln 2."""
    text_bytes, total_bits = 1000, 2500.0
    for n_tokens in (1000, 250):  # characters vs 4-byte tokens
        ce_per_token = total_bits * math.log(2) / n_tokens
        assert ce_per_token * n_tokens / text_bytes / math.log(2) == pytest.approx(2.5)


def test_corpus_bits_per_byte_converts_nats_per_token():
    assert corpus.bits_per_byte(math.log(65), 1.0) == pytest.approx(math.log2(65))       # uniform over 65 chars
    assert corpus.bits_per_byte(math.log(16000), 4.0) == pytest.approx(math.log2(16000) / 4)
    for ce, b in ((1.2, 1.0), (3.5, 3.7)):                                               # log2(perplexity) / b
        assert corpus.bits_per_byte(ce, b) == pytest.approx(math.log2(math.exp(ce)) / b)

def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["best_val_ppl"] == pytest.approx(math.exp(m["best_val_ce"]), rel=1e-3)
    assert m["best_val_bpb"] == pytest.approx(m["best_val_ce"] / math.log(2), rel=1e-3)
    assert m["stopped_early"] is True and m["stopped_at"] > m["best_step"]
    assert (tmp_path / "checkpoints" / "day26_ckpt.best.pt").is_file()


def test_tinystories_run_reports_the_targets_val_ppl(tmp_path, require_data):
    require_data("tinystories")
    s = runner.quick(run, tmp_path, dataset="tinystories", vocab_size=400, train_chars=0, max_iters=40)
    m = s["metrics"]
    assert m["val_ppl"] == m["best_val_ppl"] and 1 < m["val_ppl"] < 400  # below a uniform guess over 400 tokens
