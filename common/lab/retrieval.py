"""Retrieval over long contexts: train a small GPT to find a needle, score it by length, depth and distance.

Days 37-39 share this harness; `common/data/needle.py` makes the prompts. The pieces:

    task = RetrievalTask()                                   # prompts of 16..256 tokens while training
    model, val_loss, history, result = train_retrieval_model(task.model_config(), task, 1400, "cpu",
                                                             cache_dir=ctx.cache_dir("retrieval"))
    acc = needle_accuracy(model, task, lengths=[64, 512], depths=[0, 0.5, 1], n_trials=20, device="cpu")
    trials = needle_trials(...)                  # the same run, one record per prompt (hit, distance, ...)
    rows = hit_rate_by_distance(trials, edges)   # the records pooled by needle-to-query distance
    fit = fit_decay(x, rate, n, "logistic")      # p(x) = p0 / (1 + exp(beta (x / x50 - 1))), least squares

The model is trained at short lengths (a length warm-up first, then up to `train_len`) with the needle at
uniform random depths and the loss on the answer digits only, then asked at lengths it never saw, which a
position scheme without a table (`pos="alibi"`, the default, or `"rope"`) allows. Scoring is exact match
of the greedy answer, computed in one teacher-forced pass: greedy decoding reproduces the answer exactly
when, and only when, every answer position's argmax is the right digit given the right digits before it
(tested against `generate`). Long prompts go through the model in chunks with a KV cache, so the attention
scores held at once stay under a bound; the work still grows as L^2.

Unlike the rest of `common/lab`, which measures functions and tensors, this module trains a `GPT`: the
retrieval model is the measuring instrument of days 37-39, built once and cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from common.data import needle
from common.nn.kv_cache import KVCache
from common.nn.model import GPT, GPTConfig
from common.run import atomic
from common.train.loop import TrainConfig, evaluate, train


@dataclass
class RetrievalTask:
    """The needle task's knobs (what the prompts look like), apart from the model and the optimiser."""

    train_len: int = 256      # longest training prompt: the model is not asked to look further back than this
    min_len: int = 16         # shortest: each batch draws its length log-uniformly in min_len..train_len
    warm_len: int = 64        # length warm-up: the first warm_steps batches are at most this long ...
    warm_steps: int = 800     # ... where the copy circuit forms in a few hundred steps; long prompts from the start
                              # delay it, by a number of steps that varies from seed to seed
    n_digits: int = 4         # answer digits: a guess matches exactly with probability 10^-n_digits
    batch_tokens: int = 2048  # tokens per batch: 107 prompts of 16, 7 of 256 (about the same matmul work per step)
    lm_loss: bool = False     # also learn the haystack's next characters (dilutes the answer's share of the loss)
    corpus: str = "tinyshakespeare"

    def model_config(self, **kw) -> GPTConfig:
        """The retrieval GPT for this task's vocabulary; `kw` (n_layer, pos, ...) win. Two layers suffice for
        an induction-style copy. Eight ALiBi heads (slopes 1/2 .. 1/256) learned it far sooner than four in our
        trials, and width 128 sooner and more reliably across seeds than 64."""
        tok, _, _ = needle.needle_corpus(self.corpus)
        return GPTConfig(**{"vocab_size": tok.vocab_size, "block_size": self.train_len + self.n_digits - 1,
                            "n_layer": 2, "n_head": 8, "n_embd": 128, "pos": "alibi", **kw})

    def batches(self, device="cpu"):
        """(train, val) `NeedleBatches` over the corpus's train and val splits, eval seeds 1 and 2."""
        tok, tr, va = needle.needle_corpus(self.corpus)
        return tuple(needle.NeedleBatches(ids, tok, self.train_len, 0, self.n_digits, self.lm_loss, device, seed,
                                          self.min_len, self.batch_tokens, self.warm_len, self.warm_steps)
                     for ids, seed in ((tr, 1), (va, 2)))


class Trained(NamedTuple):
    """What `train_retrieval_model` returns: the model (in eval mode) and how its training went."""

    model: GPT
    val_loss: float           # mean cross-entropy on the answer digits of fixed validation batches
    history: dict             # the evaluations during training: step, train, val (kept in the cache too)
    result: object            # the TrainResult, or None when the weights came from the cache


def train_retrieval_model(model_cfg: GPTConfig, task: RetrievalTask, steps: int, device, *, lr: float = 3e-3,
                          seed: int = 0, tracker=None, show_progress: bool = False, eval_iters: int = 8,
                          cache_dir: str | Path | None = None, retrain: bool = False) -> Trained:
    """Train GPT(model_cfg) on needle prompts of the train split; the val loss on the val split.

    With `cache_dir`, the weights are saved there under a hash of everything that decides them (config,
    task, steps, lr, seed, device type), and a later call with the same arguments loads them instead of
    training (`result` is then None): how day 38 reuses day 37's model. `retrain` trains (and re-saves)
    even when a cached copy exists.
    """
    device = torch.device(device)
    key = dict(model=dataclasses.asdict(model_cfg), task=dataclasses.asdict(task), steps=steps, lr=lr, seed=seed,
               device=device.type)
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(cache_dir) / f"retrieval_{digest}.pt"
        if path.is_file() and not retrain:
            saved = torch.load(path, map_location=device, weights_only=True)
            model = GPT(model_cfg).to(device)
            model.load_state_dict(saved["model"])
            return Trained(model.eval(), saved["val_loss"], saved["history"], None)
    train_b, val_b = task.batches(device)
    torch.manual_seed(seed)
    model = GPT(model_cfg).to(device)
    tc = TrainConfig(max_iters=steps, lr=lr, min_lr=lr / 10, warmup_iters=max(1, steps // 20), weight_decay=0.0,
                     eval_interval=max(1, steps // 10), eval_iters=eval_iters, log_interval=10, dtype="float32")
    res = train(model, train_b, val_b, tc, device, tracker, show_progress=show_progress)
    val_loss = evaluate(model, {"val": val_b.fixed(eval_iters)}, device)["val"]
    history = {k: list(res.history[k]) for k in ("step", "train", "val")}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            torch.save({"model": model.state_dict(), "val_loss": val_loss, "history": history, "key": key}, tmp)
    return Trained(model.eval(), val_loss, history, res)


# ---------------------------------------------------------------------------------------------- scoring


@torch.no_grad()
def answer_logits(model: GPT, ids: torch.Tensor, n_answer: int, max_scores: int | None = None) -> torch.Tensor:
    """Logits (B, n_answer, V) that predict the last `n_answer` tokens of ids (B, T), teacher-forced.

    One pass when the attention scores (B x heads x T x T) fit in `max_scores` elements (default 2^25,
    128 MiB of float32, or 2^28 on a GPU); else the sequence goes through in query chunks appended to a
    KV cache, each chunk's scores under the same bound, and the answer's positions as a last chunk.
    """
    model.eval()
    B, T = ids.shape
    max_scores = max_scores or (1 << 28 if ids.is_cuda else 1 << 25)
    x = ids[:, :-1]  # (B, T - 1): position t predicts token t + 1
    H = model.cfg.n_head
    if B * H * T * T <= max_scores:
        logits, _ = model(x)
        return logits[:, -n_answer:]
    chunk = max(1, max_scores // (B * H * T))
    cache = KVCache.for_model(model, B, x.shape[1])
    head = x.shape[1] - n_answer
    for s in range(0, head, chunk):
        model(x[:, s:min(s + chunk, head)], kv_cache=cache, start_pos=s)
    logits, _ = model(x[:, head:], kv_cache=cache, start_pos=head)  # (B, n_answer, V)
    return logits


def answer_hits(model: GPT, ex: needle.NeedleExamples, device) -> torch.Tensor:
    """(B, k) bool: answer position j right given the right digits before it (teacher-forced argmax).
    A row is an exact match of the greedy answer exactly when it is all True."""
    # >>> exercise day37.answer_hits: argmax of the logits that predict the k answer digits, compared with the answer
    k = ex.answer.shape[1]
    pred = answer_logits(model, ex.ids.to(device), k).argmax(-1).cpu()  # (B, k)
    return pred == ex.answer
    # <<< exercise day37.answer_hits


def _cell_generator(seed: int, length: int, depth_index: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + length * 101 + depth_index)


def needle_trials(model: GPT, task: RetrievalTask, lengths, depths, n_trials: int, device, seed: int = 0,
                  split: str = "val", batch_size: int = 16) -> list[dict]:
    """One record per prompt: `n_trials` prompts at every (length, depth), haystacks from `split`.

    `depths`: a list used at every length, or a dict {length: list}. A record holds length, depth,
    distance (needle start to query start), hit (exact match of the greedy answer) and digit_hits
    (per answer position, teacher-forced). The prompts depend on (seed, length, depth index) only, not
    on the model, so two models (and `oracle_accuracy`) see the same prompts.
    """
    tok, tr, va = needle.needle_corpus(task.corpus)
    source = va if split == "val" else tr
    device = torch.device(device)
    out = []
    for L in lengths:
        for j, d in enumerate(depths[L] if isinstance(depths, dict) else depths):
            ex = needle.make_examples(source, tok, L, [d] * n_trials, n_digits=task.n_digits,
                                      generator=_cell_generator(seed, L, j))
            for i in range(0, n_trials, batch_size):
                part = needle.NeedleExamples(ex.ids[i:i + batch_size], ex.answer[i:i + batch_size],
                                             ex.needle_pos[i:i + batch_size], ex.query_pos)
                hits = answer_hits(model, part, device)
                for b in range(hits.shape[0]):
                    out.append({"length": L, "depth": float(d), "distance": int(part.distance[b]),
                                "hit": bool(hits[b].all()), "digit_hits": hits[b].tolist()})
    return out


def accuracy_grid(trials: list[dict]) -> dict:
    """{(length, depth): exact-match rate} over the records of `needle_trials`."""
    cells: dict = {}
    for r in trials:
        cells.setdefault((r["length"], r["depth"]), []).append(r["hit"])
    return {key: sum(h) / len(h) for key, h in cells.items()}


def needle_accuracy(model: GPT, task: RetrievalTask, lengths, depths, n_trials: int, device,
                    seed: int = 0) -> dict:
    """{(length, depth): exact-match accuracy of the greedy answer} over n_trials prompts per cell."""
    return accuracy_grid(needle_trials(model, task, lengths, depths, n_trials, device, seed))


def oracle_accuracy(task: RetrievalTask, lengths, depths, n_trials: int, seed: int = 0) -> dict:
    """The same grid, on the same prompts as `needle_trials`, answered by `needle.oracle_retrieve`."""
    tok, _, va = needle.needle_corpus(task.corpus)
    acc = {}
    for L in lengths:
        for j, d in enumerate(depths[L] if isinstance(depths, dict) else depths):
            ex = needle.make_examples(va, tok, L, [d] * n_trials, n_digits=task.n_digits,
                                      generator=_cell_generator(seed, L, j))
            got = needle.oracle_retrieve(ex.prompt, tok, task.n_digits)
            acc[(L, float(d))] = (got == ex.answer).all(dim=1).float().mean().item()
    return acc


# ---------------------------------------------------------------------------------------------- retention


def hit_rate_by_distance(trials: list[dict], edges) -> list[dict]:
    """The records pooled into distance bins [edges[i], edges[i+1]): lo, hi, n, hits, rate, and the
    bin's mean distance (where its point is plotted and fitted). Empty bins are left out."""
    # >>> exercise day38.hit_rate_by_distance: for each bin [lo, hi) with records: n, hits, rate, mean distance
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = [r for r in trials if lo <= r["distance"] < hi]
        if sel:
            hits = sum(r["hit"] for r in sel)
            rows.append({"lo": lo, "hi": hi, "n": len(sel), "hits": hits, "rate": hits / len(sel),
                         "mean_distance": sum(r["distance"] for r in sel) / len(sel)})
    return rows
    # <<< exercise day38.hit_rate_by_distance


DECAY_FORMS = ("loglogistic", "logistic", "exponential")


def decay_curve(x, p0: float, x50: float, beta: float = 1.0, form: str = "loglogistic"):
    """The shapes fitted, each p0 at x = 0 (nearly, for "logistic") and p0 / 2 at x50:
    "loglogistic" p0 / (1 + (x/x50)^beta), a logistic in log-distance (a cliff whose width scales with x50);
    "logistic" p0 / (1 + exp(beta (x/x50 - 1))), a logistic in distance (a cliff of fixed width x50 / beta);
    "exponential" p0 * 2^(-x/x50), a constant hazard per character (beta unused)."""
    x = np.asarray(x, dtype=float)
    if form == "loglogistic":
        return p0 / (1.0 + (np.maximum(x, 1e-12) / x50) ** beta)
    if form == "logistic":
        return p0 / (1.0 + np.exp(np.minimum(beta * (x / x50 - 1.0), 700.0)))
    if form == "exponential":
        return p0 * np.exp2(-x / x50)
    raise ValueError(f"unknown decay form {form!r}; use one of {DECAY_FORMS}")


def fit_decay(x, rate, weight=None, form: str = "loglogistic") -> dict:
    """Weighted least squares of `decay_curve` to hit rates `rate` at distances `x`: p0, x50, beta, rmse.

    For fixed (x50, beta) the best p0 is closed-form (a one-parameter linear fit, clipped to [0, 1]); (x50,
    beta) come from a grid, log-spaced in both, refined three times around the best point. Deterministic,
    numpy only. `weight` (e.g. trials per bin) defaults to 1; rmse is the weighted root-mean-square residual.
    """
    # >>> exercise day38.fit_decay: grid over (x50, beta), p0 in closed form at each point, keep the least weighted SSE
    x, r = np.asarray(x, dtype=float), np.asarray(rate, dtype=float)
    w = np.ones_like(r) if weight is None else np.asarray(weight, dtype=float)
    lx = np.linspace(math.log(max(x.min(), 1.0)) - 3, math.log(max(x.max(), 1.0)) + 3, 81)  # log x50
    lb = np.zeros(1) if form == "exponential" else np.linspace(math.log(0.1), math.log(50.0), 48)  # log beta
    best = (math.inf, 0.0, 0.0, 0.0)  # (weighted mean squared error, p0, log x50, log beta)
    for _ in range(4):
        for a in lx:
            for c in lb:
                g = decay_curve(x, 1.0, math.exp(a), math.exp(c), form)  # the shape with p0 = 1
                p0 = float(np.clip((w * g * r).sum() / max((w * g * g).sum(), 1e-300), 0.0, 1.0))
                err = float((w * (p0 * g - r) ** 2).sum() / w.sum())
                if err < best[0]:
                    best = (err, p0, float(a), float(c))
        da, dc = lx[1] - lx[0], (lb[1] - lb[0]) if len(lb) > 1 else 0.0
        lx = np.linspace(best[2] - 2 * da, best[2] + 2 * da, 21)  # zoom in around the best point
        lb = lb if len(lb) == 1 else np.linspace(best[3] - 2 * dc, best[3] + 2 * dc, 21)
    err, p0, a, c = best
    return {"form": form, "p0": p0, "x50": math.exp(a), "beta": None if form == "exponential" else math.exp(c),
            "rmse": math.sqrt(err)}
    # <<< exercise day38.fit_decay
