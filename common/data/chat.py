"""Tokens for chat models: characters plus the chat and tool markers as single tokens, and masked batches.

Sprint 5's tasks are letter- and digit-level (reverse a word, add two numbers), so its models read
characters: printable ASCII and the newline, one token each, and every marker string (`<|user|>`,
`<|assistant|>`, `<|end|>`, the calculator's `<|calc|>` ... `<|/result|>`, `<|tools|>`) as one token
of its own, so ending a turn is one prediction. Markers are matched before characters, so the literal
text "<|end|>" inside a prompt becomes the marker: fine for generated prompts, and what a chat stack
serving real users must escape.

    tok = ChatTokenizer()
    ids, mask = tok.encode_spans(text, spans)       # mask[i]: token i lies inside a span (SFT's loss)
    batches = MaskedBatches([(ids, mask), ...], batch_size=32, block_size=128)
    x, y = batches.sample()                          # y = -1 where no loss is taken (prompt, padding)

Characters outside the alphabet are folded to ASCII where Unicode says how (é -> e, the curly quote ->
') and dropped otherwise, by `to_ascii`; `encode` itself maps any stray one to '?'.
"""

from __future__ import annotations

import re
import unicodedata

import torch

from common.data.instruct import SPECIAL
from common.eval.tool_use import TOOL_SPECIAL, TOOLS

PAD = "<|pad|>"
MARKERS = (PAD,) + SPECIAL + TOOL_SPECIAL + (TOOLS,)
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
_FOLD = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...",
         "\u00a0": " ", "\t": " "}


def to_ascii(text: str) -> str:
    """Text in the tokenizer's alphabet: typographic quotes and dashes folded, accents stripped, the rest dropped."""
    text = "".join(_FOLD.get(c, c) for c in text)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if c in ALPHABET)


class ChatTokenizer:
    """Markers first (one id each, PAD = 0), then the alphabet, one id per character."""

    def __init__(self):
        self.vocab = list(MARKERS) + list(ALPHABET)
        self.stoi = {s: i for i, s in enumerate(self.vocab)}
        self.pad_id = self.stoi[PAD]
        self.unknown_id = self.stoi["?"]
        self._split = re.compile("(" + "|".join(re.escape(m) for m in MARKERS) + ")")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def id(self, marker: str) -> int:
        """The id of one marker or character."""
        return self.stoi[marker]

    def pieces(self, text: str) -> list[str]:
        """The strings the tokens stand for: markers whole, everything else one character each."""
        out = []
        for part in self._split.split(text):
            if part in self.stoi and part in MARKERS:
                out.append(part)
            else:
                out.extend(part)
        return out

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(p, self.unknown_id) for p in self.pieces(text)]

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def encode_spans(self, text: str, spans) -> tuple[list[int], list[bool]]:
        """(ids, mask): mask[i] is True when token i's characters lie inside one of the character `spans`
        [(start, end), ...]. A marker counts as inside when all of it is; spans should not cut a marker."""
        ids, mask, pos = [], [], 0
        for p in self.pieces(text):
            ids.append(self.stoi.get(p, self.unknown_id))
            end = pos + len(p)
            mask.append(any(a <= pos and end <= b for a, b in spans))
            pos = end
        return ids, mask


class MaskedBatches:
    """Batches of whole chat sequences, right-padded, with the loss only where the mask says.

    `seqs` is a list of (ids, mask). A batch is (x, y): x = ids[:-1] and y = ids[1:], with y = -1 (the
    ignore index of `GPT.forward`) where the mask of the predicted token is False and on padding; so the
    mean loss is over the masked tokens of the batch. `sample` draws rows with the global Torch RNG (a
    seeded run draws the same batches); `fixed(n)` walks the sequences in order, the same every call.
    """

    def __init__(self, seqs, batch_size: int, block_size: int, device="cpu", pad_id: int = 0):
        if not seqs:
            raise ValueError("MaskedBatches needs at least one sequence")
        long = [len(s[0]) for s in seqs if len(s[0]) > block_size + 1]
        if long:
            raise ValueError(f"{len(long)} sequences are longer than block_size + 1 = {block_size + 1} tokens "
                             f"(the longest has {max(long)})")
        self.seqs, self.batch_size, self.block_size = list(seqs), batch_size, block_size
        self.device, self.pad_id = torch.device(device), pad_id

    def __len__(self) -> int:
        return len(self.seqs)

    def collate(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) for the given (ids, mask) rows, padded to the longest."""
        T = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        keep = torch.zeros((len(rows), T), dtype=torch.bool)
        for r, (i, m) in enumerate(rows):
            ids[r, :len(i)] = torch.as_tensor(i, dtype=torch.long)
            keep[r, :len(m)] = torch.as_tensor(m, dtype=torch.bool)
        y = ids[:, 1:].clone()
        y[~keep[:, 1:]] = -1
        return ids[:, :-1].to(self.device), y.to(self.device)

    def sample(self, generator=None, batch_size: int | None = None):
        n = batch_size or self.batch_size
        idx = torch.randint(len(self.seqs), (n,), generator=generator)
        return self.collate([self.seqs[i] for i in idx.tolist()])

    def fixed(self, n_batches: int) -> list:
        out = []
        for b in range(n_batches):
            rows = self.seqs[b * self.batch_size:(b + 1) * self.batch_size]
            if not rows:
                break
            out.append(self.collate(rows))
        return out
