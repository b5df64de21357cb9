"""common/lab/retrieval.py: the harness scores what it claims (against an oracle model and greedy decoding),
long prompts in chunks give the same logits, the cache returns the same model, and the decay fits recover
known curves."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from common.data import needle
from common.lab import retrieval
from common.nn.generate import generate
from common.nn.model import GPT


@pytest.fixture
def task(require_data):
    require_data("tinyshakespeare")
    return retrieval.RetrievalTask(train_len=48, min_len=16, warm_len=32, warm_steps=2, batch_tokens=256)


class LookupModel(nn.Module):
    """A stand-in for a GPT that reads the needle by string search: at each of the last k positions of its
    input it puts all its logit mass on the needle digit that comes next (`wrong`: that digit + 1 mod 10)."""

    def __init__(self, tok, k, wrong=False):
        super().__init__()
        self.tok, self.k, self.wrong = tok, k, wrong
        self.cfg = type("Cfg", (), {"n_head": 1})()

    def forward(self, idx, targets=None, kv_cache=None, start_pos=0):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.tok.vocab_size)
        for b in range(B):
            text = self.tok.decode(idx[b].tolist())
            i = text.find("|k=") + 3
            digits = text[i:i + self.k]
            q = text.rfind("|k=") + 3  # the query's end: position q - 1 predicts the first digit
            for j in range(self.k):
                t = q - 1 + j
                if t < T:
                    logits[b, t, self.tok.stoi[str((int(digits[j]) + self.wrong) % 10)]] = 1.0
        return logits, None


def test_oracle_scores_100_percent_on_the_heatmap_prompts(task):
    acc = retrieval.oracle_accuracy(task, [11, 64, 300, 1000], [0, 0.25, 0.5, 0.75, 1], n_trials=8, seed=3)
    assert len(acc) == 20 and set(acc.values()) == {1.0}


def test_harness_scores_a_perfect_reader_1_and_a_shifted_one_0(task):
    tok, _, _ = needle.needle_corpus()
    lengths, depths = [20, 64, 200], [0, 0.5, 1]
    good = retrieval.needle_accuracy(LookupModel(tok, 4), task, lengths, depths, 6, "cpu")
    assert set(good.values()) == {1.0} and len(good) == 9
    trials = retrieval.needle_trials(LookupModel(tok, 4, wrong=True), task, lengths, depths, 6, "cpu")
    assert not any(r["hit"] or any(r["digit_hits"]) for r in trials)
    assert {r["distance"] for r in trials if r["depth"] == 1} == {needle.needle_len(4)}


def test_teacher_forced_hits_agree_with_greedy_decoding(task):
    """Make the model's own greedy continuation the answer: every position is a hit. Change its first digit:
    the greedy answer no longer matches, and the first position is a miss."""
    torch.manual_seed(0)
    model = GPT(task.model_config(n_layer=1, n_head=2, n_embd=16)).eval()
    tok, _, va = needle.needle_corpus()
    ex = needle.make_examples(va, tok, 40, [0.2, 0.9, 0.5], generator=torch.Generator().manual_seed(0))
    greedy = generate(model, ex.prompt, 4, temperature=0)[:, -4:]  # (B, 4)
    own = needle.NeedleExamples(torch.cat([ex.prompt, greedy], 1), greedy, ex.needle_pos, ex.query_pos)
    assert retrieval.answer_hits(model, own, "cpu").all()
    wrong = greedy.clone()
    wrong[:, 0] = (wrong[:, 0] + 1) % tok.vocab_size
    bad = retrieval.answer_hits(model, own._replace(ids=torch.cat([ex.prompt, wrong], 1), answer=wrong), "cpu")
    assert not bad[:, 0].any()


@pytest.mark.parametrize("pos", ["alibi", "rope"])
def test_chunked_prompts_give_the_same_answer_logits(task, pos):
    torch.manual_seed(1)
    model = GPT(task.model_config(n_layer=2, n_head=4, n_embd=32, pos=pos)).eval()
    tok, _, va = needle.needle_corpus()
    ex = needle.make_examples(va, tok, 300, [0.3, 0.7], generator=torch.Generator().manual_seed(2))
    whole = retrieval.answer_logits(model, ex.ids, 4)
    chunked = retrieval.answer_logits(model, ex.ids, 4, max_scores=2 * 4 * 304 * 37)  # chunks of 37 queries
    assert whole.shape == chunked.shape == (2, 4, tok.vocab_size)
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=1e-4)


def test_training_is_cached_by_its_arguments(task, tmp_path):
    cfg = task.model_config(n_layer=1, n_head=2, n_embd=16)
    a = retrieval.train_retrieval_model(cfg, task, 3, "cpu", seed=0, cache_dir=tmp_path, eval_iters=1)
    b = retrieval.train_retrieval_model(cfg, task, 3, "cpu", seed=0, cache_dir=tmp_path, eval_iters=1)
    assert a.result is not None and b.result is None and len(list(tmp_path.glob("retrieval_*.pt"))) == 1
    assert a.val_loss == b.val_loss and a.history == b.history
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    c = retrieval.train_retrieval_model(cfg, task, 3, "cpu", seed=1, cache_dir=tmp_path, eval_iters=1)
    assert c.result is not None and len(list(tmp_path.glob("retrieval_*.pt"))) == 2  # another seed, another file
    d = retrieval.train_retrieval_model(cfg, task, 3, "cpu", seed=0, cache_dir=tmp_path, eval_iters=1, retrain=True)
    assert d.result is not None and d.val_loss == pytest.approx(a.val_loss)  # same seed, same weights


def test_model_config_fits_the_task(task):
    tok, _, _ = needle.needle_corpus()
    cfg = task.model_config()
    assert cfg.vocab_size == tok.vocab_size and cfg.block_size == 48 + 3 and cfg.pos == "alibi"
    assert task.model_config(pos="rope").pos == "rope"


def test_hit_rate_by_distance_pools_records_into_bins():
    recs = [{"distance": d, "hit": h} for d, h in [(5, True), (9, True), (9, False), (20, False), (40, True)]]
    rows = retrieval.hit_rate_by_distance(recs, [1, 10, 30, 100, 1000])
    assert [(r["lo"], r["n"], r["hits"]) for r in rows] == [(1, 3, 2), (10, 1, 0), (30, 1, 1)]
    assert rows[0]["rate"] == pytest.approx(2 / 3) and rows[0]["mean_distance"] == pytest.approx(23 / 3)


@pytest.mark.parametrize("form,beta", [("loglogistic", 2.5), ("exponential", None)])
def test_fit_decay_recovers_a_known_curve(form, beta):
    x = np.array([8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096.0])
    rate = retrieval.decay_curve(x, 0.9, 300.0, beta or 1.0, form)
    f = retrieval.fit_decay(x, rate, weight=np.arange(1, 11), form=form)
    assert f["p0"] == pytest.approx(0.9, rel=1e-3) and f["x50"] == pytest.approx(300, rel=1e-2)
    assert f["rmse"] < 1e-3
    if beta:
        assert f["beta"] == pytest.approx(beta, rel=1e-2)


def test_the_right_shape_fits_better():
    x = np.geomspace(8, 8192, 12)
    loglog = retrieval.decay_curve(x, 1.0, 200.0, 3.0)
    assert retrieval.fit_decay(x, loglog)["rmse"] < retrieval.fit_decay(x, loglog, form="exponential")["rmse"] / 10
    assert retrieval.decay_curve([200.0], 0.8, 200.0, 3.0)[0] == pytest.approx(0.4)  # p0 / 2 at x50
    assert retrieval.decay_curve([200.0], 0.8, 200.0, form="exponential")[0] == pytest.approx(0.4)
    assert math.isclose(retrieval.decay_curve([0.0], 0.8, 200.0)[0], 0.8)
