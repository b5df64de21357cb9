"""Day 42: SFT's masked loss by hand, its decomposition, the per-token split, and a quick run."""

import pytest
import torch
import torch.nn.functional as F

from common.data import instruct
from common.data.chat import MaskedBatches
from common.nn.model import GPT, GPTConfig
from common.run import runner
from common.train import posttrain
from days.day42 import run


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=posttrain.TOKENIZER.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=16,
                         pos="rope")).eval()


def test_masked_mean_loss_matches_cross_entropy_and_the_model():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    y = torch.tensor([[-1, 3, 4, -1, -1], [1, -1, -1, -1, 6]])
    ref = F.cross_entropy(logits.view(-1, 7), y.view(-1), ignore_index=-1)
    torch.testing.assert_close(run.masked_mean_loss(logits, y), ref)
    by_hand = -(torch.log_softmax(logits[0, 1], -1)[3] + torch.log_softmax(logits[0, 2], -1)[4]
                + torch.log_softmax(logits[1, 0], -1)[1] + torch.log_softmax(logits[1, 4], -1)[6]) / 4
    torch.testing.assert_close(run.masked_mean_loss(logits, y), by_hand)
    model = tiny_model()
    exs = instruct.generate(4, seed=2)["train"][:6]
    x, yy = MaskedBatches(posttrain.sft_sequences(exs, tools=False), 6, 96).fixed(1)[0]
    with torch.no_grad():
        torch.testing.assert_close(run.masked_mean_loss(model(x)[0], yy), model(x, yy)[1])


def test_decomposition_terms_sum_to_the_total():
    rows = [{"family": "copy", "prompt": [1.0], "body": [0.5, 0.25], "end": 0.1},
            {"family": "word", "prompt": [2.0], "body": [1.0], "end": 0.3}]
    dec = run.decompose(rows)
    assert dec["N"] == 5
    assert dec["total"] == pytest.approx((0.5 + 0.25 + 0.1 + 1.0 + 0.3) / 5)
    assert dec["families"]["copy"] == pytest.approx({"share": 3 / 5, "loss": 0.85 / 3})
    assert dec["parts"]["END"] == pytest.approx({"share": 2 / 5, "loss": 0.2})
    for key in ("families", "parts"):
        assert sum(v["share"] * v["loss"] for v in dec[key].values()) == pytest.approx(dec["total"])


def test_token_losses_equal_the_models_masked_loss():
    model = tiny_model(1)
    exs = instruct.generate(3, seed=4)["val"] + instruct.generate(3, seed=4)["train"][:5]
    rows = run.token_losses(model, exs)
    dec = run.decompose(rows)
    x, y = MaskedBatches(posttrain.sft_sequences(exs, tools=False), len(exs), 96).fixed(1)[0]
    with torch.no_grad():
        assert dec["total"] == pytest.approx(model(x, y)[1].item(), rel=1e-5)
    for ex, r in zip(exs, rows):  # every predicted token lands in exactly one part
        n = len(posttrain.TOKENIZER.encode(instruct.render(ex)[0])) - 1
        assert len(r["prompt"]) + len(r["body"]) + 1 == n
        assert len(r["body"]) == len(ex.answer)


def test_hostile_check_finds_no_escape():
    out = run.hostile_check()
    assert out["n"] >= 50 and out["escapes"] == [] and out["max_ms"] < 500


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert 0 <= m["exact_match_test"] <= 1 and 0 <= m["tool_use_accuracy"] <= 1
    assert m["hostile_escapes"] == 0
    assert m["overfit_loss"] < m["sft_val_loss"] + 5  # finite and measured
    assert m["n_tool_problems"] > 0
