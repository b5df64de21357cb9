"""Post-training objectives against hand-computed values, closed forms and autograd."""

import math

import pytest
import torch

from common.nn.model import GPT, gpt_config
from common.train import alignment as A


def test_dpo_loss_by_hand():
    pc, pr, rc, rr = (torch.tensor([x]) for x in (-1.0, -2.0, -1.5, -1.5))
    loss, st = A.dpo_loss(pc, pr, rc, rr, beta=0.5)  # rewards +0.25 and -0.25: margin 0.5
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.5)))
    assert st["margin"] == pytest.approx(0.5) and st["accuracy"] == 1.0
    assert st["reward_chosen"] == pytest.approx(0.25) and st["reward_rejected"] == pytest.approx(-0.25)
    same = torch.tensor([-3.0, -7.0])
    assert A.dpo_loss(same, same, same, same)[0].item() == pytest.approx(math.log(2))  # policy = reference


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    pc, pr = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    A.dpo_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1)[0].backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descending the loss raises log p(chosen)
    assert pc.grad.item() == pytest.approx(-0.05)  # -beta * sigmoid(0) = -0.05


def test_gae_matches_monte_carlo_and_td_by_hand():
    r, v, m = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.2, 0.1]]), torch.ones(1, 3, dtype=torch.bool)
    adv, ret = A.gae(r, v, m, gamma=1.0, lam=1.0)  # lam = 1: reward-to-go minus V
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.8, 0.9]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0]]))
    adv0, _ = A.gae(r, v, m, gamma=1.0, lam=0.0)  # lam = 0: one-step TD errors
    torch.testing.assert_close(adv0, torch.tensor([[-0.3, -0.1, 0.9]]))
    adv_g, _ = A.gae(r, torch.zeros(1, 3), m, gamma=0.5, lam=1.0)  # discounted reward-to-go
    torch.testing.assert_close(adv_g, torch.tensor([[0.25, 0.5, 1.0]]))


def test_gae_ignores_padding():
    r = torch.tensor([[0.0, 1.0, 5.0, 5.0]])
    v = torch.tensor([[0.2, 0.3, 9.0, 9.0]])
    m = torch.tensor([[True, True, False, False]])
    adv, ret = A.gae(r, v, m, gamma=1.0, lam=1.0)
    short, _ = A.gae(r[:, :2], v[:, :2], m[:, :2], gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv[:, :2], short)
    assert adv[:, 2:].abs().sum() == 0 and ret[:, 2:].abs().sum() == 0


def test_ppo_clip_is_the_plain_surrogate_inside_and_flat_outside():
    adv, m = torch.tensor([1.0, -1.0, 2.0]), torch.ones(3)
    old = torch.zeros(3)
    new = torch.zeros(3, requires_grad=True)
    loss, st = A.ppo_clip_loss(new, old, adv, m, clip=0.2)
    assert loss.item() == pytest.approx(-adv.mean().item()) and st["clip_frac"] == 0
    loss.backward()
    torch.testing.assert_close(new.grad, -adv / 3)  # d(-r A)/d logp = -r A at r = 1
    far = torch.tensor([1.0, -1.0, 0.0]).log1p().requires_grad_()  # ratios 2 (A>0), 0 (A<0), 1
    loss, st = A.ppo_clip_loss(far, old, adv, m, clip=0.2)
    loss.backward()
    assert far.grad[0] == 0  # ratio 2 > 1.2 with A > 0: clipped, no push further
    assert st["clip_frac"] == pytest.approx(2 / 3)


def test_grpo_advantages():
    adv = A.grpo_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, 3.0, 3.0, 3.0]]))
    torch.testing.assert_close(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5, rtol=0)
    assert adv[1].abs().max() == 0  # a group that all scored the same teaches nothing


def test_kl_estimators_are_unbiased_and_k3_nonnegative():
    g = torch.Generator().manual_seed(0)
    p = torch.distributions.Categorical(logits=torch.randn(6, generator=g))
    q = torch.distributions.Categorical(logits=torch.randn(6, generator=g))
    x = p.sample((200_000,))
    k1, k3 = A.kl_estimates(p.log_prob(x), q.log_prob(x))
    exact = torch.distributions.kl_divergence(p, q).item()
    assert k1.mean().item() == pytest.approx(exact, rel=0.05) and k3.mean().item() == pytest.approx(exact, rel=0.05)
    assert (k3 >= 0).all() and (k1 < 0).any()


def test_token_logprobs_and_masked_targets_agree_with_the_model_loss():
    torch.manual_seed(0)
    model = GPT(gpt_config("nano")).eval()
    ids = torch.randint(0, 65, (2, 12))
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, 7:] = True  # the "response" tokens
    with torch.no_grad():
        logp = A.token_logprobs(model, ids)
        _, full = model(ids[:, :-1], ids[:, 1:])
        x, y = A.masked_targets(ids, mask)
        _, masked = model(x, y)
    assert logp.shape == (2, 11)
    assert (-logp.mean()).item() == pytest.approx(full.item(), rel=1e-5)
    assert (-logp[mask[:, 1:]].mean()).item() == pytest.approx(masked.item(), rel=1e-5)
    assert (y[:, :6] == -1).all() and (y[:, 6:] == ids[:, 7:]).all()  # exactly the response tokens are targets
