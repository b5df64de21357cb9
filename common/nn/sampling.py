"""Composable logit processors: temperature, top-k, top-p, min-p and a repetition penalty.

A processor maps (logits (B, V), context ids (B, T)) to new logits; `process` applies a list of them in
order and `sample` draws the next token. `generate(..., processors=[...])` uses them at every step:

    procs = [repetition_penalty(1.3), temperature(0.8), top_p(0.9)]
    out = generate(model, prompt, 50, processors=procs, generator=g)

What each keeps (the rest get -inf, so softmax gives them probability 0):
- top_k(k): the k most likely tokens (ties at the k-th logit are all kept);
- top_p(p): the smallest set of most likely tokens whose probability reaches p (nucleus sampling);
- min_p(p): the tokens whose probability is at least p times the most likely one's;
- temperature(t) divides the logits by t (t -> 0 approaches greedy; `sample` treats t = 0 as argmax);
- repetition_penalty(r) makes every token already in the context less likely: a positive logit is divided
  by r, a negative one multiplied by r (CTRL, Keskar et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NEG_INF = float("-inf")


def temperature(t: float) -> Processor:
    """Divide the logits by t > 0; t = 0 is handled by `sample` as greedy."""
    if t < 0:
        raise ValueError(f"temperature must be >= 0, got {t}")

    def proc(logits, context):
        return logits if t == 0 else logits / t
    proc.greedy = t == 0
    return proc


def top_k(k: int) -> Processor:
    """Keep the k largest logits per row (all of them tied at the k-th)."""
    if k < 1:
        raise ValueError(f"top_k needs k >= 1, got {k}")

    def proc(logits, context):
        kth = torch.topk(logits, min(k, logits.shape[-1])).values[..., -1:]
        return logits.masked_fill(logits < kth, NEG_INF)
    return proc


def top_p(p: float) -> Processor:
    """Keep the smallest set of most likely tokens whose total probability is at least p."""
    if not 0 < p <= 1:
        raise ValueError(f"top_p needs 0 < p <= 1, got {p}")

    def proc(logits, context):
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(-1) - probs >= p  # the mass before a token already reaches p: not needed
        return logits.scatter(-1, order, sorted_logits.masked_fill(drop, NEG_INF))
    return proc


def min_p(p: float) -> Processor:
    """Keep the tokens whose probability is at least p times the largest probability in the row."""
    if not 0 <= p <= 1:
        raise ValueError(f"min_p needs 0 <= p <= 1, got {p}")

    def proc(logits, context):
        logp = F.log_softmax(logits, dim=-1)
        floor = logp.max(dim=-1, keepdim=True).values + torch.log(torch.tensor(p)) if p > 0 else None
        return logits if floor is None else logits.masked_fill(logp < floor, NEG_INF)
    return proc


def repetition_penalty(r: float) -> Processor:
    """Penalise every token present in the context: positive logits / r, negative logits * r (r >= 1)."""
    if r < 1:
        raise ValueError(f"repetition_penalty needs r >= 1, got {r}")

    def proc(logits, context):
        seen = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, context, True)
        return torch.where(seen, torch.where(logits > 0, logits / r, logits * r), logits)
    return proc


def process(logits: torch.Tensor, context: torch.Tensor, processors) -> torch.Tensor:
    """Apply `processors` in order to logits (B, V) given the context ids (B, T)."""
    for proc in processors:
        logits = proc(logits, context)
    return logits


def sample(logits: torch.Tensor, context: torch.Tensor, processors, generator=None) -> torch.Tensor:
    """Next ids (B, 1): greedy when a processor is temperature(0), else a draw from the processed softmax."""
    if any(getattr(proc, "greedy", False) for proc in processors):
        return process(logits, context, [p for p in processors if not getattr(p, "greedy", False)]).argmax(
            -1, keepdim=True)
    return torch.multinomial(F.softmax(process(logits, context, processors), dim=-1), 1, generator=generator)
