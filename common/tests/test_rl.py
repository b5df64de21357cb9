"""PPO-lite and GRPO (common/train/rl.py): the pieces by hand, and an update that moves probability the right way."""

import math

import pytest
import torch

from common.data import instruct
from common.nn.model import GPT, GPTConfig
from common.train import alignment, posttrain, rl
from common.train.posttrain import TOKENIZER


def tiny(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, pos="rope"))


def test_reward_lands_on_each_replys_last_token():
    m = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1.0]])
    out = rl.last_token_rewards(torch.tensor([1.0, 2.0, 3.0]), m)
    assert out.tolist() == [[0, 0, 0, 1, 0], [0, 0, 2, 0, 0], [0, 0, 0, 0, 3]]


def test_policy_forward_matches_token_logprobs_and_entropy():
    model = tiny()
    ids = torch.randint(0, TOKENIZER.vocab_size, (3, 9))
    head = rl.ValueHead(16)
    logp, ent, values = rl.policy_forward(model, ids, head)
    torch.testing.assert_close(logp, alignment.token_logprobs(model, ids))
    assert values.shape == (3, 8) and torch.equal(values, torch.zeros(3, 8))  # zero-initialised head
    assert (ent > 0).all() and (ent <= math.log(TOKENIZER.vocab_size) + 1e-5).all()
    assert rl.policy_forward(model, ids)[2] is None


def test_recipes_refuse_unknown_names():
    with pytest.raises(ValueError, match="ppo or grpo"):
        rl.RLRecipe(algo="a2c")
    with pytest.raises(ValueError, match="unknown preset"):
        rl.rl_recipe("huge")
    assert rl.rl_recipe("cpu", algo="grpo", kl_coef=0.2).kl_coef == 0.2


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_an_update_raises_the_rewarded_reply(algo):
    """Two replies to one prompt, only the first rewarded: one update makes it more likely, the other less."""
    model = tiny(1)
    ref = tiny(1)
    ex = instruct.Example("copy", 0, "Echo: a", "a")
    replies = ["a" + instruct.END, "b" + instruct.END]
    recipe = rl.RLRecipe(algo=algo, group=2, minibatch=2, epochs=1, lr=1e-2, kl_coef=0.0)
    from common.train import preference

    ids, mask = preference.encode_replies([ex, ex], replies)
    m = mask[:, 1:].float()
    head = rl.ValueHead(16) if algo == "ppo" else None
    with torch.no_grad():
        logp_old, _, values = rl.policy_forward(model, ids, head)
        logp_ref = alignment.token_logprobs(ref, ids)
    reward = torch.tensor([1.0, 0.0])
    batch = {"ids": ids, "m": m, "logp_old": logp_old, "logp_ref": logp_ref}
    if algo == "ppo":
        adv, ret = alignment.gae(rl.last_token_rewards(reward, m), values * m, m.bool(), 1.0, 0.95)
        batch.update(adv=adv, ret=ret)
    else:
        batch["adv"] = alignment.grpo_advantages(reward.view(1, 2)).reshape(-1)[:, None] * m
    opt = torch.optim.SGD(list(model.parameters()) + (list(head.parameters()) if head else []), lr=recipe.lr)
    before = (logp_old * m).sum(-1)
    rl.update(model, head, opt, batch, recipe)
    with torch.no_grad():
        after = (rl.policy_forward(model, ids)[0] * m).sum(-1)
    assert after[0] > before[0] and after[1] < before[1]


def test_rollout_batch_is_consistent():
    model, ref = tiny(2), tiny(2)
    exs = instruct.generate(3, seed=1)["train"][:3]
    recipe = rl.RLRecipe(algo="ppo", group=2, max_new=5)
    b = rl.rollout(model, ref, rl.ValueHead(16), exs, recipe, seed=0, device="cpu")
    assert b["ids"].shape[0] == 6 and b["reward"].shape == (6,)
    assert b["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    assert torch.equal(b["adv"] * (1 - b["m"]), torch.zeros_like(b["adv"]))  # no advantage outside the replies
    g = rl.rollout(model, ref, None, exs, rl.RLRecipe(algo="grpo", group=2, max_new=5), seed=0, device="cpu")
    assert torch.equal(g["ids"], b["ids"])  # the same seed samples the same replies


def test_train_rl_runs_and_caches(tmp_path):
    base_r, sft_r = posttrain.recipes("nano")
    sft = posttrain.Trained(tiny(3), 0.0, {}, None, "test-sft")
    splits = instruct.generate(10, seed=0)
    recipe = rl.rl_recipe("nano", algo="grpo")
    a = rl.train_rl(sft, recipe, splits, "cpu", cache_dir=tmp_path)
    assert a.result is not None and len(a.history["reward"]) == recipe.iterations
    b = rl.train_rl(sft, recipe, splits, "cpu", cache_dir=tmp_path)
    assert b.result is None and b.history == a.history
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, w), k
