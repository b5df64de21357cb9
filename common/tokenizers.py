"""Tokenizers. Today: characters. Later sprints add bytes, BPE from scratch and SentencePiece.

`CharTokenizer` maps each distinct character of a corpus to an id, in sorted order, so the same
corpus always gives the same vocabulary (Tiny Shakespeare: 65 characters).

    >>> tok = CharTokenizer.from_text("hello")
    >>> tok.vocab, tok.encode("hole"), tok.decode([3, 1])
    ('ehlo', [2, 3, 2, 0], 'le')
"""

from __future__ import annotations

import numpy as np

from common.errors import UserError


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
