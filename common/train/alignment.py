"""Post-training objectives (sprint 5): masked SFT, DPO, PPO's clipped objective with GAE, GRPO, KL estimators.

Everything works on log-probabilities of the tokens a sequence actually contains, so the same helpers
serve every algorithm:

    logp = token_logprobs(model, ids)                 # (B, T-1): log p(ids[:, t+1] | ids[:, :t+1])
    seq = (logp * mask[:, 1:]).sum(-1)                # a response's log-probability (mask: its tokens)

- SFT: cross-entropy on the assistant's tokens only (`masked_targets` turns the others into -1,
  the ignore index of `GPT.forward`).
- DPO (Rafailov et al. 2023): loss = -log sigmoid(beta * [(pi_w - ref_w) - (pi_l - ref_l)]) on sequence
  log-probabilities of the chosen (w) and rejected (l) responses; the implicit reward of a response is
  beta * (pi - ref).
- PPO (Schulman et al. 2017): the clipped surrogate min(r A, clip(r, 1 - eps, 1 + eps) A) with
  r = exp(logp_new - logp_old), advantages from GAE over per-token rewards and values.
- GRPO (Shao et al. 2024): no value head; a group of responses to one prompt, each advantage its reward
  minus the group mean, over the group's standard deviation.
- KL to the reference, per token: k1 = logp - logp_ref (unbiased, can be negative) and
  k3 = exp(logp_ref - logp) - (logp_ref - logp) - 1 (unbiased, never negative) for samples of the policy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_logprobs(model, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (B, T-1): the log-probability the model gives each next token of the sequence."""
    logits, _ = model(ids[:, :-1])
    return torch.gather(F.log_softmax(logits.float(), dim=-1), -1, ids[:, 1:, None])[..., 0]


def masked_targets(ids: torch.Tensor, mask: torch.Tensor, ignore_index: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets for SFT: targets outside `mask` (B, T, True on response tokens) are ignored.

    Returns (x, y) = (ids[:, :-1], ids[:, 1:] with ignore_index where mask[:, 1:] is False): the loss of
    `GPT.forward(x, y)` is then the mean cross-entropy over the response tokens only.
    """
    y = ids[:, 1:].clone()
    y[~mask[:, 1:]] = ignore_index
    return ids[:, :-1], y


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, dict]:
    """DPO on sequence log-probabilities (B,) each: the mean loss and its diagnostics.

    Diagnostics (detached): the implicit rewards of chosen and rejected, their margin, and the preference
    accuracy (the share of pairs whose chosen reward is higher).
    """
    r_w, r_l = beta * (pi_chosen - ref_chosen), beta * (pi_rejected - ref_rejected)
    loss = -F.logsigmoid(r_w - r_l).mean()
    with torch.no_grad():
        stats = {"reward_chosen": r_w.mean().item(), "reward_rejected": r_l.mean().item(),
                 "margin": (r_w - r_l).mean().item(), "accuracy": (r_w > r_l).float().mean().item()}
    return loss, stats


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over (B, T) per-token rewards and values; mask marks real tokens.

    delta_t = r_t + gamma V_{t+1} - V_t (V past the last real token is 0), A_t = sum_k (gamma lam)^k delta_{t+k},
    computed backwards. Returns (advantages, returns = advantages + values), zero where mask is False.
    """
    m = mask.to(rewards.dtype)
    pad = torch.zeros_like(m[:, :1])
    m_next = torch.cat([m[:, 1:], pad], dim=1)  # 0 after a sequence's last real token: nothing to bootstrap
    delta = rewards + gamma * torch.cat([values[:, 1:], pad], dim=1) * m_next - values
    adv, running = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = delta[:, t] + gamma * lam * m_next[:, t] * running
        adv[:, t] = running
    adv = adv * m
    return adv, (adv + values) * m


def ppo_clip_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                  clip: float = 0.2) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate, negated to minimise, averaged over the masked tokens; and the clip fraction."""
    ratio = torch.exp(logp_new - logp_old)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
    m = mask.to(surrogate.dtype)
    loss = -(surrogate * m).sum() / m.sum().clamp(min=1)
    with torch.no_grad():
        clipped = ((ratio - 1).abs() > clip).to(m.dtype)
        stats = {"clip_frac": ((clipped * m).sum() / m.sum().clamp(min=1)).item()}
    return loss, stats


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(n_prompts, group) rewards -> advantages: each minus its group's mean, over the group's std (+ eps)."""
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


def kl_estimates(logp: torch.Tensor, logp_ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token estimators of KL(policy || reference) from tokens the policy sampled: (k1, k3)."""
    log_ratio = logp_ref - logp
    return -log_ratio, torch.expm1(log_ratio) - log_ratio
