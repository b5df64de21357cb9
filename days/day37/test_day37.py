"""Day 37: the needle sits where its depth says, the oracle reads every prompt, the harness scores a perfect
reader 1 and agrees with greedy decoding, and the probability table's closed forms; a quick run end to end."""

import pytest
import torch

from common.data import needle
from common.lab import retrieval
from common.nn.generate import generate
from common.nn.model import GPT
from common.run import runner
from common.tests.test_retrieval import LookupModel
from days.day37 import run


@pytest.fixture
def corpus(require_data):
    require_data("tinyshakespeare")
    return needle.needle_corpus()


def test_needle_sits_at_its_depth_and_the_answer_follows_the_query(corpus):
    tok, _, va = corpus
    g = torch.Generator().manual_seed(0)
    L, depths = 100, [0.0, 0.25, 0.5, 0.75, 1.0]
    ex = needle.make_examples(va, tok, L, depths, n_digits=4, generator=g)
    H = L - needle.min_length(4)
    assert ex.ids.shape == (5, L + 4) and ex.query_pos == L - 3
    for b, dp in enumerate(depths):
        text = tok.decode(ex.ids[b])
        digits = tok.decode(ex.answer[b])
        assert int(ex.needle_pos[b]) == round(dp * H)
        assert text[round(dp * H):round(dp * H) + 8] == f"|k={digits}|"
        assert text[L - 3:] == f"|k={digits}"  # query, then the answer
    assert ex.distance.tolist() == [H + 8 - round(dp * H) for dp in depths]


def test_oracle_is_right_on_every_cell_of_the_heatmap(corpus):
    task = retrieval.RetrievalTask()
    acc = retrieval.oracle_accuracy(task, [11, 64, 512, 2048], [0, 0.25, 0.5, 0.75, 1], n_trials=4, seed=1)
    assert set(acc.values()) == {1.0}


def test_harness_gives_a_perfect_reader_100_percent_and_a_wrong_one_0(corpus):
    tok, _, _ = corpus
    task = retrieval.RetrievalTask()
    good = retrieval.needle_accuracy(LookupModel(tok, 4), task, [16, 100], [0, 0.5, 1], 5, "cpu")
    bad = retrieval.needle_accuracy(LookupModel(tok, 4, wrong=True), task, [16, 100], [0, 0.5, 1], 5, "cpu")
    assert set(good.values()) == {1.0} and set(bad.values()) == {0.0}


def test_teacher_forced_exact_match_is_greedy_exact_match(corpus):
    tok, _, va = corpus
    task = retrieval.RetrievalTask()
    torch.manual_seed(3)
    model = GPT(task.model_config(n_layer=1, n_head=2, n_embd=16)).eval()
    ex = needle.make_examples(va, tok, 30, [0.0, 0.5, 1.0, 0.3], generator=torch.Generator().manual_seed(4))
    greedy = generate(model, ex.prompt, 4, temperature=0)[:, -4:]
    hits = retrieval.answer_hits(model, ex, "cpu")
    assert torch.equal(hits.all(dim=1), (greedy == ex.answer).all(dim=1))  # exact match, both ways
    assert torch.equal(hits[:, 0], greedy[:, 0] == ex.answer[:, 0])       # the first digit has no prefix to force
    own = ex._replace(ids=torch.cat([ex.prompt, greedy], 1), answer=greedy)  # the model's own answer: all hits
    assert retrieval.answer_hits(model, own, "cpu").all()


def test_probability_rows_closed_forms():
    recs = [{"length": 10, "hit": h, "digit_hits": d} for h, d in
            [(True, [True, True]), (False, [False, True]), (False, [True, False]), (False, [False, False]),
             (True, [True, True])]]
    (row,) = run.probability_rows(recs, [10], 2)
    assert row["p1"] == row["p2"] == 0.6 and row["exact (measured)"] == 0.4
    assert row["∏ p_j (independent)"] == pytest.approx(0.36) and row["min p_j (all or nothing)"] == 0.6
    assert row["lower bound"] == pytest.approx(0.2)
    assert row["lower bound"] <= row["exact (measured)"] <= row["min p_j (all or nothing)"]  # Frechet bounds


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["oracle_acc"] == 1.0 and m["chance_exact"] == pytest.approx(1e-4)
    assert 0 <= m["acc_within_train_len"] <= 1 and m["val_loss"] > 0
    assert m["acc_max_len"] == m["acc_L64"]
    assert (tmp_path / "plots" / "day37_heatmap.png").is_file()
    assert len(list((tmp_path / ".cache" / "retrieval").glob("retrieval_*.pt"))) == 1  # left for day 38
