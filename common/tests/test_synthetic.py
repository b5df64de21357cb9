"""Tests of common/data/synthetic.py: layout, masks, modes, seeding, and the Batches-like wrapper."""

import pytest
import torch

from common.data.synthetic import (
    FILL,
    FIRST_CONTENT,
    SEP,
    CopyBatches,
    copy_accuracy,
    copy_batch,
    ignore_unmasked,
    n_copy_for,
    seq_len,
)
from common.nn.model import GPT, gpt_config


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_layout_shift_and_mask():
    x, y, mask = copy_batch(5, n_copy=6, vocab_size=20, gap=3, generator=gen())
    T = seq_len(6, 3)
    assert x.shape == y.shape == mask.shape == (5, T) and T == 15
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    src = x[:, :6]
    assert ((src >= FIRST_CONTENT) & (src < 20)).all()
    assert (x[:, 6:9] == FILL).all() and (x[:, 9] == SEP).all()
    assert mask.sum(1).tolist() == [6] * 5 and mask[:, 9:].all()  # SEP and the copies predict the copies
    assert torch.equal(y[mask].view(5, 6), src)


@pytest.mark.parametrize("mode", ["reverse", "sort"])
def test_modes(mode):
    x, y, mask = copy_batch(4, n_copy=7, vocab_size=50, mode=mode, generator=gen(1))
    src, tgt = x[:, :7], y[mask].view(4, 7)
    assert torch.equal(tgt, src.flip(-1) if mode == "reverse" else src.sort(-1).values)


def test_variable_length_and_left_pad():
    x, y, mask = copy_batch(64, n_copy=8, vocab_size=30, n_min=2, left_pad=5, generator=gen(2))
    assert x.shape == (64, seq_len(8, 0, 5)) == (64, 21)
    lengths = mask.sum(1)
    assert lengths.min() >= 2 and lengths.max() <= 8 and len(set(lengths.tolist())) > 3
    for b in range(64):
        n = int(lengths[b])
        row = torch.cat([x[b], y[b, -1:]])  # the full sequence
        assert (row[: 21 - 2 * n] == FILL).all()  # padding, then source, SEP, copy: the example sits at the end
        assert torch.equal(row[21 - 2 * n: 21 - n], row[22 - n:]) and row[21 - n] == SEP


def test_seeded_and_validated():
    a, b = copy_batch(3, 4, 10, generator=gen(7)), copy_batch(3, 4, 10, generator=gen(7))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert n_copy_for(seq_len(9, 2), 2) == 9
    with pytest.raises(ValueError):
        copy_batch(1, 4, 10, mode="shuffle")
    with pytest.raises(ValueError):
        copy_batch(1, 4, FIRST_CONTENT)  # no content symbols
    with pytest.raises(ValueError):
        n_copy_for(3, gap=2)


def test_accuracy_counts_only_masked_positions():
    x, y, mask = copy_batch(2, 3, 10, generator=gen(3))
    logits = torch.nn.functional.one_hot(y, 10).float()  # perfect predictions
    assert copy_accuracy(logits, y, mask) == (1.0, 1.0)
    logits[0, -1] = logits[0, -1].roll(1)  # one wrong copied token in example 0
    logits[1, 0] = logits[1, 0].roll(1)  # a wrong unscored (source) position in example 1
    assert copy_accuracy(logits, y, mask) == (5 / 6, 0.5)
    assert (ignore_unmasked(y, mask) == -1).sum() == (~mask).sum()


def test_copy_batches_drive_a_model_and_fixed_batches_repeat():
    cb = CopyBatches(n_copy=4, vocab_size=12, batch_size=3, seed=5, max_left_pad=6)
    assert cb.block_size == 14
    f1, f2 = cb.fixed(3), cb.fixed(3)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(f1, f2))
    assert len({x.shape[1] for x, _ in f1 + cb.fixed(6)}) > 1  # random padding per batch, <= block_size
    x, y = cb.sample()
    assert x.shape[1] <= cb.block_size and (y[y != -1] >= FIRST_CONTENT).all() and (y != -1).sum() == 3 * 4
    model = GPT(gpt_config("nano", vocab_size=12, block_size=cb.block_size, pos="rope"))
    _, loss = model(x, y)  # ignore_index=-1 skips the unscored positions
    assert torch.isfinite(loss)
