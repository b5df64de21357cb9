import math

import numpy as np
import pytest

from common.data import corpus
from common.run.errors import UserError


@pytest.fixture
def small(require_data, tmp_path):
    for name, file in corpus.SOURCES:
        require_data(name, file)
    return corpus.token_data(300, corpus_bytes=60_000, cache=tmp_path)


def test_validation_lines_are_held_out_of_training(require_data):
    for name, file in corpus.SOURCES:
        require_data(name, file)
    train, val = corpus.split_lines(corpus_bytes=40_000, val_frac=0.1)
    from common import data

    last = data.load_text(*corpus.SOURCES[-1])[:40_000].splitlines()
    assert val[-1] == [ln for ln in last if ln.strip()][-1]  # the tail of each source, not a sample
    assert 0.05 < len(val) / (len(train) + len(val)) < 0.15
    with pytest.raises(UserError):
        corpus.split_lines(val_frac=1.5)


def test_shards_decode_back_to_the_text(small):
    _, val = corpus.split_lines(corpus_bytes=60_000)
    ids = small.val_tensor().tolist()
    # SentencePiece marks each line's start with a space it adds; the text itself is unchanged
    assert [ln.strip() for ln in small.sp.decode(ids).split("\n")[:20]] == [v.strip() for v in val[:20]]
    assert small.val_tokens == len(ids) and small.train_tokens > 10 * small.val_tokens
    assert small.val_bytes == sum(len(v.encode()) + 1 for v in val)
    assert np.asarray(small.train.shards[0]).max() < 300


def test_the_cache_is_reused_and_keyed_by_settings(small, tmp_path):
    again = corpus.token_data(300, corpus_bytes=60_000, cache=tmp_path)
    assert again.root == small.root
    other = corpus.token_data(320, corpus_bytes=60_000, cache=tmp_path)
    assert other.root != small.root and other.sp.get_piece_size() == 320
    assert not list(tmp_path.glob("*.tmp"))  # builds land whole


def test_bits_per_byte():
    assert corpus.bits_per_byte(math.log(2), 1.0) == pytest.approx(1.0)
    assert corpus.bits_per_byte(2 * math.log(2), 4.0) == pytest.approx(0.5)
