"""Sampling from a language model: temperature, top-k, top-p, with or without a KV cache.

`generate(model, idx, n)` appends `n` tokens to each row of `idx` (B, T). With `use_cache=True`
(the default) the prompt goes through the model once and each new token costs one position: the
keys and values of earlier positions come from a `KVCache`. With `use_cache=False` every step
re-runs the whole (cropped) context, the slow reference the cache is tested against: both give
the same tokens for the same seed (`temperature=0` is greedy and needs no seed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.nn import sampling
from common.nn.kv_cache import KVCache


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k / the top-p nucleus to -inf. logits (B, V)."""
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # drop a token when the mass *before* it already reaches top_p (the first always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k=None, top_p=None, generator=None):
    """logits (B, V) -> next ids (B, 1). temperature 0 means argmax."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    probs = F.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
             use_cache: bool = True, cache=None, generator=None, processors=None) -> torch.Tensor:
    """Return idx (B, T + max_new_tokens). `cache` may be given (e.g. a PagedKVCache).

    `processors` (a list from `common.nn.sampling`) replaces temperature/top_k/top_p when given: each step
    samples from the processed logits, with the whole sequence so far as their context.
    """

    def pick(last_logits, seq):
        if processors is not None:
            return sampling.sample(last_logits, seq, processors, generator)
        return sample_next(last_logits, temperature, top_k, top_p, generator)

    was_training = model.training
    model.eval()
    block = model.cfg.block_size
    limited = model.cfg.pos in ("learned", "sinusoidal")  # learned tables stop at block_size
    if use_cache:
        total = idx.shape[1] + max_new_tokens
        if limited and total > block:
            raise ValueError(f"prompt + new tokens = {total} exceeds block_size {block}; "
                             "use use_cache=False (sliding window) or a rope/alibi model")
        cache = cache if cache is not None else KVCache.for_model(model, idx.shape[0], total)
        logits, _ = model(idx, kv_cache=cache, start_pos=0)
        pos = idx.shape[1]
        for _ in range(max_new_tokens):
            nxt = pick(logits[:, -1], idx)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)
            if idx.shape[1] == total:
                break
            logits, _ = model(nxt, kv_cache=cache, start_pos=pos)
            pos += 1
    else:
        for _ in range(max_new_tokens):
            ctx = idx[:, -block:] if limited else idx
            logits, _ = model(ctx)
            idx = torch.cat([idx, pick(logits[:, -1], idx)], dim=1)
    model.train(was_training)
    return idx
