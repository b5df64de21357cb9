"""Day 44: SFT vs DPO on prompts neither saw — verifier win rate with a bootstrap interval, KL, and your ratings.

Both models (day 42's SFT and day 43's DPO, loaded from the cache) answer every test prompt (held-out
phrasings) and every val prompt greedily. The verifier scores each answer; per prompt DPO wins (1), ties
(1/2) or loses (0) against SFT, and the win rate's 95% interval comes from resampling prompts. How far DPO
moved is measured as KL(DPO || SFT) on replies DPO samples. Last, the blind A/B ratings you gave with
`make rate` (`days/day44/rate.py`, stored in `results/day44/ratings.csv`) are summarised; without ten of
them the human target stays pending.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from common.data import instruct
from common.eval import metrics, ratings
from common.run import plotting, runner
from common.train import alignment, posttrain, preference

DAY = 44
KEY_METRICS = ["win_rate_test", "win_rate_test_low", "win_rate_test_high", "exact_match_test_sft",
               "exact_match_test_dpo", "kl_per_reply"]
METRIC_KINDS = {}
RATINGS = "ratings.csv"   # under results/day44/
MIN_RATINGS = 10


@dataclass
class Config:
    n_kl: int = 300          # test prompts DPO samples a reply for, to estimate KL(DPO || SFT)
    n_show: int = 10         # prompts in the comparison table
    n_boot: int = 2000


PRESETS = {"nano": dict(n_kl=16, n_show=4, n_boot=200), "cpu": {}, "gpu": {}}


def win_values(correct_a, correct_b) -> list[float]:
    """Per prompt, A against B: 1 when only A is right, 0 when only B is, 1/2 when both or neither are."""
    # >>> exercise day44.win_values: compare the two verdicts prompt by prompt; a tie is worth one half
    return [1.0 if a and not b else 0.0 if b and not a else 0.5 for a, b in zip(correct_a, correct_b)]
    # <<< exercise day44.win_values


def sequence_kl(logp_policy: torch.Tensor, logp_ref: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per reply, the k1 and k3 estimates of KL(policy || ref) summed over the reply's tokens.

    logp_* (B, T-1) are log-probabilities of the tokens the policy sampled; mask (B, T-1) marks the reply."""
    # >>> exercise day44.sequence_kl: the per-token estimators of alignment.kl_estimates, summed over the masked tokens
    k1, k3 = alignment.kl_estimates(logp_policy, logp_ref)
    return (k1 * mask).sum(-1), (k3 * mask).sum(-1)
    # <<< exercise day44.sequence_kl


@torch.no_grad()
def measure_kl(policy, ref, examples, seed: int, device) -> dict:
    """Replies sampled from `policy` at temperature 1; KL(policy || ref) per reply and per token, both estimators."""
    replies = preference.sample_replies(policy, examples, 1, 1.0, seed)
    ids, mask = preference.encode_replies(examples, [r[0] for r in replies], device)
    lp, lr = alignment.token_logprobs(policy, ids), alignment.token_logprobs(ref, ids)
    m = mask[:, 1:].float()
    k1, k3 = sequence_kl(lp, lr, m)
    tokens = m.sum()
    return {"k1": k1.mean().item(), "k3": k3.mean().item(), "k1_token": (k1.sum() / tokens).item(),
            "k3_token": (k3.sum() / tokens).item(), "n": len(examples), "tokens": int(tokens)}


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    cache = posttrain.cache_dir_for(ctx)
    base, sft = posttrain.models_for(ctx.preset, ctx.device, cache, show_progress=not ctx.quick)
    splits = posttrain.sft_splits(posttrain.recipes(ctx.preset)[1])
    dpo = preference.train_dpo(sft, preference.dpo_recipe(ctx.preset), splits, ctx.device, cache_dir=cache)
    beta = preference.dpo_recipe(ctx.preset).beta

    # --- verifier win rate ---------------------------------------------------------------------------------
    rec, out = {}, {}
    for split in ("test", "val"):
        for name, model in (("sft", sft.model), ("dpo", dpo.model)):
            rec[(split, name)] = posttrain.score(model, splits[split])
    rows = []
    for split in ("test", "val"):
        fams = list(instruct.FAMILIES) + ["all"]
        for f in fams:
            idx = [i for i, r in enumerate(rec[(split, "sft")]) if f == "all" or r["family"] == f]
            a = [rec[(split, "dpo")][i]["correct"] for i in idx]
            b = [rec[(split, "sft")][i]["correct"] for i in idx]
            w = win_values(a, b)
            lo, hi = metrics.bootstrap_ci(w, np.mean, cfg.n_boot, seed=ctx.seed)
            rows.append({"split": split, "family": f, "prompts": len(idx), "SFT exact match": np.mean(b),
                         "DPO exact match": np.mean(a), "DPO wins": sum(v == 1 for v in w),
                         "ties": sum(v == 0.5 for v in w), "SFT wins": sum(v == 0 for v in w),
                         "win rate": np.mean(w), "95% interval": f"[{lo:.3f}, {hi:.3f}]"})
            out[(split, f)] = (float(np.mean(w)), lo, hi, float(np.mean(a)), float(np.mean(b)))
    d.section("Win rate of DPO against SFT, scored by the verifier")
    d.text("Greedy answers of both models to every prompt; the verifier decides right or wrong. Per prompt DPO "
           "scores 1 (only DPO right), 0 (only SFT right) or 1/2 (both or neither), and the win rate is the mean; "
           f"the interval resamples prompts with replacement ({cfg.n_boot} times, percentile method).")
    d.table(rows)
    fams = list(instruct.FAMILIES) + ["all"]
    vals = [out[("test", f)] for f in fams]
    p = plotting.bars(ctx.plot_path("win_rate"), fams, [v[0] for v in vals], "win rate of DPO vs SFT (ties 1/2)",
                      "Held-out phrasings: win rate with 95% bootstrap interval",
                      errors=np.array([[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]]))
    d.image(p, "Verifier win rate per family on the test split; 0.5 is a draw")
    wr, lo, hi, acc_d, acc_s = out[("test", "all")]
    verdict = ("DPO is better" if lo > 0.5 else "SFT is better" if hi < 0.5 else "no difference can be claimed")
    d.text(f"What to look at: on the held-out phrasings the win rate is {wr:.3f}, 95% interval [{lo:.3f}, {hi:.3f}]: "
           f"{verdict} at this sample size. Most prompts are ties (both right or both wrong), and a "
           "verifier win rate is 1/2 + (accuracy of A - accuracy of B)/2 exactly, here 1/2 + "
           f"({acc_d:.3f} - {acc_s:.3f})/2 = {0.5 + (acc_d - acc_s) / 2:.3f}. A win rate of 0.6 would need DPO to "
           "be right on 20 points more prompts than SFT.")

    # --- a comparison table ---------------------------------------------------------------------------
    rng = random.Random(ctx.seed)
    differ = [i for i, (a, b) in enumerate(zip(rec[("test", "dpo")], rec[("test", "sft")])) if a["reply"] != b["reply"]]
    shown = rng.sample(differ, min(cfg.n_show, len(differ)))
    d.section("Where the two models answer differently")
    d.text(f"{len(differ)} of {len(rec[('test', 'sft')])} test prompts get different greedy answers; "
           f"{len(shown)} of them, drawn at random:")
    d.table([{"family": rec[("test", "sft")][i]["family"], "prompt": rec[("test", "sft")][i]["prompt"],
              "answer": rec[("test", "sft")][i]["answer"], "SFT": runner.md_cell(rec[("test", "sft")][i]["reply"]),
              "DPO": runner.md_cell(rec[("test", "dpo")][i]["reply"])} for i in sorted(shown)])

    # --- KL -----------------------------------------------------------------------------------------------
    kl_ex = random.Random(ctx.seed + 1).sample(splits["test"], min(cfg.n_kl, len(splits["test"])))
    kl = measure_kl(dpo.model, sft.model, kl_ex, ctx.seed, ctx.device)
    d.section("How far DPO moved: KL(DPO || SFT)")
    d.text(f"DPO samples one reply at temperature 1 for each of {kl['n']} test prompts ({kl['tokens']} reply tokens). "
           f"Per reply, the k1 estimate (the mean of log pi - log ref) is {kl['k1']:.4f} nats and the k3 estimate "
           f"{kl['k3']:.4f}; per token {kl['k1_token']:.5f} and {kl['k3_token']:.5f}. Both are unbiased for the "
           "same KL; k1 can be negative on a single sample, k3 never is, and the gap between them is sampling noise. "
           f"beta = {beta:g} priced this divergence in DPO's objective: the implicit reward beta log(pi / ref) is "
           f"beta times this quantity on average, about {beta * kl['k1']:.4f} nats per reply.")

    # --- human ratings ------------------------------------------------------------------------------------
    path = ctx.base / "results" / ctx.name / RATINGS  # the learner's file; a reference run never reads one
    summ = ratings.summary(path) if ctx.kind != "reference" else {"n": 0}
    d.section("Your blind ratings")
    result = {"win_rate_test": round(wr, 4), "win_rate_test_low": round(lo, 4), "win_rate_test_high": round(hi, 4),
              "win_rate_val": round(out[("val", "all")][0], 4),
              "exact_match_test_sft": round(acc_s, 4), "exact_match_test_dpo": round(acc_d, 4),
              "exact_match_val_sft": round(out[("val", "all")][4], 4),
              "exact_match_val_dpo": round(out[("val", "all")][3], 4),
              "n_differ": len(differ), "kl_per_reply": round(kl["k1"], 5), "kl3_per_reply": round(kl["k3"], 5),
              "kl_per_token": round(kl["k1_token"], 6)}
    if summ["n"] >= MIN_RATINGS:
        d.table([{"model": m, "mean rating (1-5)": v["mean"], "ratings": v["n"]} for m, v in summ["models"].items()])
        d.text("Preferred: " + ", ".join(f"{k} {v:.0%}" for k, v in summ["preferred"].items()) + f" of {summ['n']} "
               f"items (file `{path.relative_to(ctx.base)}`). The target is the DPO model's mean rating.")
        result["helpfulness_score"] = round(summ["models"].get("dpo", {"mean": float("nan")})["mean"], 3)
        result["n_ratings"] = summ["n"]
    else:
        d.text(f"Pending: {summ['n']} of {MIN_RATINGS} items rated. Run `make rate`: it shows {MIN_RATINGS} test "
               "prompts with the two models' answers as A and B in random order, asks you for a 1-5 rating of "
               f"each and which is better, and saves every answer at once in `results/{ctx.name}/{RATINGS}`. Then "
               "`make day 44` reports the mean ratings here and the target `helpfulness_score` (the DPO model's "
               "mean). The reference run has no ratings: a person has to give them.")
    return result


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
