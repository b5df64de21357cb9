"""Day 49: KL ablation — how strongly to tie the tuned model to SFT, measured as win rate and reward against KL.

DPO is retrained at several beta (the same preference pairs, `preference.cached_pool`), and GRPO at several KL
coefficients (the same budget as day 45; PPO at its default, or swept too with `rl_algos=ppo,grpo`). Every
model is scored the same way: verifier win rate against SFT on the test split with a bootstrap interval,
sampled reward on held-out val prompts, the KL to the SFT model measured on its own samples, and the alignment
tax: how much its perplexity on pretraining text (TinyStories val) rose relative to SFT's. The models at the
default strengths are the ones days 43 and 45 trained (cached).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from common import data
from common.eval import metrics
from common.run import plotting, runner
from common.run.errors import UserError
from common.train import posttrain, preference, rl
from common.train.loop import evaluate

DAY = 49
KEY_METRICS = ["win_rate", "win_rate_low", "alignment_tax", "kl_dpo_default", "best_win_rate"]
METRIC_KINDS = {}


@dataclass
class Config:
    betas: str = "0.03,0.1,0.3,1.0"       # DPO
    kl_coefs: str = "0.0,0.05,0.2"        # the RL algorithms below
    rl_algos: str = "grpo"                # swept over kl_coefs; PPO enters at its default (day 45's model) unless
                                          # listed here (rl_algos=ppo,grpo: about 5 more minutes)
    n_heldout: int = 400                   # val prompts for sampled reward and KL
    ppl_batches: int = 20                  # TinyStories val batches for perplexity
    n_boot: int = 1000


PRESETS = {"nano": dict(betas="0.1,1.0", kl_coefs="0.0,0.05", rl_algos="ppo,grpo", n_heldout=16, ppl_batches=2,
                        n_boot=100),
           "cpu": {}, "gpu": {}}


def alignment_tax(ppl_tuned: float, ppl_ref: float) -> float:
    """Relative rise in perplexity on pretraining text: ppl_tuned / ppl_ref - 1 (0 = no tax, < 0 = it improved)."""
    # >>> exercise day49.alignment_tax: a ratio of perplexities, minus one
    return ppl_tuned / ppl_ref - 1
    # <<< exercise day49.alignment_tax


def perplexity(mean_nll: float) -> float:
    """exp of the mean negative log-likelihood per token (nats)."""
    # >>> exercise day49.perplexity: the exponential of the mean NLL
    return math.exp(mean_nll)
    # <<< exercise day49.perplexity


def floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated numbers, got {text!r}") from None


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    cache = posttrain.cache_dir_for(ctx)
    base, sft = posttrain.models_for(ctx.preset, ctx.device, cache, show_progress=not ctx.quick)
    splits = posttrain.sft_splits(posttrain.recipes(ctx.preset)[1])
    default_beta = preference.dpo_recipe(ctx.preset).beta
    default_kl = rl.rl_recipe(ctx.preset).kl_coef
    betas, kls = floats(cfg.betas), floats(cfg.kl_coefs)
    if default_beta not in betas or default_kl not in kls:
        raise UserError(f"the sweeps must include the defaults (beta {default_beta}, kl_coef {default_kl}): "
                               "the targets are read at the defaults")

    models = {}
    for b in betas:
        models[("dpo", b)] = preference.train_dpo(sft, preference.dpo_recipe(ctx.preset, beta=b), splits,
                                                  ctx.device, cache_dir=cache).model
    swept = [a.strip() for a in cfg.rl_algos.split(",") if a.strip()]
    if not set(swept) <= {"ppo", "grpo"}:
        raise UserError(f"rl_algos must name ppo and/or grpo, got {cfg.rl_algos!r}")
    for algo in ("ppo", "grpo"):
        for k in (kls if algo in swept else [default_kl]):
            models[(algo, k)] = rl.train_rl(sft, rl.rl_recipe(ctx.preset, algo=algo, kl_coef=k), splits, ctx.device,
                                            cache_dir=cache).model

    # --- scores ------------------------------------------------------------------------------------------
    test = splits["test"]
    sft_right = [r["correct"] for r in posttrain.score(sft.model, test)]
    held = random.Random(ctx.seed).sample(splits["val"], min(cfg.n_heldout, len(splits["val"])))
    probe = rl.rl_recipe(ctx.preset, algo="grpo", group=1)
    _, va = posttrain.pretraining_text(posttrain.recipes(ctx.preset)[0].corpus_chars)
    ppl_b = data.Batches(va, sft.model.cfg.block_size, 16, ctx.device, seed=3).fixed(cfg.ppl_batches)

    def ppl(model):
        return perplexity(evaluate(model, {"val": ppl_b}, ctx.device)["val"])

    ppl_sft, ppl_base = ppl(sft.model), ppl(base.model)
    sft_held = rl.rollout(sft.model, sft.model, None, held, probe, ctx.seed, ctx.device)
    rows = []
    for (algo, s), m in models.items():
        right = [r["correct"] for r in posttrain.score(m, test)]
        w = metrics.paired_outcomes(right, sft_right)
        lo, hi = metrics.bootstrap_ci(w, np.mean, cfg.n_boot, seed=ctx.seed)
        h = rl.rollout(m, sft.model, None, held, probe, ctx.seed, ctx.device)
        p = ppl(m)
        rows.append({"algorithm": algo, "strength": s, "win rate vs SFT": float(np.mean(w)), "low": lo, "high": hi,
                     "exact match": float(np.mean(right)), "sampled reward": h["reward"].mean().item(),
                     "KL to SFT per reply": h["kl"], "perplexity (TinyStories)": p,
                     "alignment tax": alignment_tax(p, ppl_sft)})
    d.section("Every model against SFT")
    d.text(f"Strength is beta for DPO and the KL coefficient for PPO and GRPO (defaults {default_beta:g} and "
           f"{default_kl:g}); swept here: DPO over {cfg.betas}, {', '.join(swept).upper()} over {cfg.kl_coefs}. "
           f"Win rate: verifier, {len(test):,} test prompts, greedy, ties half, 95% bootstrap "
           f"interval. Sampled reward and KL: one reply at temperature 1 to each of {len(held)} val prompts; SFT's "
           f"own sampled reward there is {sft_held['reward'].mean().item():.3f}. Perplexity: {cfg.ppl_batches} fixed "
           f"batches of TinyStories val; SFT {ppl_sft:,.3f}, the base model {ppl_base:.3f}: SFT itself multiplied the "
           f"perplexity by {ppl_sft / ppl_base:,.0f}"
           + (f", to more than the vocabulary size ({posttrain.TOKENIZER.vocab_size}), worse than guessing uniformly: "
              "fine-tuned on chat turns only, the small model no longer models stories at all. Every tax below is "
              "measured against that broken baseline, so a negative tax means preference tuning moved partway back "
              "towards the base model's text statistics, not that it improved language modelling."
              if ppl_sft > posttrain.TOKENIZER.vocab_size else "."))
    d.table(rows)

    series_w, series_r = {}, {}
    for algo in ("dpo", "ppo", "grpo"):
        rs = sorted((r for r in rows if r["algorithm"] == algo), key=lambda r: r["KL to SFT per reply"])
        series_w[algo.upper()] = ([r["KL to SFT per reply"] for r in rs], [r["win rate vs SFT"] for r in rs])
        series_r[algo.upper()] = ([r["KL to SFT per reply"] for r in rs], [r["sampled reward"] for r in rs])
    p1 = plotting.lines(ctx.plot_path("win_rate_vs_kl"), series_w, "measured KL to SFT per reply (nats)",
                        "verifier win rate vs SFT (test)", "Quality against KL", markers=True)
    p2 = plotting.lines(ctx.plot_path("reward_vs_kl"), series_r, "measured KL to SFT per reply (nats)",
                        "sampled reward (val, T = 1)", "Reward against KL", markers=True)
    d.image(p1, "Win rate against the measured KL: one point per strength")
    d.image(p2, "Held-out sampled reward against the measured KL")
    dflt = next(r for r in rows if r["algorithm"] == "dpo" and r["strength"] == default_beta)
    best = max(rows, key=lambda r: r["win rate vs SFT"])
    loose = {a: min((r for r in rows if r["algorithm"] == a), key=lambda r: r["strength"]) for a in ("ppo", "grpo")}
    d.text(f"What to look at: at the default beta, DPO's win rate is {dflt['win rate vs SFT']:.3f} "
           f"[{dflt['low']:.3f}, {dflt['high']:.3f}] "
           f"(target 0.6: {'met' if dflt['win rate vs SFT'] >= 0.6 else 'missed'}) "
           f"at a KL of {dflt['KL to SFT per reply']:.3f} nats and an alignment tax of {dflt['alignment tax']:+.1%} "
           f"(target at most 10%: {'met' if dflt['alignment tax'] <= 0.1 else 'missed'}, against the SFT baseline "
           "described above). The best of all models "
           f"is {best['algorithm']} at {best['strength']:g} ({best['win rate vs SFT']:.3f}). A smaller beta lets DPO "
           f"move further from SFT for the same pairs; GRPO at its smallest KL coefficient "
           f"({loose['grpo']['strength']:g}) ends at a KL of {loose['grpo']['KL to SFT per reply']:.3f}, PPO "
           f"(swept: {'yes' if 'ppo' in swept else 'no, its default only'}) at "
           f"{loose['ppo']['KL to SFT per reply']:.3f}. "
           "Read the curves as bias against variance: a strong tie keeps the model near SFT (little gain, little "
           "risk), a weak one lets a small, noisy training signal move it further, for better or worse.")
    return {"win_rate": round(dflt["win rate vs SFT"], 4), "win_rate_low": round(dflt["low"], 4),
            "win_rate_high": round(dflt["high"], 4), "alignment_tax": round(dflt["alignment tax"], 4),
            "kl_dpo_default": round(dflt["KL to SFT per reply"], 4), "ppl_sft": round(ppl_sft, 4),
            "ppl_base": round(ppl_base, 4), "best_win_rate": round(best["win rate vs SFT"], 4),
            "best_model": f"{best['algorithm']}@{best['strength']:g}", "default_beta": default_beta,
            "default_kl_coef": default_kl,
            **{f"win_rate_{r['algorithm']}_{r['strength']:g}": round(r["win rate vs SFT"], 4) for r in rows},
            **{f"kl_{r['algorithm']}_{r['strength']:g}": round(r["KL to SFT per reply"], 4) for r in rows},
            **{f"tax_{r['algorithm']}_{r['strength']:g}": round(r["alignment tax"], 4) for r in rows},
            **{f"win_low_{r['algorithm']}_{r['strength']:g}": round(r["low"], 4) for r in rows},
            "sft_tax_vs_base": round(alignment_tax(ppl_sft, ppl_base), 2)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
