"""ByteBPE (from scratch) and the SentencePiece wrapper: round trips, the worked example, compression."""

import random

import pytest

from common.data.tokenizers import ByteBPE, CharTokenizer, train_sentencepiece

TEXT = ("the cat sat on the mat. the cat ate the rat; then the cat sat again.\n" * 40
        + "Über naïve café — 東京 and 🙂 emoji too.\n" * 5)


def random_unicode(rng: random.Random, n: int) -> str:
    """Code points from ASCII to the astral planes, skipping surrogates (not encodable as UTF-8)."""
    out = []
    for _ in range(n):
        hi = rng.choice([0x7F, 0x7FF, 0xFFFF, 0x10FFFF])
        c = rng.randint(0, hi)
        out.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "x")
    return "".join(out)


@pytest.fixture(scope="module")
def bpe():
    return ByteBPE.train(TEXT, vocab_size=300)


def test_worked_example_aaabdaaabac():
    b = ByteBPE.train("aaabdaaabac", vocab_size=259)
    assert b.merges == [(97, 97), (97, 98), (256, 257)]
    assert [b.vocab[i] for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    assert b.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def test_zero_merges_is_plain_utf8_bytes():
    b = ByteBPE.train("anything", vocab_size=256)
    s = "héllo 🙂"
    assert b.encode(s) == list(s.encode("utf-8")) and b.vocab_size == 256


def test_round_trip_random_unicode(bpe):
    rng = random.Random(0)
    for n in (0, 1, 5, 50, 400):
        s = random_unicode(rng, n)
        assert bpe.decode(bpe.encode(s)) == s
    for s in ["🙂👍🏽👨‍👩‍👧", "\n\n  \t x  ", "東京タワー", "the cat", "a" * 100, "\x00\x7f\u00ff"]:
        assert bpe.decode(bpe.encode(s)) == s


def test_merges_reduce_length_and_vocab_grows(bpe):
    base = len(TEXT.encode("utf-8"))
    ids = bpe.encode(TEXT)
    assert bpe.vocab_size == 300 and len(bpe.merges) == 44
    assert len(ids) < 0.5 * base                                  # 44 merges on repetitive text: > 2 bytes/token
    small = ByteBPE.train(TEXT, 270)
    assert len(bpe.encode(TEXT)) < len(small.encode(TEXT)) < base  # more merges, fewer tokens
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.vocab[bpe.merges[0][0]] + bpe.vocab[bpe.merges[0][1]] == bpe.vocab[256]


def test_training_stops_when_every_chunk_is_one_token():
    b = ByteBPE.train(TEXT, 10_000)
    assert b.vocab_size < 10_000
    chunks = set(__import__("re").findall(r" ?\w+| ?[^\s\w]+|\s+(?!\S)|\s+", TEXT))
    assert all(len(b.encode(c)) == 1 for c in chunks)


def test_first_merge_is_the_most_frequent_pair():
    text = "xyxyxy ab ab"
    b = ByteBPE.train(text, 257)
    assert b.merges == [(ord("x"), ord("y"))]
    assert b.encode("xyxy") == [256, 256]


def test_save_load(bpe, tmp_path):
    b2 = ByteBPE.load(bpe.save(tmp_path / "m.merges"))
    assert b2.merges == bpe.merges and b2.encode(TEXT) == bpe.encode(TEXT)


def test_vocab_below_256_is_an_error():
    with pytest.raises(Exception, match="256"):
        ByteBPE.train("abc", 100)


def test_char_tokenizer_unchanged():
    tok = CharTokenizer.from_text("hello")
    assert (tok.vocab, tok.encode("hole"), tok.decode([3, 1])) == ("ehlo", [1, 3, 2, 0], "oh")


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_round_trip(tmp_path, model_type):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    sp = train_sentencepiece(path, tmp_path / f"m_{model_type}", 60, model_type, hard_vocab_limit=False,
                             character_coverage=1.0)
    assert (tmp_path / f"m_{model_type}.model").is_file() and (tmp_path / f"m_{model_type}.vocab").is_file()
    assert 30 < sp.vocab_size() <= 60
    for line in ["the cat sat on the mat.", "Über naïve café — 東京 and 🙂 emoji too."]:
        ids = sp.encode(line)
        assert sp.unk_id() not in ids and sp.decode(ids) == line
        assert len(ids) < len(line)                           # subwords: fewer tokens than characters
    # an iterator works too, and a character never seen maps to <unk>
    sp2 = train_sentencepiece(iter(TEXT.splitlines()), tmp_path / "m_it", 60, model_type, hard_vocab_limit=False)
    assert sp2.unk_id() in sp2.encode("Ωmega")


def test_sentencepiece_rejects_unknown_type(tmp_path):
    with pytest.raises(Exception, match="bpe"):
        train_sentencepiece(iter(["a b"]), tmp_path / "m", 10, "wordpiece")
