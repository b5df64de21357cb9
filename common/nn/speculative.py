"""Decode loops over a KV cache: plain greedy decoding, and speculative decoding with a draft model.

`common/nn/generate.py` samples (temperature, top-k, top-p) and hides its cache. This file keeps
the cache in the caller's hands, because both loops here need to *rewind* it:

- `greedy_decode(model, idx, n, cache)` appends n argmax tokens, one position per forward pass
  once the prompt is in the cache; `cache=None` recomputes the whole prefix every step (the slow
  reference, and what the day 34 benchmark compares against).
- `speculative_decode(target, draft, idx, n, k)` lets a small draft model guess k tokens one at a
  time, then runs the big target model once over all k of them. The longest prefix of guesses that
  equals the target's own argmax is kept, plus the target's token at the first disagreement (or a
  bonus token after k agreements): 1 to k+1 tokens per target pass, and exactly the tokens
  `greedy_decode(target, ...)` would produce (Leviathan et al. 2023; Chen et al. 2023).

The invariant both loops keep: the cache holds every token of `idx` but the last one, which is
"pending" (its logits are the next forward pass's output). `feed` runs whatever the cache lacks;
`rewind` drops rejected positions (the next write overwrites them). Only the contiguous `KVCache`
can rewind. Notes: days/day34/notes.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common.nn.kv_cache import KVCache


def rewind(cache: KVCache, n_tokens: int) -> None:
    """Keep the first `n_tokens` positions of every layer; later ones are overwritten by the next feed."""
    if not isinstance(cache, KVCache):
        raise TypeError(f"only a contiguous KVCache can be rewound, got {type(cache).__name__}")
    if not 0 <= n_tokens <= cache.seq_len:
        raise ValueError(f"cannot rewind a cache of {cache.seq_len} tokens to {n_tokens}")
    cache.lengths = [n_tokens] * len(cache.lengths)


def feed(model, idx: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
    """Logits (B, T_new, V) for the tokens of idx (B, T) the cache does not hold yet.

    Without a cache: the whole of idx, every time (T_new = T)."""
    if cache is None:
        return model(idx)[0]
    start = cache.seq_len
    return model(idx[:, start:], kv_cache=cache, start_pos=start)[0]  # positions start..T-1


@torch.no_grad()
def greedy_decode(model, idx: torch.Tensor, n: int, cache: KVCache | None = None) -> torch.Tensor:
    """idx (B, T) -> (B, T + n), each new token the argmax of the model's next-token logits.

    With a cache, the first step runs every token the cache lacks (the prefill, if it is empty) and
    each later step exactly one: the last token appended. Without, each step reruns all of idx.
    Put the model in eval mode first (dropout)."""
    # >>> exercise day34.greedy_decode: n steps of feed-the-missing-tokens, argmax of the last logits, append
    for _ in range(n):
        logits = feed(model, idx, cache)  # (B, T_new, V)
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)  # (B, T + 1)
    return idx
    # <<< exercise day34.greedy_decode


def greedy_accept(drafts: torch.Tensor, choices: torch.Tensor) -> int:
    """How many leading draft tokens to keep: drafts (B, k) against the target's argmax choices (B, >= k).

    Row b keeps the drafts before its first mismatch; a batch keeps the fewest any row keeps, so that
    every row stays aligned (a row that agreed further loses nothing: its next token is the target's
    choice at that position, which equalled its draft).

    >>> greedy_accept(torch.tensor([[5, 7, 9]]), torch.tensor([[5, 7, 2, 4]]))
    2
    """
    # >>> exercise day34.greedy_accept: count the matching prefix per row (cumprod of equalities), min over the batch
    k = drafts.shape[1]
    if k == 0:
        return 0
    agree = (drafts == choices[:, :k]).long().cumprod(dim=1)  # (B, k): 1 up to the first mismatch
    return int(agree.sum(dim=1).min())
    # <<< exercise day34.greedy_accept


@dataclass
class SpecStats:
    """What a speculative run did: target passes, drafted and accepted tokens (batch-level)."""

    target_calls: int = 0
    drafted: int = 0
    accepted: int = 0
    new_tokens: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Accepted ÷ drafted draft tokens."""
        return self.accepted / self.drafted if self.drafted else float("nan")

    @property
    def tokens_per_call(self) -> float:
        """New tokens per target forward pass (1 for plain decoding, at most k + 1)."""
        return self.new_tokens / self.target_calls if self.target_calls else float("nan")


@torch.no_grad()
def speculative_decode(target, draft, idx: torch.Tensor, n: int, k: int = 4) -> tuple[torch.Tensor, SpecStats]:
    """idx (B, T) -> ((B, T + n) ids equal to `greedy_decode(target, idx, n)`, SpecStats).

    Each round: the draft proposes up to k tokens greedily (one cached step each), the target scores
    the pending token and all proposals in one cached pass, `greedy_accept` keeps a prefix, the
    target's own token follows it, and both caches are rewound to the accepted tokens. Both models
    must share the vocabulary and be in eval mode; `k=0` is plain greedy decoding through the target."""
    B, T0 = idx.shape
    total = T0 + n
    tc = KVCache.for_model(target, B, total)  # a pass never feeds past total - 1 positions
    dc = KVCache.for_model(draft, B, total)
    stats = SpecStats()
    while idx.shape[1] < total:
        T = idx.shape[1]
        k_now = min(k, total - T - 1)  # the target adds one token of its own each round
        proposal = idx
        for _ in range(k_now):  # the draft's cheap guesses, one position at a time
            logits = feed(draft, proposal, dc)
            proposal = torch.cat([proposal, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        drafts = proposal[:, T:]  # (B, k_now)
        logits = feed(target, proposal, tc)  # (B, k_now + 1, V) once the prompt is in the cache
        choices = logits[:, -(k_now + 1):].argmax(-1)  # (B, k_now + 1): the target's token after each
        a = greedy_accept(drafts, choices)
        idx = torch.cat([idx, drafts[:, :a], choices[:, a:a + 1]], dim=1)  # (B, T + a + 1)
        rewind(tc, idx.shape[1] - 1)
        rewind(dc, min(dc.seq_len, idx.shape[1] - 1))
        stats.target_calls += 1
        stats.drafted += k_now
        stats.accepted += a
        stats.new_tokens += a + 1
    return idx, stats
