"""Day 43: DPO — preferences from a verifier, the pairwise loss, and a trainer with a frozen reference.

The SFT model of day 42 (loaded from the cache, trained on first use) answers 1,500 training prompts four
times each at temperature 1. The verifier marks each reply right or wrong; a prompt with both gives one
pair (chosen = a right reply, rejected = a wrong one). DPO then trains a copy of the SFT model to raise the
chosen reply's log-probability relative to the rejected one's, both measured against the frozen SFT model
(`common/train/preference.py`, `common/train/alignment.dpo_loss`). The run shows where pairs come from,
the loss, the implicit rewards and the preference accuracy on held-out pairs, and what it did to exact match.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common.data import instruct
from common.run import plotting, runner
from common.train import alignment, posttrain, preference

DAY = 43
KEY_METRICS = ["n_train_pairs", "dpo_heldout_accuracy", "dpo_heldout_margin", "exact_match_val_sft",
               "exact_match_val_dpo"]
METRIC_KINDS = {}


@dataclass
class Config:
    beta: float = preference.DPORecipe.beta
    n_eval: int = 0      # val/test examples scored per family (0 = all)


PRESETS = {"nano": dict(n_eval=8), "cpu": {}, "gpu": {}}


def dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta: float):
    """The DPO loss per pair, from sequence log-probabilities (B,): -log sigmoid(beta * (h_w - h_l)) with
    h = log pi - log pi_ref, the log-ratio of policy to reference for a reply."""
    # >>> exercise day43.dpo_loss: rewards beta * (pi - ref) for chosen and rejected, then -logsigmoid of the gap
    margin = beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected))
    return -F.logsigmoid(margin)
    # <<< exercise day43.dpo_loss


def dpo_grad_weight(margin: torch.Tensor) -> torch.Tensor:
    """How hard DPO pushes on a pair: d loss / d h_w = -beta * sigmoid(-margin), so the weight sigmoid(-margin)
    is near 1 for a pair the model gets wrong (margin << 0) and near 0 once it is learned (margin >> 0)."""
    # >>> exercise day43.dpo_grad_weight: the derivative of -log sigmoid(m) with respect to m, negated
    return torch.sigmoid(-margin)
    # <<< exercise day43.dpo_grad_weight


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    cache = posttrain.cache_dir_for(ctx)
    base, sft = posttrain.models_for(ctx.preset, ctx.device, cache, show_progress=not ctx.quick)
    splits = posttrain.sft_splits(posttrain.recipes(ctx.preset)[1])
    recipe = preference.dpo_recipe(ctx.preset, beta=cfg.beta)
    t0 = time.perf_counter()
    dpo = preference.train_dpo(sft, recipe, splits, ctx.device, cache_dir=cache, tracker=ctx.tracker.scoped("dpo"))
    dpo_s = time.perf_counter() - t0
    h = dpo.history

    # --- the pairs ----------------------------------------------------------------------------------------
    d.section("Pairs from the verifier")
    d.text(f"{recipe.n_prompts:,} training prompts, {recipe.samples} replies each from the SFT model at temperature "
           f"{recipe.temperature:g}, plus its greedy reply. A prompt gives a pair only when its replies are mixed: "
           "all right or all wrong says nothing about which reply is better. When the greedy reply is wrong and a "
           "sample is right, the greedy reply is the rejected one (a hard negative: the answer the model actually "
           "gives), so the pair pushes on the mode, not on a tail sample greedy decoding would never produce.")
    pool = h["pool"]
    d.table([{"family": f, "prompts": v["prompts"], "all correct": v["all_correct"], "all wrong": v["all_wrong"],
              "mixed samples": v["mixed"], "correct samples": v["correct_samples"] / v["samples"],
              "greedy wrong": v.get("greedy_wrong", 0), "hard pairs": v.get("hard_pairs", 0)}
             for f, v in pool.items()])
    n_pairs = h["n_train_pairs"] + h["n_heldout_pairs"]
    d.text(f"What to look at: {n_pairs:,} pairs, {h['n_train_pairs']:,} for training and {h['n_heldout_pairs']} held "
           "out. The families the SFT model always gets right, or always wrong, contribute nothing: DPO can only "
           "sharpen what sampling already sometimes finds, so it works where accuracy is in between."
           + (" This preset pairs the computed answer against a wrong sample when no sample was right "
              "(`gold_fallback`): off-policy pairs, so that a smoke-size model gets any pairs at all."
              if recipe.gold_fallback else ""))
    d.table([{"family": e["family"], "prompt": e["prompt"], "answer": e["answer"],
              "chosen": runner.md_cell(e["chosen"]), "rejected": runner.md_cell(e["rejected"])}
             for e in h["examples"][:6]])

    # --- training -------------------------------------------------------------------------------------------
    steps = h["step"][:len(h["loss"])]
    p = plotting.lines(ctx.plot_path("training"),
                       {"loss (train batch)": (steps, h["loss"]), "margin (train batch)": (steps, h["margin"]),
                        "chosen reward": (steps, h["reward_chosen"]), "rejected reward": (steps, h["reward_rejected"]),
                        "margin (held-out pairs)": (h["step"], h["heldout_margin"])},
                       "step", "nats (rewards: beta x log-ratio)", f"DPO, beta = {recipe.beta:g}", markers=True)
    p2 = plotting.lines(ctx.plot_path("accuracy"), {"train batch": (steps, h["accuracy"]),
                                                     "held-out pairs": (h["step"], h["heldout_accuracy"])},
                        "step", "preference accuracy (chosen reward > rejected)", "Preference accuracy", markers=True)
    d.section("Training")
    d.text(f"{recipe.steps} steps of {recipe.batch_size} pairs, AdamW at lr {recipe.lr:g}, beta {recipe.beta:g}; the "
           "reference log-probabilities are computed once before training. "
           + ("Trained in this run" if dpo.result is not None else "Loaded from the cache")
           + f" ({dpo_s:.0f} s).")
    d.image(p, "Loss, margin and implicit rewards")
    d.image(p2, "Preference accuracy on training batches and held-out pairs")
    acc0, acc1 = h["heldout_accuracy"][0], h["heldout_accuracy"][-1]
    m0, m1 = h["heldout_margin"][0], h["heldout_margin"][-1]
    rc, rr = h["reward_chosen"][-1], h["reward_rejected"][-1]
    d.text(f"What to look at: at step 0 the policy is the reference, so every reward is 0 and the held-out accuracy "
           f"is {acc0:.2f} (ties count as wrong). After training it is {acc1:.2f} with a mean margin of {m1:+.3f} "
           f"(from {m0:+.3f}). In the last logged batch the chosen reward is {rc:+.3f} and the rejected {rr:+.3f}: "
           + ("both fell, the rejected much faster. DPO only asks for the gap; it can lower the probability of "
              "right answers too, which is one reason to watch exact match, not just the loss."
              if rc < 0 and rr < 0 else "the chosen reply's log-probability rose and the rejected one's fell."))

    # --- what it did to the answers ---------------------------------------------------------------------
    rows, em = [], {}
    for split in ("val", "test"):
        exs = instruct.first_per_family(splits[split], cfg.n_eval)
        for name, model in (("sft", sft.model), ("dpo", dpo.model)):
            em[(split, name)] = posttrain.accuracy_by_family(posttrain.score(model, exs))
    for f in list(instruct.FAMILIES) + ["all"]:
        rows.append({"family": f, **{f"{s} {n}": em[(s, n)][f] for s in ("val", "test") for n in ("sft", "dpo")}})
    d.section("Exact match before and after DPO (greedy)")
    d.table(rows)
    dv = em[("val", "dpo")]["all"] - em[("val", "sft")]["all"]
    dt = em[("test", "dpo")]["all"] - em[("test", "sft")]["all"]
    d.text(f"What to look at: greedy exact match moves by {dv:+.1%} on val and {dt:+.1%} on test. Sampling found the "
           "right answer some of the time; DPO makes it the most likely one more often, so the gains should sit in "
           "the families with many mixed prompts above. Day 44 scores the two models against each other with an "
           "interval, and measures how far DPO moved from the reference (KL).")

    # --- per pair: the loss by hand ---------------------------------------------------------------------------
    pairs = [preference.Pair(instruct.Example(e["family"], 0, e["prompt"], e["answer"]), e["chosen"], e["rejected"])
             for e in h["examples"]]
    pc, pr = preference.pair_logprobs(dpo.model, pairs, ctx.device)
    rc0, rr0 = preference.pair_logprobs(sft.model, pairs, ctx.device)
    ours = dpo_loss(pc, pr, rc0, rr0, recipe.beta)
    lib, _ = alignment.dpo_loss(pc, pr, rc0, rr0, recipe.beta)
    margins = recipe.beta * ((pc - rc0) - (pr - rr0))
    d.section(f"{len(pairs)} training pairs after DPO")
    d.table([{"family": p.example.family, "answer": p.example.answer,
              "h chosen = log pi - log ref": float(pc[i] - rc0[i]), "h rejected": float(pr[i] - rr0[i]),
              "margin beta (h_w - h_l)": float(margins[i]), "loss": float(ours[i]),
              "gradient weight sigmoid(-margin)": float(dpo_grad_weight(margins[i]))}
             for i, p in enumerate(pairs)])
    d.text(f"What to look at: the mean of the per-pair losses, {ours.mean().item():.5f}, is the library's DPO loss on "
           f"the same pairs ({lib.item():.5f}). A pair with a large positive margin has a gradient weight near 0: "
           "DPO stops pushing on what it has learned and spends its gradient on the pairs it still gets wrong.")

    return {"beta": recipe.beta, "n_prompts": recipe.n_prompts, "n_train_pairs": h["n_train_pairs"],
            "n_heldout_pairs": h["n_heldout_pairs"],
            "dpo_heldout_accuracy": round(acc1, 4), "dpo_heldout_margin": round(m1, 4),
            "dpo_heldout_accuracy_start": round(acc0, 4),
            "dpo_train_loss": round(h["loss"][-1], 4), "reward_chosen": round(rc, 4), "reward_rejected": round(rr, 4),
            "example_pairs_loss": round(ours.mean().item(), 5),
            **{f"exact_match_{s}_{n}": round(em[(s, n)]["all"], 4) for s in ("val", "test") for n in ("sft", "dpo")}}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
