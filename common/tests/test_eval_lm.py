"""common/eval/lm.py: the three requests against direct computation, batch invariance, windows that predict
every token once, and a transformers model that must score exactly what our GPT with the same weights does."""

import pytest
import torch
import torch.nn.functional as F

from common.data.chat import ChatTokenizer
from common.data.instruct import ASSISTANT, END, USER
from common.eval.lm import GPTLM, HFLM
from common.nn.model import GPT, GPTConfig
from common.train import posttrain

TOK = ChatTokenizer()


def gpt(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=TOK.vocab_size, block_size=24, n_layer=2, n_head=2, n_embd=32, pos="rope")
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


def direct(model, ctx, cont):
    """log p(cont | ctx) one token at a time, the slow obvious way."""
    ids = TOK.encode(ctx) + TOK.encode(cont)
    total = 0.0
    with torch.no_grad():
        for t in range(len(TOK.encode(ctx)), len(ids)):
            logits = model(torch.tensor([ids[max(0, t - model.cfg.block_size):t]]))[0][0, -1]
            total += float(F.log_softmax(logits, -1)[ids[t]])
    return total


def test_loglikelihood_matches_direct_and_is_batch_invariant():
    model = gpt()
    lm = GPTLM(model, batch_size=3)
    pairs = [("Once upon", " a time"), ("x", "y"), ("What is 2+2?", " 4"), ("a" * 30, " long context")]
    got = lm.loglikelihood(pairs)
    L = model.cfg.block_size
    for (c, k), (ll, _) in zip(pairs, got):
        c = c[-(L + 1 - len(k)):]       # one window: the context is cut from the left to fit (the last pair)
        assert ll == pytest.approx(direct(model, c, k), abs=1e-4)
    alone = [GPTLM(model, batch_size=1).loglikelihood([p])[0][0] for p in pairs]
    assert [g for g, _ in got] == pytest.approx(alone, abs=1e-5)


def test_greedy_flag():
    model = gpt()
    lm = GPTLM(model)
    out = lm.generate(["Hello"], until=[], max_new=4)[0]
    assert lm.loglikelihood([("Hello", out)])[0][1] is True         # its own greedy output is greedy
    other = "z" if out[0] != "z" else "q"
    assert lm.loglikelihood([("Hello", other + out[1:])])[0][1] is False


class Unigram(torch.nn.Module):
    """Logits that ignore the context: the log-probability of a text is a sum over its tokens, whatever the windows."""

    def __init__(self, V, block_size):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.randn(V))
        self.cfg = GPTConfig(vocab_size=V, block_size=block_size)

    def forward(self, idx):
        return self.bias.expand(*idx.shape, -1), None


@pytest.mark.parametrize("stride", [None, 1, 5, 16])
def test_rolling_windows_predict_every_token_exactly_once(stride):
    torch.manual_seed(0)
    model = Unigram(TOK.vocab_size, 16)
    text = "The quick brown fox jumps over the lazy dog, twice."
    want = float(F.log_softmax(model.bias.detach(), -1)[TOK.encode(text)].sum())
    assert GPTLM(model).loglikelihood_rolling([text], stride=stride)[0] == pytest.approx(want, rel=1e-5)


def test_rolling_equals_loglikelihood_when_the_text_fits():
    model = gpt()
    lm = GPTLM(model)
    assert lm.loglikelihood_rolling(["short text"])[0] == pytest.approx(lm.loglikelihood([("", "short text")])[0][0])
    long = "abcdefghij" * 6
    assert lm.loglikelihood_rolling([long], stride=1)[0] == pytest.approx(direct(model, "\n", long), abs=1e-3)


def test_generate_stops_and_matches_posttrain_complete():
    model = gpt(block_size=64)
    prompts = [f"{USER}What is 1 + {i}?{ASSISTANT}" for i in range(5)]
    ours = GPTLM(model, chat=True).generate(prompts, until=[], max_new=10)
    theirs = posttrain.complete(model, prompts, max_new=10)
    assert ours == [t.split(END)[0] for t in theirs]
    cut = GPTLM(model).generate(["Hello"], until=[], max_new=8)[0]
    stop = cut[3]
    assert GPTLM(model).generate(["Hello"], until=[stop], max_new=8)[0] == cut[:cut.index(stop)]


def test_chat_template_only_for_chat_models():
    model = gpt()
    assert GPTLM(model, chat=True).apply_chat("hi") == f"{USER}hi{ASSISTANT}"
    assert GPTLM(model).apply_chat("hi") == "hi"


def test_hf_model_scores_what_our_gpt_scores():
    pytest.importorskip("transformers")
    from common.nn import hf

    model = gpt(pos="learned", norm="layer", mlp="gelu_tanh", bias=True, block_size=32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ours, theirs = GPTLM(model), HFLM(hf.gpt_to_hf(model), TOK)
    assert theirs.max_length == ours.max_length == 32 and theirs.prefix == ours.prefix
    pairs = [("Once upon", " a time"), ("The cat", " sat"), ("z" * 40, " q")]
    a, b = ours.loglikelihood(pairs), theirs.loglikelihood(pairs)
    assert [x for x, _ in a] == pytest.approx([x for x, _ in b], abs=1e-4)
    assert [g for _, g in a] == [g for _, g in b]
    assert ours.loglikelihood_rolling(["hello world " * 8]) == pytest.approx(
        theirs.loglikelihood_rolling(["hello world " * 8]), abs=1e-3)
    assert ours.generate(["Once"], ["\n"], 12) == theirs.generate(["Once"], ["\n"], 12)


def test_empty_continuation_is_an_error():
    with pytest.raises(ValueError, match="empty continuation"):
        GPTLM(gpt()).loglikelihood([("context", "")])
