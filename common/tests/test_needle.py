"""common/data/needle.py: the prompts are what they claim to be, and the oracle reads every one of them."""

import doctest
import math

import pytest
import torch

from common.data import needle


@pytest.fixture
def corpus(require_data):
    require_data("tinyshakespeare")
    return needle.needle_corpus()  # cached: read once per session


def test_worked_examples_in_the_docstring(corpus):
    assert doctest.testmod(needle, raise_on_error=False).failed == 0


def test_vocabulary_extends_the_char_corpus_without_moving_its_ids(corpus):
    from common import data

    tok, tr, va = corpus
    base, btr, bva = data.char_corpus()
    assert tok.vocab.startswith(base.vocab) and all(c in tok.vocab for c in needle.EXTRA_CHARS)
    assert len(set(tok.vocab)) == tok.vocab_size  # no character twice
    assert torch.equal(tr, btr) and torch.equal(va, bva)
    for c in "|=0124":  # the needle's markers never occur in the haystack
        assert tok.stoi[c] not in set(va.tolist())


@pytest.mark.parametrize("length", [11, 12, 40, 300])
@pytest.mark.parametrize("depth", [0.0, 0.3, 0.5, 1.0])
def test_prompt_layout(corpus, length, depth):
    tok, _, va = corpus
    ex = needle.make_example(va, tok, length, depth, n_digits=4, seed=3)
    H = length - needle.min_length(4)
    text = tok.decode(ex.prompt)
    assert len(ex.prompt) == length and ex.query_pos == length - 3 and text.endswith("|k=")
    assert ex.needle_pos == round(depth * H)
    assert text[ex.needle_pos:ex.needle_pos + 8] == "|k=" + ex.digits + "|"
    assert tok.decode(ex.answer) == ex.digits and ex.digits.isdigit() and len(ex.digits) == 4
    assert ex.distance == H + needle.needle_len(4) - round(depth * H)
    assert text.count("|k=") == 2  # the needle and the query, nothing else


def test_depth_extremes_put_the_needle_first_and_last(corpus):
    tok, _, va = corpus
    first = needle.make_example(va, tok, 100, 0.0)
    last = needle.make_example(va, tok, 100, 1.0)
    assert first.needle_pos == 0 and tok.decode(first.prompt).startswith("|k=")
    assert last.distance == needle.needle_len(4)  # "...|k=1234||k="
    assert tok.decode(last.prompt).endswith("|k=" + last.digits + "||k=")


def test_same_seed_same_prompt_other_seed_other_prompt(corpus):
    tok, _, va = corpus
    a, b, c = (needle.make_example(va, tok, 64, 0.5, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.prompt, b.prompt) and a.digits == b.digits
    assert not torch.equal(a.prompt, c.prompt)


def test_the_haystack_is_a_window_of_the_corpus_around_the_needle(corpus):
    tok, _, va = corpus
    ex = needle.make_example(va, tok, 200, 0.4, seed=1)
    hay = torch.cat([ex.prompt[:ex.needle_pos], ex.prompt[ex.needle_pos + 8:ex.query_pos]])
    windows = va.unfold(0, hay.numel(), 1)  # every window of the val split with the haystack's length
    assert (windows == hay).all(dim=1).any()


def test_depth_for_distance_inverts_the_placement(corpus):
    tok, _, va = corpus
    for length in (64, 1000):
        for dist in (8, 9, 50, length - 3):
            dp = needle.depth_for_distance(length, dist)
            assert needle.make_example(va, tok, length, dp).distance == dist
    with pytest.raises(ValueError):
        needle.depth_for_distance(64, 7)


def test_oracle_scores_100_percent(corpus):
    tok, _, va = corpus
    g = torch.Generator().manual_seed(0)
    for length in (11, 12, 33, 257, 1500):
        for k in (1, 4, 6):
            if length < needle.min_length(k):
                continue
            ex = needle.make_examples(va, tok, length, None, 16, n_digits=k, generator=g)
            assert torch.equal(needle.oracle_retrieve(ex.prompt, tok, k), ex.answer)
    with pytest.raises(ValueError):
        needle.oracle_retrieve(torch.tensor(tok.encode("no needle here|k=")), tok)


def test_answer_only_targets(corpus):
    tok, tr, _ = corpus
    ex = needle.make_examples(tr, tok, 50, [0.0, 0.5, 1.0], n_digits=4, generator=torch.Generator().manual_seed(1))
    x, y = needle.training_pair(ex, 4)
    assert x.shape == y.shape == (3, 53)
    assert (y[:, :-4] == -1).all() and torch.equal(y[:, -4:], ex.answer)
    assert torch.equal(x[:, -3:], ex.answer[:, :3])  # the answer is fed back teacher-forced
    x2, y2 = needle.training_pair(ex, 4, lm_loss=True)
    assert torch.equal(x2, x)
    ignored = (y2 == -1).nonzero()[:, 1].view(3, 4)  # exactly the needle's 4 random digits
    assert torch.equal(ignored, ex.needle_pos[:, None] + 2 + torch.arange(4))
    keep = y2 != -1
    assert torch.equal(y2[keep], ex.ids[:, 1:][keep])


def test_needle_batches_are_a_batch_source(corpus):
    tok, tr, _ = corpus
    nb = needle.NeedleBatches(tr, tok, 256, 8, seed=5, min_len=16)
    assert nb.block_size == 259 and nb.batch_size == 8
    f1, f2 = nb.fixed(3), nb.fixed(3)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(f1, f2))
    torch.manual_seed(0)
    s1 = nb.sample()
    torch.manual_seed(0)
    s2 = nb.sample()
    assert torch.equal(s1[0], s2[0]) and s1[0].shape[0] == 8
    g = torch.Generator().manual_seed(0)
    lengths = [nb.draw_length(g) for _ in range(4000)]
    assert 16 <= min(lengths) and max(lengths) <= 256
    octaves = [sum(lo <= L < 2 * lo for L in lengths) for lo in (16, 32, 64, 128)]
    assert max(octaves) / min(octaves) < 1.2  # log-uniform: each octave about equally often
    assert nb.mean_block == pytest.approx(sum(lengths) / len(lengths) + 3, rel=0.03)
    assert nb.mean_block == pytest.approx(240 / math.log(16) + 3)


def test_token_budget_and_length_warm_up(corpus):
    tok, tr, _ = corpus
    nb = needle.NeedleBatches(tr, tok, 256, 0, min_len=16, batch_tokens=1000, warm_len=32, warm_batches=20)
    assert nb.batch_size == 1000 // 259 and nb.rows_for(16) == 1000 // 19
    torch.manual_seed(0)
    warm = [nb.sample() for _ in range(20)]
    later = [nb.sample() for _ in range(40)]
    assert nb.batches_served == 60
    assert max(x.shape[1] for x, _ in warm) <= 32 + 3 < max(x.shape[1] for x, _ in later)
    for x, _ in warm + later:  # as many rows as fit in the budget
        assert x.shape[0] == 1000 // x.shape[1]
    fixed = nb.fixed(30)  # evaluation batches: the whole length range, and not counted
    assert nb.batches_served == 60 and max(x.shape[1] for x, _ in fixed) > 35


def test_bad_arguments_raise(corpus):
    tok, tr, _ = corpus
    with pytest.raises(ValueError):
        needle.make_examples(tr, tok, 10, [0.5])  # shorter than needle + query
    with pytest.raises(ValueError):
        needle.make_examples(tr, tok, 40, [1.5])
    with pytest.raises(ValueError):
        needle.NeedleBatches(tr, tok, 64, 4, min_len=5)
    with pytest.raises(ValueError):
        needle.NeedleBatches(tr, tok, 64, 4, min_len=40, warm_len=32)
