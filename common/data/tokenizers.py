"""Tokenizers: characters (`CharTokenizer`), byte-level BPE from scratch (`ByteBPE`) and a thin
SentencePiece wrapper (`train_sentencepiece`, BPE or unigram).

`CharTokenizer` maps each distinct character of a corpus to an id, in sorted order, so the same
corpus always gives the same vocabulary (Tiny Shakespeare: 65 characters).

    >>> tok = CharTokenizer.from_text("hello")
    >>> tok.vocab, tok.encode("hole"), tok.decode([3, 1])
    ('ehlo', [1, 3, 2, 0], 'oh')
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from common.run.errors import UserError


class CharTokenizer:
    """One id per distinct character, in sorted order."""

    def __init__(self, vocab: str):
        self.vocab = vocab
        self.stoi = {c: i for i, c in enumerate(vocab)}
        # A byte lookup table makes encoding 1M characters a single NumPy gather when the
        # vocabulary is single-byte (ASCII); other text takes the dict path.
        self._ascii = all(ord(c) < 256 for c in vocab)
        if self._ascii:
            self._table = np.full(256, -1, dtype=np.int64)
            for c, i in self.stoi.items():
                self._table[ord(c)] = i

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode_array(self, text: str) -> np.ndarray:
        if self._ascii and text.isascii():
            ids = self._table[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
            if (ids < 0).any():
                bad = text[int(np.argmax(ids < 0))]
                raise UserError(f"Character {bad!r} is not in this tokenizer's vocabulary.")
            return ids
        try:
            return np.array([self.stoi[c] for c in text], dtype=np.int64)
        except KeyError as e:
            raise UserError(f"Character {e.args[0]!r} is not in this tokenizer's vocabulary.") from None

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)


# ---- byte-level BPE, from scratch ----------------------------------------------------------------

# Pre-tokenisation (a `\w`-only cousin of GPT-2's pattern): merges never cross these chunk
# boundaries, so a space can start a word-piece (" the") but no token spans two words. Every
# character is `\s`, `\w` or neither, so the chunks always concatenate back to the whole text.
_CHUNK = re.compile(r" ?\w+| ?[^\s\w]+|\s+(?!\S)|\s+")


def _merge(ids: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` (scanning left to right) by `new`."""
    # >>> exercise day21.merge: replace each non-overlapping occurrence of the pair, scanning left to right
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
    # <<< exercise day21.merge


class ByteBPE:
    """Byte-level BPE: ids 0-255 are the raw bytes, id 256+k is the k-th learned merge.

    Because the base alphabet is all 256 byte values, any UTF-8 string (emoji, unseen scripts)
    encodes without an unknown token and `decode(encode(s)) == s`. Training counts adjacent pairs
    inside pre-tokenised chunks (`_CHUNK`) weighted by chunk frequency, merges the most frequent
    pair (ties: the smallest pair of ids), and updates only the chunks that contained it.

    Worked example (the classic "aaabdaaabac"): "aa" occurs 4 times -> id 256; then ("aa","a")
    and ("a","b") tie at 2 and the smaller pair (97, 98) = "ab" wins -> 257; then
    ("aa","ab") occurs twice -> 258 = "aaab". Eleven bytes become five tokens:

        >>> bpe = ByteBPE.train("aaabdaaabac", vocab_size=259)
        >>> bpe.merges
        [(97, 97), (97, 98), (256, 257)]
        >>> bpe.encode("aaabdaaabac")
        [258, 100, 258, 97, 99]
        >>> bpe.decode([258, 99]), bpe.decode(bpe.encode("héllo 🙂"))
        ('aaabc', 'héllo 🙂')
    """

    def __init__(self, merges: list[tuple[int, int]] | None = None):
        self.merges = [tuple(m) for m in (merges or [])]
        self.ranks = {p: i for i, p in enumerate(self.merges)}
        self.vocab = [bytes([b]) for b in range(256)]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def train(cls, text: str, vocab_size: int) -> ByteBPE:
        """Learn `vocab_size - 256` merges from `text` (train on a slice: pure Python, ~100s of KB)."""
        # >>> exercise day21.bpe_train: count pairs (weighted by chunk frequency), merge the most frequent, repeat
        if vocab_size < 256:
            raise UserError(f"vocab_size must be >= 256 (the byte alphabet), got {vocab_size}.")
        counts = Counter(_CHUNK.findall(text))
        words = [list(w.encode("utf-8")) for w in counts]
        freqs = list(counts.values())
        pairs: Counter = Counter()
        where: dict[tuple[int, int], set[int]] = defaultdict(set)
        for i, (w, f) in enumerate(zip(words, freqs)):
            for p in zip(w, w[1:]):
                pairs[p] += f
                where[p].add(i)
        merges = []
        for new in range(256, vocab_size):
            if not pairs:
                break                         # nothing left to merge: every chunk is one token
            top = max(pairs.values())
            best = min(p for p, c in pairs.items() if c == top)
            merges.append(best)
            for i in where.pop(best):
                w, f = words[i], freqs[i]
                nw = _merge(w, best, new)
                if len(nw) == len(w):
                    continue                  # a stale index: the pair left this chunk earlier
                for p in zip(w, w[1:]):
                    pairs[p] -= f
                    if pairs[p] <= 0:
                        del pairs[p]
                for p in zip(nw, nw[1:]):
                    pairs[p] += f
                    where[p].add(i)
                words[i] = nw
        return cls(merges)
        # <<< exercise day21.bpe_train

    def _encode_chunk(self, chunk: str) -> list[int]:
        # >>> exercise day21.bpe_encode: bytes of the chunk, then replay the learned merges, earliest rank first
        ids = list(chunk.encode("utf-8"))
        while len(ids) > 1:
            # apply the earliest-learned merge present; this replays training's order exactly
            p = min(zip(ids, ids[1:]), key=lambda q: self.ranks.get(q, 1 << 62))
            if p not in self.ranks:
                break
            ids = _merge(ids, p, 256 + self.ranks[p])
        return ids
        # <<< exercise day21.bpe_encode

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        cache = self._cache
        for chunk in _CHUNK.findall(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk)
                if len(cache) < 500_000:
                    cache[chunk] = ids
            out.extend(ids)
        return out

    def decode(self, ids) -> str:
        """Bytes of each id, joined, read as UTF-8 (an arbitrary id list may split a character: U+FFFD)."""
        return b"".join(self.vocab[int(i)] for i in ids).decode("utf-8", errors="replace")

    def token_str(self, i: int) -> str:
        return self.vocab[i].decode("utf-8", errors="backslashreplace")

    def save(self, path) -> Path:
        """One merge per line, "a b" (ids); the vocabulary follows from the merges."""
        path = Path(path)
        path.write_text("".join(f"{a} {b}\n" for a, b in self.merges))
        return path

    @classmethod
    def load(cls, path) -> ByteBPE:
        return cls([tuple(int(x) for x in line.split()) for line in Path(path).read_text().splitlines()])


# ---- SentencePiece -------------------------------------------------------------------------------

def train_sentencepiece(source, model_prefix, vocab_size: int, model_type: str = "bpe", **options):
    """Train a SentencePiece model and return its `SentencePieceProcessor`.

    `source`: a text file path (one sentence per line) or an iterator of sentences. Writes
    `<model_prefix>.model` and `<model_prefix>.vocab`. Defaults: 2 threads, up to 16 KiB per line,
    quiet logs; `options` pass straight to `SentencePieceTrainer.train` (e.g.
    `input_sentence_size=200_000, shuffle_input_sentence=True`, `hard_vocab_limit=False`).
    """
    import sentencepiece as spm

    if model_type not in ("bpe", "unigram"):
        raise UserError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}.")
    kw = dict(model_prefix=str(model_prefix), vocab_size=int(vocab_size), model_type=model_type,
              num_threads=2, max_sentence_length=16384, minloglevel=2)
    kw.update(options)
    if isinstance(source, (str, os.PathLike)):
        kw["input"] = str(source)
    else:
        kw["sentence_iterator"] = iter(source)
    spm.SentencePieceTrainer.train(**kw)
    return spm.SentencePieceProcessor(model_file=f"{model_prefix}.model")
