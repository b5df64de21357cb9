"""Preference tuning for sprint 5: replies sampled from the SFT model, paired by the verifier, and DPO.

    replies = sample_replies(sft.model, examples, k=4, temperature=1.0, seed=0)     # k per prompt
    pairs = verifier_pairs(examples, replies)          # (prompt, a correct reply, an incorrect reply)
    dpo = train_dpo(sft, DPORecipe(), "cpu", cache_dir=...)   # policy from SFT, SFT frozen as reference

No human labels: the verifier (exact match by value against the computed answer) says which of two sampled
replies is better, so a pair exists for a prompt only when the SFT model answers it right sometimes and
wrong sometimes. The reference model is the SFT model itself, frozen; its log-probabilities of every pair
are computed once, before training, since they never change.

`train_dpo` is cached like `posttrain.train_sft` (key: the SFT key and the recipe), so day 44 compares the
very model day 43 trained, and day 49 sweeps `beta` by changing one field of the recipe.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from common.data import instruct
from common.eval import metrics
from common.nn import sampling
from common.nn.model import GPT
from common.run import atomic
from common.train import alignment, posttrain
from common.train.posttrain import TOKENIZER, Trained


@dataclass
class DPORecipe:
    """Where the pairs come from and how DPO trains on them."""

    n_prompts: int = 1500       # training prompts sampled for pairs (spread over the families)
    samples: int = 4            # replies sampled per prompt
    temperature: float = 1.0
    beta: float = 0.1           # strength of the pull towards the reference (the KL coefficient)
    steps: int = 250
    batch_size: int = 32        # pairs per step
    lr: float = 2e-5            # 5e-5 lowered exact match in trials (chosen log-probs fell too); 1e-5 changed little
    heldout_frac: float = 0.1   # pairs kept out of training, to measure preference accuracy on
    eval_interval: int = 25
    max_new: int = 24
    nll_coef: float = 1.0       # + this x the chosen reply's NLL per token (RPO, Pang et al. 2024); 0 = plain DPO
    hard_negatives: bool = True  # a wrong greedy reply is the rejected one when some sample was right
    gold_fallback: bool = False  # a prompt with only wrong samples pairs the computed answer against one of them
                                 # (off-policy; the nano preset needs it, a random model is never right)


class Pair(NamedTuple):
    """A preference pair: the prompt's example, the chosen (right) continuation and the rejected one."""

    example: instruct.Example
    chosen: str                 # the generated continuation (ends with END when the model stopped)
    rejected: str


def sample_replies(model: GPT, examples, k: int, temperature: float = 1.0, seed: int = 0,
                   max_new: int = 24) -> list[list[str]]:
    """k sampled continuations per example (direct answering), drawn with a seeded generator."""
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    prompts = [instruct.render(ex, False)[0] for ex in examples]
    flat = posttrain.complete(model, [p for p in prompts for _ in range(k)], max_new,
                              processors=[sampling.temperature(temperature)], generator=g)
    return [flat[i * k:(i + 1) * k] for i in range(len(examples))]


def is_correct(example: instruct.Example, reply: str) -> bool:
    """The verifier: the reply stopped (wrote END) and its answer equals the computed one by value."""
    return reply.endswith(instruct.END) and metrics.exact_match(instruct.parse_reply(reply), example.answer)


def verifier_pairs(examples, replies, seed: int = 0, gold_fallback: bool = False, greedy=None) -> list[Pair]:
    """One pair per prompt that has both a correct and an incorrect reply among its samples (picked at random).

    With `greedy` (the model's greedy reply per prompt), a wrong greedy reply is the rejected one whenever a
    sample was right: the pair then targets the answer the model actually gives. With `gold_fallback`, a
    prompt whose replies are all wrong pairs the computed answer against one of them (off-policy)."""
    rng = random.Random(seed)
    out = []
    for i, (ex, rs) in enumerate(zip(examples, replies)):
        pool = list(rs) + ([greedy[i]] if greedy is not None else [])
        good = sorted({r for r in pool if is_correct(ex, r)})
        bad = sorted({r for r in pool if not is_correct(ex, r)})
        if bad and not good and gold_fallback:
            good = [ex.answer + instruct.END]
        if good and bad:
            hard = greedy is not None and not is_correct(ex, greedy[i])
            out.append(Pair(ex, rng.choice(good), greedy[i] if hard else rng.choice(bad)))
    return out


def encode_replies(examples, replies, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) (B, T), right-padded: prompt + reply per row, the mask on the reply's tokens."""
    rows = []
    for ex, reply in zip(examples, replies):
        head = instruct.render(ex, False)[0]
        rows.append(TOKENIZER.encode_spans(head + reply, [(len(head), len(head) + len(reply))]))
    T = max(len(i) for i, _ in rows)
    ids = torch.full((len(rows), T), TOKENIZER.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for r, (i, m) in enumerate(rows):
        ids[r, :len(i)] = torch.tensor(i)
        mask[r, :len(m)] = torch.tensor(m)
    return ids.to(device), mask.to(device)


def sequence_logprobs(model: GPT, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) log-probability of each row's masked tokens (the reply) given what precedes them."""
    return (alignment.token_logprobs(model, ids) * mask[:, 1:]).sum(-1)


@torch.no_grad()
def pair_logprobs(model: GPT, pairs: list[Pair], device, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) sequence log-probabilities of every pair under `model`."""
    model.eval()
    out_c, out_r = [], []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        exs = [p.example for p in chunk]
        out_c.append(sequence_logprobs(model, *encode_replies(exs, [p.chosen for p in chunk], device)))
        out_r.append(sequence_logprobs(model, *encode_replies(exs, [p.rejected for p in chunk], device)))
    return torch.cat(out_c), torch.cat(out_r)


def preference_pool(sft: Trained, recipe: DPORecipe, splits: dict, seed: int = 0) -> tuple[list, list, dict]:
    """(train pairs, held-out pairs, stats): `n_prompts` training prompts, sampled, verified, paired, split.

    stats: per family, prompts whose samples were all correct, all wrong, or mixed (only mixed ones give a
    pair), and the share of correct samples."""
    rng = random.Random(seed)
    prompts = rng.sample(splits["train"], min(recipe.n_prompts, len(splits["train"])))
    replies = sample_replies(sft.model, prompts, recipe.samples, recipe.temperature, seed, recipe.max_new)
    greedy = (posttrain.complete(sft.model, [instruct.render(e, False)[0] for e in prompts], recipe.max_new)
              if recipe.hard_negatives else None)
    pairs = verifier_pairs(prompts, replies, seed, recipe.gold_fallback, greedy)
    stats: dict = {}
    for i, (ex, rs) in enumerate(zip(prompts, replies)):
        ok = [is_correct(ex, r) for r in rs]
        st = stats.setdefault(ex.family, {"prompts": 0, "all_correct": 0, "all_wrong": 0, "mixed": 0,
                                          "correct_samples": 0, "samples": 0, "greedy_wrong": 0, "hard_pairs": 0})
        st["prompts"] += 1
        st["all_correct" if all(ok) else "all_wrong" if not any(ok) else "mixed"] += 1
        st["correct_samples"] += sum(ok)
        st["samples"] += len(ok)
        if greedy is not None and not is_correct(ex, greedy[i]):
            st["greedy_wrong"] += 1
            st["hard_pairs"] += any(ok)
    n_held = max(1, round(recipe.heldout_frac * len(pairs))) if len(pairs) > 1 else 0
    return pairs[n_held:], pairs[:n_held], stats


POOL_FIELDS = ("n_prompts", "samples", "temperature", "max_new", "gold_fallback", "heldout_frac", "hard_negatives")


def cached_pool(sft: Trained, recipe: DPORecipe, splits: dict, seed: int = 0, cache_dir=None):
    """`preference_pool`, saved as JSON under a hash of the SFT key and the recipe's sampling fields, so runs
    that only change how DPO trains (beta, lr, steps) share one sampling pass."""
    key = dict(stage="pool", sft=sft.key, seed=seed, **{f: getattr(recipe, f) for f in POOL_FIELDS})
    path = Path(cache_dir) / f"pool_{posttrain.digest(key)}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        raw = json.loads(path.read_text())
        def as_pairs(rows):
            return [Pair(instruct.Example(**r["example"]), r["chosen"], r["rejected"]) for r in rows]
        return as_pairs(raw["train"]), as_pairs(raw["held"]), raw["stats"]
    train_pairs, held, stats = preference_pool(sft, recipe, splits, seed)
    if path is not None:
        def rows(pairs):
            return [{"example": dataclasses.asdict(p.example), "chosen": p.chosen, "rejected": p.rejected}
                    for p in pairs]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps({"train": rows(train_pairs), "held": rows(held), "stats": stats}))
    return train_pairs, held, stats


def fit_dpo(sft: Trained, recipe: DPORecipe, pool, device, seed: int = 0, tracker=None):
    """DPO on a given pool (train pairs, held-out pairs, stats): (policy, held-out accuracy, history)."""
    train_pairs, held, pool_stats = pool
    if not train_pairs:
        raise ValueError("the SFT model's samples gave no (correct, incorrect) pair: nothing for DPO to learn")
    ref_c, ref_r = pair_logprobs(sft.model, train_pairs, device)
    held_ref = pair_logprobs(sft.model, held, device) if held else None
    policy = GPT(sft.model.cfg).to(device)
    policy.load_state_dict(sft.model.state_dict())
    opt = torch.optim.AdamW(policy.parameters(), lr=recipe.lr, weight_decay=0.0, betas=(0.9, 0.99))
    torch.manual_seed(seed)
    hist = {k: [] for k in ("step", "loss", "margin", "accuracy", "reward_chosen", "reward_rejected", "nll_chosen",
                            "heldout_accuracy", "heldout_margin")}
    for step in range(recipe.steps + 1):
        if step % recipe.eval_interval == 0 or step == recipe.steps:
            hist["step"].append(step)
            if held:
                pc, pr = pair_logprobs(policy, held, device)
                _, st = alignment.dpo_loss(pc, pr, *held_ref, recipe.beta)
                hist["heldout_accuracy"].append(st["accuracy"])
                hist["heldout_margin"].append(st["margin"])
        if step == recipe.steps:
            break
        policy.train()
        idx = torch.randint(len(train_pairs), (min(recipe.batch_size, len(train_pairs)),)).tolist()
        batch = [train_pairs[i] for i in idx]
        exs = [p.example for p in batch]
        ids_c, m_c = encode_replies(exs, [p.chosen for p in batch], device)
        ids_r, m_r = encode_replies(exs, [p.rejected for p in batch], device)
        pi_c = sequence_logprobs(policy, ids_c, m_c)
        loss, st = alignment.dpo_loss(pi_c, sequence_logprobs(policy, ids_r, m_r), ref_c[idx], ref_r[idx],
                                      recipe.beta)
        nll = -(pi_c / m_c[:, 1:].sum(-1)).mean()  # the chosen reply's NLL per token (RPO's term)
        total = loss + recipe.nll_coef * nll
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        st["nll_chosen"] = nll.item()
        if tracker is not None:
            tracker.log_dict({"loss": loss.item(), **st}, step)
        if step % recipe.eval_interval == 0:
            for k in ("margin", "accuracy", "reward_chosen", "reward_rejected", "nll_chosen"):
                hist[k].append(st[k])
            hist["loss"].append(loss.item())
    policy.eval()
    history = {**hist, "n_train_pairs": len(train_pairs), "n_heldout_pairs": len(held), "pool": pool_stats,
               "examples": [{"family": p.example.family, "prompt": p.example.prompt, "answer": p.example.answer,
                             "chosen": p.chosen, "rejected": p.rejected} for p in train_pairs[:8]]}
    final = hist["heldout_accuracy"][-1] if hist["heldout_accuracy"] else float("nan")
    return policy, final, history


def train_dpo(sft: Trained, recipe: DPORecipe, splits: dict, device="cpu", *, seed: int = 0, cache_dir=None,
              tracker=None) -> Trained:
    """DPO from the SFT weights against the frozen SFT model. Its `history` holds the pair counts and the
    curves (every `eval_interval` steps: train-batch loss, margin, accuracy, rewards, chosen NLL, and the
    held-out pairs' accuracy and margin), the pool's stats and a few pairs. Cached under the SFT key and
    the recipe (the pool separately, `cached_pool`); `val_loss` holds the final held-out preference accuracy."""
    device = torch.device(device)
    key = dict(stage="dpo", sft=sft.key, recipe=dataclasses.asdict(recipe), seed=seed, device=device.type)

    def fit():
        pool = cached_pool(sft, recipe, splits, seed, cache_dir)
        policy, final, history = fit_dpo(sft, recipe, pool, device, seed, tracker)
        return policy, final, history, "trained"  # result: not None when trained in this call

    return posttrain.cached(cache_dir, "dpo", key, sft.model.cfg, device, fit)


DPO_RECIPES = {"nano": DPORecipe(n_prompts=60, samples=4, steps=10, batch_size=8, eval_interval=5, gold_fallback=True),
               "cpu": DPORecipe(), "gpu": DPORecipe(n_prompts=4000, samples=8, steps=600, batch_size=64)}


def dpo_recipe(preset: str, **overrides) -> DPORecipe:
    """The DPO recipe of a preset (nano, cpu, gpu), with fields replaced by `overrides` (day 49's beta sweep)."""
    if preset not in DPO_RECIPES:
        raise ValueError(f"unknown preset {preset!r}, choose from {list(DPO_RECIPES)}")
    return dataclasses.replace(DPO_RECIPES[preset], **overrides)
