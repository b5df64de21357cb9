"""Seeded synthetic sequence tasks: copy (and its reverse / sort variants), as token batches.

Unlike `common/data/loaders.py`, which cuts windows out of a real corpus, these sequences are generated,
so the right answer is known exactly and the length is a free parameter: the probes for
position schemes (day 9, 36), retrieval over distance (37-38) and length generalisation (67).

One example, with n = n_copy source tokens, g = gap filler tokens and a separator:

    seq = [s_1 .. s_n | FILL x g | SEP | t_1 .. t_n]      t = s (copy), reversed s, or sorted s
    x   = seq[:-1]   (length 2n + g)       y = seq[1:]   (next token at every position)
    mask[i] = True where y[i] is one of t_1 .. t_n: the positions whose answer must be copied

With `n_min` < n_copy, each example draws its own length n from n_min..n_copy and is left-padded
with FILL to the common length 2 * n_copy + g, so the copy offset n + g + 1 varies: the model
cannot solve the task with one fixed relative offset. `left_pad` puts that many FILL tokens in
front of every example: the same task, moved to later absolute positions (a test of whether a
model trained at length T still copies at positions T..2T).

The source is random, so nothing before SEP is predictable; only the masked positions are scored.
`CopyBatches` wraps this in the `sample()` / `fixed(n)` interface of `data.Batches`, with the
unmasked targets set to -1 (the ignore index of `GPT.forward`), so `common.train.train` runs on it.

>>> x, y, mask = copy_batch(1, n_copy=3, vocab_size=6, generator=torch.Generator().manual_seed(0))
>>> x.shape, int(mask.sum()), bool((y[mask] == x[0, :3]).all())
(torch.Size([1, 6]), 3, True)
"""

from __future__ import annotations

from typing import NamedTuple

import torch

SEP, FILL = 0, 1  # special tokens; the source tokens are drawn from FIRST_CONTENT .. vocab_size - 1
FIRST_CONTENT = 2
MODES = ("copy", "reverse", "sort")


class CopyBatch(NamedTuple):
    """One batch of a copy task: inputs, next-token targets and the positions that are scored."""

    x: torch.Tensor     # (B, T) input tokens, T = left_pad + 2 * n_copy + gap
    y: torch.Tensor     # (B, T) next-token targets
    mask: torch.Tensor  # (B, T) bool, True where y must reproduce a source token


def seq_len(n_copy: int, gap: int = 0, left_pad: int = 0) -> int:
    """Length T of x (and y) for n_copy source tokens, `gap` filler tokens and `left_pad` padding."""
    return left_pad + 2 * n_copy + gap


def n_copy_for(T: int, gap: int = 0) -> int:
    """The largest n_copy whose example fits in T positions."""
    n = (T - gap) // 2
    if n < 1:
        raise ValueError(f"T={T} leaves no room to copy with gap={gap}")
    return n


def copy_batch(batch_size: int, n_copy: int, vocab_size: int, gap: int = 0, mode: str = "copy",
               generator: torch.Generator | None = None, device=None, n_min: int | None = None,
               left_pad: int = 0) -> CopyBatch:
    """A batch of copy-task examples (see the module docstring); draws from `generator` if given,
    else from the global Torch RNG. `n_min` (default n_copy): shortest source length."""
    n_min = n_copy if n_min is None else n_min
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}, choose from {MODES}")
    if vocab_size <= FIRST_CONTENT or not 1 <= n_min <= n_copy or gap < 0 or left_pad < 0:
        raise ValueError(f"need vocab_size > {FIRST_CONTENT}, 1 <= n_min <= n_copy, gap >= 0, left_pad >= 0; "
                         f"got {vocab_size}, {n_min}, {n_copy}, {gap}, {left_pad}")
    T = seq_len(n_copy, gap, left_pad)
    seq = torch.full((batch_size, T + 1), FILL, dtype=torch.long)  # (B, T + 1), FILL = padding and gap
    mask = torch.zeros(batch_size, T, dtype=torch.bool)
    lengths = torch.randint(n_min, n_copy + 1, (batch_size,), generator=generator).tolist()
    src_all = torch.randint(FIRST_CONTENT, vocab_size, (batch_size, n_copy), generator=generator)  # (B, n)
    for b, n in enumerate(lengths):
        src = src_all[b, :n]
        tgt = src if mode == "copy" else src.flip(0) if mode == "reverse" else src.sort().values
        start = left_pad + 2 * (n_copy - n)  # FILL before the source
        seq[b, start:start + n] = src
        seq[b, T - n] = SEP  # after the gap
        seq[b, T - n + 1:] = tgt
        mask[b, T - n:] = True  # x at SEP predicts t_1, ..., x at t_(n-1) predicts t_n
    x, y = seq[:, :-1], seq[:, 1:]  # (B, T) each
    return CopyBatch(x.to(device), y.to(device), mask.to(device))


def ignore_unmasked(y: torch.Tensor, mask: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
    """Targets with every position outside `mask` set to `ignore_index` (skipped by cross-entropy)."""
    return y.masked_fill(~mask, ignore_index)


@torch.no_grad()
def copy_accuracy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(token accuracy over the masked positions, fraction of examples with every one right),
    from greedy (argmax) predictions under teacher forcing."""
    hit = logits.argmax(-1) == y  # (B, T)
    token_acc = (hit & mask).sum().item() / max(1, mask.sum().item())
    return token_acc, (hit | ~mask).all(dim=-1).float().mean().item()  # unmasked count as right


class CopyBatches:
    """Copy-task batches behind the interface of `data.Batches` (`sample`, `fixed`, `batch_size`,
    `block_size`), so `common.train.train(model, CopyBatches(...), CopyBatches(...), ...)` works.

    `sample()` draws from the global Torch RNG (a seeded run repeats); `fixed(n)` returns the same
    n batches on every call (a private generator seeded with `seed`). With `max_left_pad` > 0 each
    batch gets a random left_pad in 0..max_left_pad (so batches differ in length, up to `block_size`):
    the task appears at every position of the training window.
    """

    def __init__(self, n_copy: int, vocab_size: int, batch_size: int, gap: int = 0, mode: str = "copy",
                 device="cpu", seed: int = 0, n_min: int | None = None, max_left_pad: int = 0):
        self.n_copy, self.vocab_size, self.batch_size, self.n_min = n_copy, vocab_size, batch_size, n_min
        self.gap, self.mode, self.device, self.seed = gap, mode, torch.device(device), seed
        self.max_left_pad = max_left_pad
        self.block_size = seq_len(n_copy, gap, max_left_pad)

    def batch(self, generator: torch.Generator | None = None) -> CopyBatch:
        pad = int(torch.randint(self.max_left_pad + 1, (1,), generator=generator)) if self.max_left_pad else 0
        return copy_batch(self.batch_size, self.n_copy, self.vocab_size, self.gap, self.mode, generator,
                          self.device, self.n_min, pad)

    def sample(self, generator: torch.Generator | None = None):
        x, y, mask = self.batch(generator)
        return x, ignore_unmasked(y, mask)

    def fixed(self, n_batches: int):
        g = torch.Generator().manual_seed(self.seed)
        return [self.sample(g) for _ in range(n_batches)]
