"""Day 43: the DPO loss by hand and by autograd, the verifier's pairs, reply masks, and a quick run."""

import math

import pytest
import torch

from common.data import instruct
from common.nn.model import GPT, GPTConfig
from common.run import runner
from common.train import alignment, posttrain, preference
from days.day43 import run

END = instruct.END


def test_dpo_loss_by_hand_and_against_the_library():
    pw, pl, rw, rl = (torch.tensor([v]) for v in (-1.0, -2.0, -1.5, -1.5))
    got = run.dpo_loss(pw, pl, rw, rl, beta=0.1)  # h_w = 0.5, h_l = -0.5, margin 0.1
    assert got.item() == pytest.approx(math.log(1 + math.exp(-0.1)), rel=1e-6)
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(6, generator=g) * 3 for _ in range(4)]
    lib, _ = alignment.dpo_loss(*x, beta=0.3)
    torch.testing.assert_close(run.dpo_loss(*x, beta=0.3).mean(), lib)
    same = torch.randn(5, generator=g)
    torch.testing.assert_close(run.dpo_loss(same, same - 1, same, same - 1, 0.5), torch.full((5,), math.log(2)))


def test_gradient_weight_is_the_derivative_of_the_loss():
    g = torch.Generator().manual_seed(1)
    pw = torch.randn(7, generator=g, requires_grad=True)
    pl, rw, rl = (torch.randn(7, generator=g) for _ in range(3))
    beta = 0.2
    run.dpo_loss(pw, pl, rw, rl, beta).sum().backward()
    margin = beta * ((pw - rw) - (pl - rl)).detach()
    torch.testing.assert_close(pw.grad, -beta * run.dpo_grad_weight(margin))
    assert run.dpo_grad_weight(torch.tensor(0.0)).item() == pytest.approx(0.5)
    assert run.dpo_grad_weight(torch.tensor(20.0)).item() < 1e-8


def test_verifier_pairs_need_a_right_and_a_wrong_reply():
    a = instruct.Example("copy", 0, "Repeat exactly: ab", "ab")
    b = instruct.Example("copy", 0, "Repeat exactly: cd", "cd")
    c = instruct.Example("arithmetic", 0, "What is 2 + 2?", "4")
    replies = [[f"ab{END}", f"ba{END}"], [f"cd{END}", f"cd{END}"], ["4.0" + END, "4", "5" + END]]
    pairs = preference.verifier_pairs([a, b, c], replies)
    assert [(p.example.prompt, p.chosen) for p in pairs] == [(a.prompt, f"ab{END}"), (c.prompt, f"4.0{END}")]
    assert pairs[0].rejected == f"ba{END}" and pairs[1].rejected in ("4", f"5{END}")  # "4" never stopped: wrong
    assert preference.verifier_pairs([a], [[f"x{END}"]]) == []
    gold = preference.verifier_pairs([a], [[f"x{END}"]], gold_fallback=True)
    assert gold[0].chosen == f"ab{END}" and gold[0].rejected == f"x{END}"
    hard = preference.verifier_pairs([a, b], [[f"ab{END}", f"zz{END}"], [f"cd{END}"]],
                                     greedy=[f"ba{END}", f"dc{END}"])
    assert [(p.chosen, p.rejected) for p in hard] == [(f"ab{END}", f"ba{END}"), (f"cd{END}", f"dc{END}")]
    assert preference.verifier_pairs([b], [[f"cd{END}"]], greedy=[f"cd{END}"]) == []  # nothing wrong: no pair


def test_reply_mask_and_sequence_logprob():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=posttrain.TOKENIZER.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16,
                          pos="rope")).eval()
    ex = [instruct.Example("copy", 0, "Repeat exactly: ab", "ab"), instruct.Example("copy", 0, "Echo: q", "q")]
    ids, mask = preference.encode_replies(ex, [f"ab{END}", f"zz{END}"])
    tok = posttrain.TOKENIZER
    assert tok.decode(ids[0][mask[0]].tolist()) == f"ab{END}" and tok.decode(ids[1][mask[1]].tolist()) == f"zz{END}"
    seq = preference.sequence_logprobs(model, ids, mask)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:1, :-1])[0], -1)[0]
    n = int(mask[0].sum())
    start = int(mask[0].nonzero()[0])
    by_hand = sum(logp[t - 1, ids[0, t]] for t in range(start, start + n))
    assert seq[0].item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["n_train_pairs"] > 0 and 0 <= m["dpo_heldout_accuracy"] <= 1
    assert m["dpo_heldout_accuracy_start"] == 0  # the policy starts as the reference: every margin is 0, a tie
    assert all(0 <= m[f"exact_match_{s}_{n}"] <= 1 for s in ("val", "test") for n in ("sft", "dpo"))
