"""Logit processors: what each keeps, their composition, and generate() with them."""

import pytest
import torch
import torch.nn.functional as F

from common.nn import sampling as S
from common.nn.generate import generate
from common.nn.model import GPT, gpt_config

CTX = torch.zeros(1, 1, dtype=torch.long)


def kept(logits):
    return torch.isfinite(logits)


def test_top_p_keeps_the_smallest_set_reaching_p():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        logits = torch.randn(1, 20, generator=g) * 2
        p = float(torch.rand(1, generator=g)) * 0.98 + 0.01
        keep = kept(S.top_p(p)(logits, CTX))[0]
        probs = F.softmax(logits, -1)[0]
        mass = probs[keep].sum()
        assert mass >= p - 1e-6  # enough mass
        assert probs[keep].min() >= probs[~keep].max() if (~keep).any() else True  # the most likely ones
        assert mass - probs[keep].min() < p  # and no smaller set would do


def test_top_k_and_min_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert kept(S.top_k(2)(logits, CTX)).tolist() == [[True, True, False, False]]
    assert kept(S.min_p(0.3)(logits, CTX)).tolist() == [[True, True, True, False]]  # >= 0.15 = 0.3 * 0.5
    assert kept(S.min_p(0.0)(logits, CTX)).all()
    assert kept(S.top_k(1)(torch.tensor([[1.0, 1.0, 0.0]]), CTX)).tolist() == [[True, True, False]]  # ties stay


def test_temperature_limits():
    logits = torch.tensor([[2.0, 1.0, 0.5]])
    assert torch.allclose(F.softmax(S.temperature(1e-3)(logits, CTX), -1), torch.tensor([[1.0, 0.0, 0.0]]))
    assert S.sample(logits, CTX, [S.temperature(0)]).item() == 0  # t = 0 is greedy
    flat = F.softmax(S.temperature(1e3)(logits, CTX), -1)
    assert torch.allclose(flat, torch.full((1, 3), 1 / 3), atol=1e-3)


def test_repetition_penalty_lowers_seen_tokens_only():
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.5]])
    out = S.repetition_penalty(2.0)(logits, torch.tensor([[0, 1, 1]]))
    assert out.tolist() == [[1.0, -2.0, 3.0, 0.5]]
    assert torch.equal(S.repetition_penalty(1.0)(logits, torch.tensor([[0, 1]])), logits)


def test_bad_settings_are_refused():
    for bad in (lambda: S.top_p(0), lambda: S.top_k(0), lambda: S.min_p(1.5), lambda: S.temperature(-1),
                lambda: S.repetition_penalty(0.5)):
        with pytest.raises(ValueError):
            bad()


def test_generate_with_processors_equals_the_plain_arguments():
    torch.manual_seed(0)
    model = GPT(gpt_config("nano", pos="rope")).eval()
    prompt = torch.randint(0, 65, (2, 4))
    a = generate(model, prompt, 12, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(1))
    b = generate(model, prompt, 12, processors=[S.temperature(0.8), S.top_k(5)],
                 generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    greedy = generate(model, prompt, 12, temperature=0)
    assert torch.equal(generate(model, prompt, 12, processors=[S.temperature(0)]), greedy)
    out = generate(model, prompt, 1, processors=[S.repetition_penalty(3.0), S.temperature(0)])
    with torch.no_grad():
        last = model(prompt)[0][:, -1]
    expect = S.repetition_penalty(3.0)(last, prompt).argmax(-1)  # the context is the prompt
    assert torch.equal(out[:, -1], expect)
