"""Day 45: PPO-lite and GRPO — learning from the verifier's reward with a leash to the SFT model.

Both algorithms start from day 42's SFT model and get the same budget: the same iterations, prompts, replies
per prompt, passes and minibatches (`common/train/rl.py`). PPO learns a value head and uses GAE over
per-token rewards (the verifier's reward at the end, a KL penalty at every token); GRPO has no value head and
scores each reply against the other replies to its prompt. The run plots reward, entropy and KL per
iteration, then measures on held-out prompts what each bought (sampled reward, greedy exact match) and at
what distance from the SFT model (KL).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from common.data import instruct
from common.run import plotting, runner
from common.train import alignment, posttrain, rl

DAY = 45
KEY_METRICS = ["reward_sft", "reward_ppo", "reward_grpo", "kl_ppo", "kl_grpo", "exact_match_val_ppo",
               "exact_match_val_grpo"]
METRIC_KINDS = {}


@dataclass
class Config:
    kl_coef: float = rl.RLRecipe.kl_coef
    n_heldout: int = 600     # val prompts for the held-out reward and KL (one sampled reply each)
    n_eval: int = 0          # val/test examples per family for greedy exact match (0 = all)


PRESETS = {"nano": dict(n_heldout=24, n_eval=6), "cpu": {}, "gpu": {}}


def gae_by_hand(rewards: list[float], values: list[float], gamma: float, lam: float) -> list[float]:
    """GAE for one reply, written as the definition: delta_t = r_t + gamma V_{t+1} - V_t (V after the last
    token is 0) and A_t = sum over k >= 0 of (gamma lam)^k delta_{t+k}."""
    # >>> exercise day45.gae_by_hand: the deltas first, then each advantage as a discounted sum of the deltas ahead
    T = len(rewards)
    nxt = values[1:] + [0.0]
    delta = [rewards[t] + gamma * nxt[t] - values[t] for t in range(T)]
    return [sum((gamma * lam) ** k * delta[t + k] for k in range(T - t)) for t in range(T)]
    # <<< exercise day45.gae_by_hand


def group_advantages(rewards: list[float]) -> list[float]:
    """GRPO's advantage of each reply in one group: (r - mean) / (std + 1e-6), the population std."""
    # >>> exercise day45.group_advantages: centre on the group's mean, divide by its standard deviation (ddof 0)
    mu = sum(rewards) / len(rewards)
    sd = (sum((r - mu) ** 2 for r in rewards) / len(rewards)) ** 0.5
    return [(r - mu) / (sd + 1e-6) for r in rewards]
    # <<< exercise day45.group_advantages


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    cache = posttrain.cache_dir_for(ctx)
    base, sft = posttrain.models_for(ctx.preset, ctx.device, cache, show_progress=not ctx.quick)
    splits = posttrain.sft_splits(posttrain.recipes(ctx.preset)[1])
    runs, secs = {}, {}
    for algo in ("ppo", "grpo"):
        recipe = rl.rl_recipe(ctx.preset, algo=algo, kl_coef=cfg.kl_coef)
        t0 = time.perf_counter()
        runs[algo] = rl.train_rl(sft, recipe, splits, ctx.device, cache_dir=cache,
                                 tracker=ctx.tracker.scoped(algo))
        secs[algo] = time.perf_counter() - t0
    recipe = rl.rl_recipe(ctx.preset, kl_coef=cfg.kl_coef)
    budget = recipe.iterations * recipe.prompts_per_iter * recipe.group

    d.section("The two algorithms on one budget")
    d.table([{"": "rollouts per iteration", "PPO": recipe.prompts_per_iter * recipe.group,
              "GRPO": recipe.prompts_per_iter * recipe.group},
             {"": "iterations", "PPO": recipe.iterations, "GRPO": recipe.iterations},
             {"": "updates per iteration", "PPO": recipe.epochs * -(-recipe.prompts_per_iter * recipe.group
                                                                     // recipe.minibatch),
              "GRPO": recipe.epochs * -(-recipe.prompts_per_iter * recipe.group // recipe.minibatch)},
             {"": "baseline", "PPO": "value head + GAE (gamma 1, lambda 0.95)",
              "GRPO": f"mean of the {recipe.group} replies to the same prompt"},
             {"": "KL to SFT", "PPO": f"-{cfg.kl_coef:g} x (log pi - log ref) in every token's reward",
              "GRPO": f"{cfg.kl_coef:g} x k3 per token in the loss"},
             {"": "wall time (s; 0 when loaded from the cache)",
              "PPO": round(secs["ppo"]) if runs["ppo"].result else 0,
              "GRPO": round(secs["grpo"]) if runs["grpo"].result else 0}])
    d.text(f"{budget:,} sampled replies per algorithm, clipped objective with epsilon {recipe.clip}, AdamW at lr "
           f"{recipe.lr:g}. The reward is the verifier's: 1 for a right answer that stopped, 0 otherwise.")

    # --- curves ------------------------------------------------------------------------------------------
    hp, hg = runs["ppo"].history, runs["grpo"].history
    for what, label in (("reward", "mean reward of the rollouts"), ("entropy", "mean token entropy (nats)"),
                        ("kl", "KL to SFT per reply, k1 (nats)")):
        p = plotting.lines(ctx.plot_path(what), {"PPO": (hp["iteration"], hp[what]),
                                                 "GRPO": (hg["iteration"], hg[what])}, "iteration", label,
                           f"{label.split(' (')[0].capitalize()} per iteration", markers=True)
        d.image(p, f"{label.capitalize()}, measured on each iteration's own rollouts")
    first = {a: runs[a].history["reward"][0] for a in runs}
    last3 = {a: sum(runs[a].history["reward"][-3:]) / len(runs[a].history["reward"][-3:]) for a in runs}
    d.text(f"What to look at: the rollout reward goes from {first['ppo']:.3f} to {last3['ppo']:.3f} for PPO and from "
           f"{first['grpo']:.3f} to {last3['grpo']:.3f} for GRPO (first iteration, mean of the last three). "
           f"Rollout entropy ends at {hp['entropy'][-1]:.3f} and {hg['entropy'][-1]:.3f} nats per token, from "
           f"{hp['entropy'][0]:.3f}. Each iteration's prompts are new draws (some families have far more uncertain "
           "answers than others), so these curves move with the prompts as much as with the policy; the held-out "
           "numbers below, on one fixed set of prompts, are the fair comparison.")

    # --- held-out ------------------------------------------------------------------------------------------
    held = random.Random(ctx.seed).sample(splits["val"], min(cfg.n_heldout, len(splits["val"])))
    probe = rl.rl_recipe(ctx.preset, algo="grpo", group=1)
    models = {"sft": sft.model, "ppo": runs["ppo"].model, "grpo": runs["grpo"].model}
    heldout = {name: rl.rollout(m, sft.model, None, held, probe, ctx.seed, ctx.device) for name, m in models.items()}
    em = {(s, n): posttrain.accuracy_by_family(posttrain.score(m, instruct.first_per_family(splits[s],
                                                                                                cfg.n_eval)))
          for s in ("val", "test") for n, m in models.items()}
    d.section("Held-out: what the reward bought, and at what KL")
    d.table([{"model": n, "sampled reward (val, T = 1)": heldout[n]["reward"].mean().item(),
              "KL to SFT per reply (k1)": heldout[n]["kl"], "entropy per token": heldout[n]["entropy"],
              "reply tokens": heldout[n]["length"], "greedy exact match val": em[("val", n)]["all"],
              "greedy exact match test": em[("test", n)]["all"]} for n in models])
    d.table([{"family": f, **{f"{n} val": em[("val", n)][f] for n in models},
              **{f"{n} test": em[("test", n)][f] for n in models}} for f in instruct.FAMILIES])
    r = {n: heldout[n]["reward"].mean().item() for n in models}
    ent = {n: heldout[n]["entropy"] for n in models}
    d.text(f"What to look at: on {len(held)} val prompts (one reply each at temperature 1), the reward moves from "
           f"{r['sft']:.3f} (SFT) to {r['ppo']:.3f} with PPO (gain {r['ppo'] - r['sft']:+.3f}, KL "
           f"{heldout['ppo']['kl']:.3f} nats per reply) and to {r['grpo']:.3f} with GRPO (gain "
           f"{r['grpo'] - r['sft']:+.3f}, KL {heldout['grpo']['kl']:.3f}). Sampled reward is what the training "
           "optimised; greedy exact match is what a user sees, and the two can move differently, since RL mostly "
           "removes the sampled mistakes that greedy decoding already avoided. Entropy on these prompts: SFT "
           f"{ent['sft']:.3f}, PPO {ent['ppo']:.3f}, GRPO {ent['grpo']:.3f} nats per token: "
           + ("both tuned policies are sharper than SFT, as optimising a reward for one answer makes them."
              if ent["ppo"] < ent["sft"] and ent["grpo"] < ent["sft"] else
              "not every tuned policy is sharper than SFT; at this budget and KL penalty the sharpening a reward "
              "for one answer causes is within the run-to-run noise."))

    # --- the advantages on one group -----------------------------------------------------------------------
    right = [e for i, e in enumerate(held) if heldout["sft"]["reward"][i] > 0 and e.family in ("lookup", "convert")]
    ex = right[0] if right else held[0]  # a prompt SFT sometimes gets right: a group with mixed rewards is likely
    grp = rl.rollout(runs["grpo"].model, sft.model, None, [ex], rl.rl_recipe(ctx.preset, algo="grpo", group=6),
                     ctx.seed, ctx.device)
    rewards = grp["reward"].tolist()
    ours = group_advantages(rewards)
    lib = alignment.grpo_advantages(grp["reward"].view(1, -1))[0].tolist()
    d.section("GRPO's advantages on one group")
    d.text(f"Six replies of the GRPO model to \"{ex.prompt}\" (answer {ex.answer}):")
    texts = [posttrain.TOKENIZER.decode(grp["ids"][i][grp["m"][i].bool().nonzero()[:, 0] + 1].tolist())
             for i in range(len(rewards))]
    d.table([{"reply": runner.md_cell(t), "reward": rw, "advantage (group_advantages)": a, "library": b}
             for t, rw, a, b in zip(texts, rewards, ours, lib)])
    d.text("What to look at: the advantages sum to zero within the group; when every reply has the same reward, "
           "all are 0 and the group teaches nothing, which is why GRPO needs prompts the model sometimes gets "
           "right. PPO's value head plays the same role as the group mean, learned instead of measured.")
    v = gae_by_hand([0.0, 0.0, 1.0], [0.2, 0.4, 0.5], 1.0, 0.95)
    lib_v, _ = alignment.gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.2, 0.4, 0.5]]),
                             torch.ones(1, 3, dtype=torch.bool), 1.0, 0.95)
    d.text(f"GAE by hand on a three-token reply (reward 1 at the end, values 0.2, 0.4, 0.5, gamma 1, lambda 0.95): "
           f"advantages {', '.join(f'{x:.4f}' for x in v)}; the library gives "
           f"{', '.join(f'{x:.4f}' for x in lib_v[0].tolist())}.")

    out = {"budget_rollouts": budget, "kl_coef": cfg.kl_coef,
           **{f"reward_{n}": round(r[n], 4) for n in models},
           "reward_gain_ppo": round(r["ppo"] - r["sft"], 4), "reward_gain_grpo": round(r["grpo"] - r["sft"], 4),
           "kl_ppo": round(heldout["ppo"]["kl"], 4), "kl_grpo": round(heldout["grpo"]["kl"], 4),
           "entropy_sft": round(heldout["sft"]["entropy"], 4), "entropy_ppo": round(heldout["ppo"]["entropy"], 4),
           "entropy_grpo": round(heldout["grpo"]["entropy"], 4),
           **{f"exact_match_{s}_{n}": round(em[(s, n)]["all"], 4) for s in ("val", "test") for n in models},
           "rollout_reward_first_ppo": round(first["ppo"], 4), "rollout_reward_last_ppo": round(last3["ppo"], 4),
           "rollout_reward_first_grpo": round(first["grpo"], 4), "rollout_reward_last_grpo": round(last3["grpo"], 4)}
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
