"""Reinforcement learning from a verifier for sprint 5: PPO-lite with a value head and GAE, and GRPO.

    ppo = train_rl(sft, RLRecipe(algo="ppo"), splits, "cpu", cache_dir=...)    # policy from SFT
    grpo = train_rl(sft, RLRecipe(algo="grpo"), splits, "cpu", cache_dir=...)  # same budget, no value head

Each iteration samples `group` replies at temperature 1 for each of `prompts_per_iter` training prompts from
the current policy (the rollouts), scores them with the verifier (reward 1 when right, else 0), and takes
`epochs` passes of minibatch updates over them. The two algorithms differ in where the advantage comes from
and where the KL to the frozen SFT model enters:

- **PPO**: a value head (one linear layer on the policy's last hidden state, sharing its trunk) predicts the
  return at every reply token; the reward at every token is -kl_coef (log pi - log ref), plus the verifier's
  reward at the last one; GAE turns rewards and values into advantages (whitened over the batch). Loss = the
  clipped surrogate + value_coef x the value error.
- **GRPO**: no value head; a reply's advantage is its reward minus its group's mean, over the group's std, the
  same at every one of its tokens; the KL enters the loss directly, as kl_coef x the k3 estimate per token.

Sampling uses temperature 1 and no other processor, so the rollouts come from the policy itself and the
probability ratios of the clipped objective are exact. Cached like the other stages (key: SFT key + recipe).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import torch
from torch import nn

from common.nn.model import GPT
from common.train import alignment, posttrain, preference
from common.train.posttrain import Trained


@dataclass
class RLRecipe:
    algo: str = "ppo"            # ppo | grpo
    iterations: int = 16
    prompts_per_iter: int = 48
    group: int = 4               # replies per prompt (both algorithms: the same number of rollouts)
    kl_coef: float = 0.05        # PPO: per-token penalty in the reward; GRPO: weight of the k3 term in the loss
    clip: float = 0.2
    epochs: int = 2              # passes over each iteration's rollouts
    minibatch: int = 64
    lr: float = 5e-5            # 3e-5 for 20 x 256 rollouts moved neither reward nor exact match in trials
    value_coef: float = 0.5      # PPO only
    gamma: float = 1.0
    lam: float = 0.95
    max_new: int = 24

    def __post_init__(self):
        if self.algo not in ("ppo", "grpo"):
            raise ValueError(f"algo must be ppo or grpo, got {self.algo!r}")


RL_RECIPES = {"nano": RLRecipe(iterations=3, prompts_per_iter=8, group=4, minibatch=16),
              "cpu": RLRecipe(), "gpu": RLRecipe(iterations=100, prompts_per_iter=128, group=8, minibatch=128)}


def rl_recipe(preset: str, **overrides) -> RLRecipe:
    """The RL recipe of a preset (nano, cpu, gpu) with fields replaced by `overrides` (algo, kl_coef, ...)."""
    if preset not in RL_RECIPES:
        raise ValueError(f"unknown preset {preset!r}, choose from {list(RL_RECIPES)}")
    return dataclasses.replace(RL_RECIPES[preset], **overrides)


class ValueHead(nn.Module):
    """A scalar per position from the policy's final hidden state (after its last norm)."""

    def __init__(self, n_embd: int):
        super().__init__()
        self.proj = nn.Linear(n_embd, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h):
        return self.proj(h).squeeze(-1)


def policy_forward(model: GPT, ids: torch.Tensor, head: ValueHead | None = None):
    """(log-probs (B, T-1) of the next tokens, entropies (B, T-1), values (B, T-1) or None) in one pass."""
    captured = {}
    hook = model.ln_f.register_forward_hook(lambda mod, inp, out: captured.__setitem__("h", out))
    try:
        logits, _ = model(ids[:, :-1])
    finally:
        hook.remove()
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = torch.gather(logp_all, -1, ids[:, 1:, None])[..., 0]
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = head(captured["h"].float()) if head is not None else None
    return logp, entropy, values


def masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (x * m).sum() / m.sum().clamp(min=1)


def last_token_rewards(rewards: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """(B, T-1) zeros with each row's reward at its last masked position (the reply's final token)."""
    out = torch.zeros_like(m)
    last = (m.cumsum(-1) == m.sum(-1, keepdim=True)) & (m > 0)
    first_last = last & (last.cumsum(-1) == 1)
    out[first_last] = rewards.to(out.dtype)
    return out


def rollout(policy: GPT, ref: GPT, head, examples, recipe: RLRecipe, seed: int, device) -> dict:
    """Sample, score and measure one iteration's replies: ids, action mask, rewards, old and reference log-probs,
    and (PPO) values, advantages and returns."""
    replies = preference.sample_replies(policy, examples, recipe.group, 1.0, seed, recipe.max_new)
    flat_ex = [e for e in examples for _ in range(recipe.group)]
    flat = [r for rs in replies for r in rs]
    reward = torch.tensor([float(preference.is_correct(e, r)) for e, r in zip(flat_ex, flat)], device=device)
    ids, mask = preference.encode_replies(flat_ex, flat, device)
    m = mask[:, 1:].float()
    with torch.no_grad():
        policy.eval()
        logp_old, entropy, values = policy_forward(policy, ids, head)
        logp_ref = alignment.token_logprobs(ref, ids)
    k1 = (logp_old - logp_ref) * m
    out = {"ids": ids, "m": m, "reward": reward, "logp_old": logp_old, "logp_ref": logp_ref,
           "entropy": masked_mean(entropy, m).item(), "kl": k1.sum(-1).mean().item(),
           "length": m.sum(-1).mean().item()}
    if recipe.algo == "ppo":
        token_r = last_token_rewards(reward, m) - recipe.kl_coef * k1
        adv, ret = alignment.gae(token_r, values * m, m.bool(), recipe.gamma, recipe.lam)
        mu, sd = masked_mean(adv, m), torch.sqrt(masked_mean((adv - masked_mean(adv, m)) ** 2, m))
        out["adv"] = (adv - mu) / (sd + 1e-8) * m
        out["ret"] = ret
    else:
        a = alignment.grpo_advantages(reward.view(-1, recipe.group)).reshape(-1)
        out["adv"] = a[:, None] * m
    return out


def update(policy: GPT, head, opt, batch: dict, recipe: RLRecipe) -> dict:
    """`epochs` passes of shuffled minibatch updates over one rollout batch; mean loss terms and clip fraction."""
    policy.train()
    n = batch["ids"].shape[0]
    stats = {"clip_frac": [], "value_loss": [], "kl_term": []}
    for _ in range(recipe.epochs):
        for idx in torch.randperm(n).split(recipe.minibatch):
            m = batch["m"][idx]
            logp, _, values = policy_forward(policy, batch["ids"][idx], head)
            loss, st = alignment.ppo_clip_loss(logp, batch["logp_old"][idx], batch["adv"][idx], m, recipe.clip)
            stats["clip_frac"].append(st["clip_frac"])
            if recipe.algo == "ppo":
                v_loss = masked_mean((values - batch["ret"][idx]) ** 2, m)
                loss = loss + recipe.value_coef * v_loss
                stats["value_loss"].append(v_loss.item())
            else:
                k3 = alignment.kl_estimates(logp, batch["logp_ref"][idx])[1]
                kl_term = masked_mean(k3, m)
                loss = loss + recipe.kl_coef * kl_term
                stats["kl_term"].append(kl_term.item())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(policy.parameters()) + (list(head.parameters()) if head else []), 1.0)
            opt.step()
    return {k: sum(v) / len(v) for k, v in stats.items() if v}


def train_rl(sft: Trained, recipe: RLRecipe, splits: dict, device="cpu", *, seed: int = 0, cache_dir=None,
             tracker=None) -> Trained:
    """PPO or GRPO from the SFT weights against the frozen SFT model. `history` holds per iteration: reward
    (mean over the rollouts), entropy, kl (k1 per reply, policy vs SFT, on the rollouts), clip_frac, length,
    and value_loss (PPO) or kl_term (GRPO). `val_loss` holds the last iteration's mean reward."""
    device = torch.device(device)
    key = dict(stage="rl", sft=sft.key, recipe=dataclasses.asdict(recipe), seed=seed, device=device.type)

    def fit():
        policy = GPT(sft.model.cfg).to(device)
        policy.load_state_dict(sft.model.state_dict())
        head = ValueHead(sft.model.cfg.n_embd).to(device) if recipe.algo == "ppo" else None
        params = list(policy.parameters()) + (list(head.parameters()) if head is not None else [])
        opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0, betas=(0.9, 0.99))
        torch.manual_seed(seed)
        rng = random.Random(seed)
        hist: dict = {k: [] for k in ("iteration", "reward", "entropy", "kl", "clip_frac", "length",
                                      "value_loss", "kl_term")}
        for it in range(recipe.iterations):
            exs = rng.sample(splits["train"], recipe.prompts_per_iter)
            batch = rollout(policy, sft.model, head, exs, recipe, seed * 100_003 + it, device)
            st = update(policy, head, opt, batch, recipe)
            row = {"iteration": it, "reward": batch["reward"].mean().item(), "entropy": batch["entropy"],
                   "kl": batch["kl"], "length": batch["length"], **st}
            for k, v in row.items():
                hist[k].append(v)
            if tracker is not None:
                tracker.log_dict({k: v for k, v in row.items() if k != "iteration"}, it)
        policy.eval()
        return policy, hist["reward"][-1], hist, "trained"

    return posttrain.cached(cache_dir, f"rl_{recipe.algo}", key, sft.model.cfg, device, fit)
