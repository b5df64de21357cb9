"""Day 47: the decoding toolkit — what each cut-off keeps, and diversity traded against quality.

The logit processors live in `common/nn/sampling.py` (temperature, top-k, top-p, min-p, repetition penalty,
composable, property-tested). This run measures them on the sprint's SFT model: first what each cut-off
keeps at a real decoding step (how many tokens, how much of the model's probability), then a sweep over
settings in which each setting samples several replies per prompt and is scored for quality (the verifier's
accuracy of one sample, and of the best of k) and diversity (distinct replies per prompt, distinct-2 over
characters).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from common.data import instruct
from common.eval import metrics
from common.nn import sampling
from common.run import plotting, runner
from common.train import posttrain, preference

DAY = 47
KEY_METRICS = ["accuracy_greedy", "accuracy_t1", "distinct_t1", "best_of_k_t1", "accuracy_top_p_0.9"]
METRIC_KINDS = {}

SETTINGS = {  # name -> processors; the sweep's order is the table's
    "greedy": [sampling.temperature(0)],
    "T=0.5": [sampling.temperature(0.5)],
    "T=0.8": [sampling.temperature(0.8)],
    "T=1": [sampling.temperature(1.0)],
    "T=1.3": [sampling.temperature(1.3)],
    "top_k=2": [sampling.top_k(2)],
    "top_k=10": [sampling.top_k(10)],
    "top_p=0.5": [sampling.top_p(0.5)],
    "top_p=0.9": [sampling.top_p(0.9)],
    "min_p=0.1": [sampling.min_p(0.1)],
    "T=1.3 + top_p=0.9": [sampling.temperature(1.3), sampling.top_p(0.9)],
    "T=1 + repetition 1.3": [sampling.repetition_penalty(1.3), sampling.temperature(1.0)],
}


@dataclass
class Config:
    n_prompts: int = 120     # val prompts (20 per family)
    k: int = 8               # samples per prompt and setting
    n_mass: int = 300        # prompts whose first answer step measures the kept mass


PRESETS = {"nano": dict(n_prompts=12, k=3, n_mass=12), "cpu": {}, "gpu": {}}


def nucleus(probs: torch.Tensor, p: float) -> torch.Tensor:
    """(V,) bool: the smallest set of most likely tokens whose probability sums to at least p (ties broken
    by index order of the sort)."""
    # >>> exercise day47.nucleus: sort descending, keep each token whose preceding cumulative mass is below p
    order = torch.argsort(probs, descending=True, stable=True)
    before = torch.cumsum(probs[order], 0) - probs[order]  # mass of the tokens ranked above each one
    keep = torch.zeros_like(probs, dtype=torch.bool)
    keep[order[before < p]] = True
    return keep
    # <<< exercise day47.nucleus


def kept_mass(logits: torch.Tensor, processors) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of logits (B, V): how many tokens the processors leave finite, and how much of the model's own
    (unprocessed, temperature 1) probability those tokens hold."""
    # >>> exercise day47.kept_mass: process, find the finite entries, sum the original softmax over them
    kept = torch.isfinite(sampling.process(logits, torch.zeros(logits.shape[0], 0, dtype=torch.long), processors))
    probs = torch.softmax(logits.float(), -1)
    return kept.sum(-1), (probs * kept).sum(-1)
    # <<< exercise day47.kept_mass


@torch.no_grad()
def first_step_logits(model, examples) -> torch.Tensor:
    """Logits of the first answer token for each example (the position of the assistant marker)."""
    ids = [posttrain.TOKENIZER.encode(instruct.render(e, False)[0]) for e in examples]
    T = max(map(len, ids))
    x = torch.full((len(ids), T), posttrain.TOKENIZER.pad_id, dtype=torch.long)
    for i, r in enumerate(ids):
        x[i, :len(r)] = torch.tensor(r)
    logits, _ = model(x.to(next(model.parameters()).device))
    return logits[torch.arange(len(ids)), torch.tensor([len(r) - 1 for r in ids])].float().cpu()


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    _, sft = posttrain.models_for(ctx.preset, ctx.device, posttrain.cache_dir_for(ctx), show_progress=not ctx.quick)
    splits = posttrain.sft_splits(posttrain.recipes(ctx.preset)[1])
    per = max(1, cfg.n_prompts // len(instruct.FAMILIES))
    rng = random.Random(ctx.seed)
    prompts = [e for f in instruct.FAMILIES for e in rng.sample([x for x in splits["val"] if x.family == f], per)]

    # --- what each cut-off keeps ---------------------------------------------------------------------------
    mass_ex = rng.sample(splits["val"], min(cfg.n_mass, len(splits["val"])))
    logits = first_step_logits(sft.model, mass_ex)
    rows = []
    for name in ("T=1", "top_k=2", "top_k=10", "top_p=0.5", "top_p=0.9", "min_p=0.1", "T=1.3 + top_p=0.9"):
        n, m = kept_mass(logits, SETTINGS[name])
        rows.append({"setting": name, "tokens kept (median)": float(n.median()), "tokens kept (max)": int(n.max()),
                     "model probability kept (mean)": float(m.mean()), "kept mass (min)": float(m.min())})
    probs = torch.softmax(logits, -1)
    library = torch.isfinite(sampling.top_p(0.9)(logits, torch.zeros(len(logits), 0, dtype=torch.long)))
    agree = float(np.mean([torch.equal(nucleus(probs[i], 0.9), library[i]) for i in range(len(probs))]))
    top1 = float(probs.max(-1).values.mean())
    d.section("What each cut-off keeps at the first answer token")
    d.text(f"The SFT model's distribution over the first token of its answer, on {len(mass_ex)} val prompts. Its "
           f"most likely token holds {top1:.1%} of the probability on average.")
    d.table(rows)
    d.text(f"What to look at: top-p keeps as few tokens as it takes to reach p, so on confident steps it keeps one "
           "or two and on uncertain ones many; top-k keeps the same count everywhere; min-p scales its cut with the "
           "top token's probability. A temperature above 1 flattens the distribution, so top-p after it keeps more "
           f"tokens. `nucleus` (written out) and the library's `top_p` keep the same set on {agree:.0%} of these "
           "steps.")

    # --- the sweep -----------------------------------------------------------------------------------------------
    results = {}
    for i, (name, procs) in enumerate(SETTINGS.items()):
        g = torch.Generator(device=ctx.device).manual_seed(ctx.seed + i)
        k = cfg.k
        if name == "greedy":  # deterministic: decode once, the k "samples" are k copies
            once = posttrain.complete(sft.model, [instruct.render(e, False)[0] for e in prompts], 24)
            flat = [r for r in once for _ in range(k)]
        else:
            flat = posttrain.complete(sft.model, [instruct.render(e, False)[0] for e in prompts for _ in range(k)],
                                      24, processors=procs, generator=g)
        groups = [flat[j * k:(j + 1) * k] for j in range(len(prompts))]
        right = [[preference.is_correct(e, r) for r in grp] for e, grp in zip(prompts, groups)]
        answers = [[instruct.parse_reply(r) for r in grp] for grp in groups]
        results[name] = {"accuracy": float(np.mean([np.mean(r) for r in right])),
                         "best_of_k": float(np.mean([any(r) for r in right])),
                         "distinct_replies": float(np.mean([len(set(a)) / k for a in answers])),
                         "distinct_2": metrics.distinct_n([list(a) for grp in answers for a in grp], 2),
                         "length": float(np.mean([len(posttrain.TOKENIZER.encode(r)) for r in flat]))}
    d.section(f"Diversity against quality: {len(prompts)} val prompts, {cfg.k} samples each")
    d.table([{"setting": n, "accuracy of a sample": r["accuracy"], f"best of {cfg.k}": r["best_of_k"],
              "distinct replies per prompt (share)": r["distinct_replies"], "distinct-2 (characters)": r["distinct_2"],
              "tokens per reply": r["length"]} for n, r in results.items()])
    p = plotting.lines(ctx.plot_path("diversity_quality"),
                       {n: ([r["distinct_replies"]], [r["accuracy"]]) for n, r in results.items()},
                       "distinct replies per prompt (share of samples)", "verifier accuracy of one sample",
                       "Each decoding setting: diversity against quality", markers=True)
    d.image(p, "Higher is better on both axes; the settings lie along a trade-off")
    best = max((n for n in results if n != "greedy"), key=lambda n: results[n]["best_of_k"])
    g, t1 = results["greedy"], results["T=1"]
    d.text(f"What to look at: greedy is right on {g['accuracy']:.1%} of the prompts and never varies (its "
           f"{cfg.k} 'samples' are one reply, a share of 1/{cfg.k} distinct). Sampling at "
           f"T = 1 is right on {t1['accuracy']:.1%} per sample but on {t1['best_of_k']:.1%} of prompts at least "
           "once in "
           f"{cfg.k}: the right answer is often in the model's distribution without being its mode, which is what "
           f"day 43's pairs and day 45's rewards exploit. The best coverage comes from {best} "
           f"({results[best]['best_of_k']:.1%} best of {cfg.k}). Raising the temperature buys distinct replies with "
           "accuracy; the cut-offs (top-p, min-p) remove the long tail that produces broken replies, so they lose "
           "less accuracy for the same diversity.")
    return {"accuracy_greedy": round(g["accuracy"], 4), "accuracy_t1": round(t1["accuracy"], 4),
            "distinct_t1": round(t1["distinct_replies"], 4), "best_of_k_t1": round(t1["best_of_k"], 4),
            **{f"accuracy_{n.replace(' ', '').replace('+', '_').replace('=', '_')}": round(r["accuracy"], 4)
               for n, r in results.items() if n not in ("greedy", "T=1")},
            "top1_mass": round(top1, 4), "nucleus_agreement": round(agree, 4), "k": cfg.k,
            "n_prompts": len(prompts)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
