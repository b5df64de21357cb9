"""Needle in a haystack: random digits hidden in Shakespeare, asked for at the end (days 37-38).

Unlike `common/data/synthetic.py`, whose copy task is made of random tokens, the filler here is real
text, so a model must find one odd line in a page of prose. One example, at total prompt length L
(characters = tokens) with the needle at depth d in [0, 1]:

    prompt = hay[:p] + "|k=4821|" + hay[p:] + "|k="      answer = "4821"
    H = L - len(needle) - len(query)  haystack characters, a window of the corpus
    p = round(d * H)                  d = 0: the needle opens the prompt; d = 1: it sits just before the query
    distance = query_pos - needle_pos = L - len(query) - p

The needle's characters (`|`, `=`, and the digits other than `3`) never occur in Tiny Shakespeare, so
`needle_corpus` appends them to the end of the corpus's character vocabulary: Shakespeare's ids are
those of `data.char_corpus()`, and the haystack is a window of its train or validation ids. Digits are
drawn independently and uniformly, so guessing scores 10^-k on a k-digit answer.

`make_examples` is the one generator; `make_example` (one, seeded), `needle_batch` ((x, y) for
training) and `NeedleBatches` (the `BatchSource` that `common.train.train` takes) wrap it.
`oracle_retrieve` answers by string search: the retriever any model is measured against.

>>> tok, train_ids, _ = needle_corpus()
>>> ex = make_example(train_ids, tok, length=40, depth=0.5, seed=0)
>>> len(ex.prompt), tok.decode(ex.prompt[ex.needle_pos:ex.needle_pos + 8]) == "|k=" + ex.digits + "|"
(40, True)
>>> tok.decode(oracle_retrieve(ex.prompt, tok)) == ex.digits == tok.decode(ex.answer)
True
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

NEEDLE_OPEN, NEEDLE_CLOSE, QUERY = "|k=", "|", "|k="  # the query repeats the needle's opening
DIGITS = "0123456789"
EXTRA_CHARS = DIGITS + "|="  # appended to the corpus vocabulary where missing


def needle_len(n_digits: int) -> int:
    """Characters of the needle: `|k=` + the digits + `|`."""
    return len(NEEDLE_OPEN) + n_digits + len(NEEDLE_CLOSE)


def min_length(n_digits: int) -> int:
    """The shortest prompt: needle and query with no haystack at all."""
    return needle_len(n_digits) + len(QUERY)


@functools.lru_cache(maxsize=2)
def needle_corpus(name: str = "tinyshakespeare"):
    """(tokenizer, train ids, val ids): `data.char_corpus(name)` with the needle's characters appended
    to its vocabulary (existing ids unchanged)."""
    from common.data.loaders import char_corpus
    from common.data.tokenizers import CharTokenizer

    base, train_ids, val_ids = char_corpus(name)
    tok = CharTokenizer(base.vocab + "".join(c for c in EXTRA_CHARS if c not in base.vocab))
    return tok, train_ids, val_ids


class NeedleExamples(NamedTuple):
    """A batch of needle prompts of one length, each followed by its answer."""

    ids: torch.Tensor         # (B, L + k): prompt then answer digits
    answer: torch.Tensor      # (B, k) the answer's token ids
    needle_pos: torch.Tensor  # (B,) index of the needle's first character `|`
    query_pos: int            # index of the query's first character (the same in every row: L - 3)

    @property
    def prompt(self) -> torch.Tensor:
        return self.ids[:, : self.query_pos + len(QUERY)]  # (B, L)

    @property
    def distance(self) -> torch.Tensor:
        """(B,) positions from the needle's start to the query's start."""
        return self.query_pos - self.needle_pos


class NeedleExample(NamedTuple):
    """One example (`make_example`): 1-D prompt and answer, positions as ints."""

    prompt: torch.Tensor  # (L,)
    answer: torch.Tensor  # (k,)
    needle_pos: int
    query_pos: int
    digits: str

    @property
    def distance(self) -> int:
        return self.query_pos - self.needle_pos


def _ids(tok, s: str) -> torch.Tensor:
    return torch.as_tensor(tok.encode(s), dtype=torch.long)


def make_examples(source: torch.Tensor, tok, length: int, depths=None, batch_size: int | None = None,
                  n_digits: int = 4, generator: torch.Generator | None = None) -> NeedleExamples:
    """Needle prompts of `length` tokens over windows of `source` (1-D corpus ids).

    `depths`: one depth per row (list or tensor in [0, 1]), or None for `batch_size` rows at
    uniform random depths. Draws (in this order) the window starts, the depths when random, and the
    digits from `generator` (the global Torch RNG when None).
    """
    H = length - min_length(n_digits)
    if H < 0:
        raise ValueError(f"length {length} is shorter than needle + query ({min_length(n_digits)} tokens)")
    if source.numel() <= H:
        raise ValueError(f"the corpus has {source.numel()} tokens, too few for a haystack of {H}")
    B = len(depths) if depths is not None else batch_size
    starts = torch.randint(0, source.numel() - H, (B,), generator=generator)
    d = torch.rand(B, generator=generator) if depths is None else torch.as_tensor(depths, dtype=torch.float64)
    if ((d < 0) | (d > 1)).any():
        raise ValueError(f"depths must lie in [0, 1], got {d.tolist()}")
    digits = torch.randint(0, 10, (B, n_digits), generator=generator)  # (B, k) independent, uniform
    # >>> exercise day37.make_examples: each row: haystack[:round(d*H)], needle, the rest, query, answer
    pos = torch.round(d.double() * H).long()  # (B,) haystack characters before the needle
    digit_ids = _ids(tok, DIGITS)[digits]  # (B, k)
    open_ids, close_ids, query_ids = _ids(tok, NEEDLE_OPEN), _ids(tok, NEEDLE_CLOSE), _ids(tok, QUERY)
    rows = []
    for b in range(B):
        hay = source[starts[b]: starts[b] + H].long()
        p = int(pos[b])
        rows.append(torch.cat([hay[:p], open_ids, digit_ids[b], close_ids, hay[p:], query_ids, digit_ids[b]]))
    return NeedleExamples(torch.stack(rows), digit_ids, pos, length - len(QUERY))  # ids (B, L + k)
    # <<< exercise day37.make_examples


def make_example(source: torch.Tensor, tok, length: int, depth: float, n_digits: int = 4,
                 seed: int = 0) -> NeedleExample:
    """One needle prompt, the same for the same arguments (its own generator, seeded with `seed`)."""
    ex = make_examples(source, tok, length, [depth], n_digits=n_digits,
                       generator=torch.Generator().manual_seed(seed))
    return NeedleExample(ex.prompt[0], ex.answer[0], int(ex.needle_pos[0]), ex.query_pos,
                         tok.decode(ex.answer[0]))


def training_pair(ex: NeedleExamples, n_digits: int, lm_loss: bool = False):
    """(x, y) for next-token training: x = ids[:, :-1], y = ids[:, 1:] with -1 (ignored) everywhere
    except the answer digits, or, with `lm_loss`, except the needle's own digits (random, so not
    predictable) — then the haystack's next characters are learned too, with the answer diluted among them.
    """
    x, y = ex.ids[:, :-1], ex.ids[:, 1:].clone()  # (B, L + k - 1) each
    k = n_digits
    if lm_loss:
        cols = ex.needle_pos[:, None] + len(NEEDLE_OPEN) - 1 + torch.arange(k)  # y index of each needle digit
        y.scatter_(1, cols, -1)
    else:
        y[:, : -k] = -1  # only the last k targets, the answer, are scored
    return x, y


def needle_batch(source: torch.Tensor, tok, batch_size: int, length: int, n_digits: int = 4,
                 generator: torch.Generator | None = None, lm_loss: bool = False, device="cpu"):
    """A training batch (x, y), each (B, length + k - 1), needles at uniform random depths."""
    ex = make_examples(source, tok, length, None, batch_size, n_digits, generator)
    x, y = training_pair(ex, n_digits, lm_loss)
    return x.to(device), y.to(device)


class NeedleBatches:
    """Needle batches behind `data.BatchSource` (`sample`, `fixed`, `batch_size`, `block_size`).

    Every batch draws its own prompt length log-uniformly from `min_len`..`length` (default: always
    `length`): each octave (16-32, 32-64, ...) is equally likely, so the short prompts, where a model
    first finds the needle, stay common while the long ones teach it to look far back. With
    `batch_tokens`, a batch of rows of length T holds batch_tokens // T of them (many short prompts,
    few long ones: about the same tokens, and so the same weight-matmul work, in every batch), and
    `batch_size` becomes the row count at the longest length. `block_size` is the longest x.

    Sequence-length warm-up: the first `warm_batches` training batches draw their lengths from
    `min_len`..`warm_len` only, where a copy circuit is found in a few hundred steps; the long prompts
    come after, to stretch it. `sample()` draws from the global Torch RNG (a seeded run repeats) and
    counts its batches; `fixed(n)` gives the same n batches of the full length range on every call
    (a private generator seeded with `seed`) and counts nothing.
    """

    def __init__(self, source: torch.Tensor, tok, length: int, batch_size: int, n_digits: int = 4,
                 lm_loss: bool = False, device="cpu", seed: int = 0, min_len: int | None = None,
                 batch_tokens: int | None = None, warm_len: int | None = None, warm_batches: int = 0):
        self.source, self.tok, self.length = source, tok, length
        self.n_digits, self.lm_loss, self.device, self.seed = n_digits, lm_loss, torch.device(device), seed
        self.min_len = length if min_len is None else min_len
        self.warm_len, self.warm_batches = min(warm_len or length, length), warm_batches
        if not min_length(n_digits) <= self.min_len <= self.warm_len:
            raise ValueError(f"need {min_length(n_digits)} <= min_len <= warm_len <= length, got {self.min_len}, "
                             f"{self.warm_len}, {length}")
        self.block_size = length + n_digits - 1  # the longest x
        self.batch_tokens = batch_tokens
        self.batch_size = max(1, batch_tokens // self.block_size) if batch_tokens else batch_size
        self.batches_served = 0

    @property
    def mean_block(self) -> float:
        """The mean length of x over batches after the warm-up, (hi - lo) / ln(hi / lo) + k - 1 for log-uniform."""
        lo, hi = self.min_len, self.length
        return (hi - lo) / math.log(hi / lo) + self.n_digits - 1 if hi > lo else hi + self.n_digits - 1

    def draw_length(self, generator=None, longest: int | None = None) -> int:
        hi = longest or self.length
        if self.min_len == hi:
            return hi
        u = float(torch.rand(1, generator=generator))
        return round(math.exp(math.log(self.min_len) + u * math.log(hi / self.min_len)))

    def rows_for(self, length: int) -> int:
        """Rows in a batch of prompts of `length`."""
        if self.batch_tokens:
            return max(1, self.batch_tokens // (length + self.n_digits - 1))
        return self.batch_size

    def _batch(self, generator, batch_size, longest):
        L = self.draw_length(generator, longest)
        return needle_batch(self.source, self.tok, batch_size or self.rows_for(L), L, self.n_digits, generator,
                            self.lm_loss, self.device)

    def sample(self, generator=None, batch_size: int | None = None):
        warm = self.batches_served < self.warm_batches
        self.batches_served += 1
        return self._batch(generator, batch_size, self.warm_len if warm else self.length)

    def fixed(self, n_batches: int):
        g = torch.Generator().manual_seed(self.seed)
        return [self._batch(g, None, self.length) for _ in range(n_batches)]


def depth_for_distance(length: int, distance: int, n_digits: int = 4) -> float:
    """The depth that puts the needle `distance` positions before the query in a prompt of `length`.

    distance = H + len(needle) - round(d H) (module docstring), so d = (H + len(needle) - distance) / H,
    for distances from len(needle) (d = 1) to H + len(needle) (d = 0).
    """
    H, N = length - min_length(n_digits), needle_len(n_digits)
    if not N <= distance <= H + N:
        raise ValueError(f"distance {distance} is outside {N}..{H + N} at length {length}")
    return (H + N - distance) / H if H else 1.0


def oracle_retrieve(prompt: torch.Tensor, tok, n_digits: int = 4) -> torch.Tensor:
    """The answer read off the prompt by string search: the k characters after the first `|k=`.

    `prompt` (L,) or (B, L) -> answer ids (k,) or (B, k). Never wrong on a well-formed prompt,
    at any length and depth: the baseline a model's accuracy is measured against.
    """
    rows = prompt[None] if prompt.dim() == 1 else prompt
    out = []
    for row in rows:
        text = tok.decode(row.tolist())
        i = text.find(NEEDLE_OPEN)
        if i < 0 or i == len(text) - len(QUERY):
            raise ValueError("no needle in this prompt (its only `|k=` is the query)")
        out.append(_ids(tok, text[i + len(NEEDLE_OPEN): i + len(NEEDLE_OPEN) + n_digits]))
    ans = torch.stack(out)
    return ans[0] if prompt.dim() == 1 else ans
