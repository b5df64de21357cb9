"""Known inputs -> known outputs, one table row per case: every metric of the eval stack, the tokenizers, and
decoding. Each expected value was worked out by hand (the comment says how), not copied from a run.

Day 56 runs this file with the other eval tests and reports the table's pass/fail counts."""

import math

import numpy as np
import pytest
import torch

from common.data.chat import ChatTokenizer, to_ascii
from common.data.tokenizers import ByteBPE
from common.eval import calibration as C
from common.eval import harness as H
from common.eval import metrics as M
from common.eval import probes, suite
from common.eval.lm import GPTLM
from common.nn import sampling
from common.nn.generate import filter_logits

TOK = ChatTokenizer()

METRICS = [
    # (case, function of no arguments, expected)
    ("exact_match: spaces collapse", lambda: M.exact_match(" 42 ", "42"), True),
    ("exact_match: numbers by value", lambda: M.exact_match("42.0", "42"), True),
    ("exact_match: case matters", lambda: M.exact_match("Max", "max"), False),
    ("win_rate: 1 win, 1 tie, 1 loss", lambda: M.win_rate([1, 0, 1], [0, 0, 2]), 0.5),
    ("distinct-2: a b a b has 2 of 3", lambda: M.distinct_n([["a", "b", "a", "b"]], 2), pytest.approx(2 / 3)),
    ("distinct-1: empty", lambda: M.distinct_n([[]], 1), 0.0),
    ("bootstrap_ci: constant values", lambda: M.bootstrap_ci([0.3] * 20), (pytest.approx(0.3), pytest.approx(0.3))),
    ("rouge1: 5 of 6 unigrams", lambda: H.rouge("the cat is on the mat", "the cat sat on the mat")["rouge1"],
     pytest.approx(5 / 6)),
    ("rouge2: 3 of 5 bigrams", lambda: H.rouge("the cat is on the mat", "the cat sat on the mat")["rouge2"],
     pytest.approx(3 / 5)),
    ("rougeL: LCS 'a c' of 3 and 2 -> F1 0.8", lambda: H.rouge("a b c", "a c")["rougeL"], pytest.approx(0.8)),
    ("filter: regex group", lambda: H.apply_filters("ans = 7", [{"regex": r"= (\d+)"}]), "7"),
    ("ECE: 2 bins by hand (0.18)", lambda: C.ece([0.3, 0.4, 0.9, 0.9, 0.8], [0, 1, 1, 1, 0], 2), pytest.approx(0.18)),
    ("ECE: always 99% sure, always wrong", lambda: C.ece([0.99] * 10, [0] * 10), pytest.approx(0.99)),
    ("NLL: uniform over 4 classes = ln 4", lambda: C.nll(torch.zeros(3, 4), torch.tensor([0, 1, 2])),
     pytest.approx(math.log(4))),
    ("Brier: one-hot prediction = 0", lambda: C.brier(torch.tensor([[50.0, 0.0]]), torch.tensor([0])),
     pytest.approx(0.0, abs=1e-12)),
    ("toxic_hits: whole words only", lambda: probes.toxic_hits("hello, you fool"), ["fool"]),
    ("suite.compare: bpb +5% is a regression", lambda: suite.compare(
        {"tasks": {"t": {"version": 1, "config_hash": "c", "metrics": {"bits_per_byte": 2.0}}}},
        {"tasks": {"t": {"version": 1, "config_hash": "c", "metrics": {"bits_per_byte": 2.1},
                         "higher_is_better": {"bits_per_byte": False}}}})[0]["status"], "regression"),
]


@pytest.mark.parametrize("case,fn,expected", METRICS, ids=[c for c, _, _ in METRICS])
def test_metric_known_output(case, fn, expected):
    assert fn() == expected


class Script(torch.nn.Module):
    """A 'model' that always predicts (last token + 1) mod V: its greedy continuation is known in advance."""

    def __init__(self, V=TOK.vocab_size, block=32):
        super().__init__()
        self.cfg = type("Cfg", (), {"block_size": block, "vocab_size": V})()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, **kw):
        return torch.nn.functional.one_hot((idx + 1) % self.cfg.vocab_size, self.cfg.vocab_size).float() * 10, None


def test_tokenizer_known_ids():
    assert TOK.encode("a") == [TOK.vocab.index("a")] and TOK.decode(TOK.encode("Hi <|end|>")) == "Hi <|end|>"
    assert len(TOK.encode("<|user|>hi<|assistant|>")) == 4                   # two markers + two characters
    assert to_ascii("caf\u00e9 \u201cok\u201d") == 'cafe "ok"'
    bpe = ByteBPE.train("aaabdaaabac", vocab_size=259)                   # the Wikipedia BPE example
    assert bpe.decode(bpe.encode("aaabdaaabac")) == "aaabdaaabac" and len(bpe.encode("aaabdaaabac")) == 5


def test_greedy_decoding_known_output():
    lm = GPTLM(Script())
    start = "a"                                   # 'a' then b, c, d, ... in the tokenizer's order
    i = TOK.vocab.index("a")
    assert lm.generate([start], until=[], max_new=4)[0] == "".join(TOK.vocab[i + k] for k in range(1, 5))
    assert lm.generate([start], until=["d"], max_new=10)[0] == "bc"          # stops before the stop string
    (ll, greedy), = lm.loglikelihood([("a", "b")])
    assert greedy and ll == pytest.approx(-math.log1p((TOK.vocab_size - 1) * math.exp(-10)), rel=1e-4)


def test_sampling_filters_known_masks():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.8))                   # 0.5 + 0.3 reaches 0.8
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_k=3))
    assert kept.tolist() == [[True, True, True, False]]
    out = sampling.process(logits, torch.tensor([[0]]), [sampling.temperature(2.0)])
    assert torch.allclose(out, logits / 2)
    assert np.isclose(float(sampling.process(torch.tensor([[2.0, 1.0]]), torch.tensor([[0]]),
                                             [sampling.repetition_penalty(2.0)])[0, 0]), 1.0)   # seen, positive: /2
