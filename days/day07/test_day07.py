"""Day 7: the verification battery as tests, the data pipeline, and a quick end-to-end run."""

import pytest
import torch

from common import data
from common.data.tokenizers import CharTokenizer
from common.nn.model import GPT, count_params_formula, gpt_config
from common.run import runner
from days.day07 import run


def test_char_tokenizer_round_trip_and_vocab():
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab == " dehlorw" and tok.decode(tok.encode("world hello")) == "world hello"
    with pytest.raises(Exception, match="not in this tokenizer"):
        tok.encode("xyz")


def test_shakespeare_split_matches_nanogpt(require_data):
    require_data("tinyshakespeare")
    tok, tr, va = data.char_corpus()
    assert tok.vocab_size == 65 and tr.numel() == 1_003_854 and va.numel() == 111_540
    assert tok.decode(tr[:14].tolist()) == "First Citizen:"


def test_batches_are_shifted_windows():
    tokens = torch.arange(1000)
    b = data.Batches(tokens, 16, 4)
    x, y = b.sample()
    assert x.shape == y.shape == (4, 16) and torch.equal(y, x + 1)


def test_baby_and_gpu_models_have_the_published_sizes():
    assert GPT(gpt_config("baby")).num_params(non_embedding=True) == 795_904  # nanoGPT: 0.80M
    assert count_params_formula(gpt_config("shakespeare"), non_embedding=True) == 10_646_784  # 10.65M


def test_battery_passes_on_a_small_model():
    torch.manual_seed(0)
    cfg = gpt_config("nano")
    tb = data.Batches(torch.arange(5000) % 17, cfg.block_size, 4)
    rows = run.battery(cfg, tb, "cpu", steps=150, lr=1e-2)
    assert all(r["pass"] for r in rows), rows


def test_battery_catches_a_leaky_model(monkeypatch):
    """A model that peeks at the future must fail the causal check (the test can fail)."""
    from common.nn import attention

    def leaky(q, k, v, **kw):
        kw["is_causal"] = False
        return attention.attention_reference(q, k, v, **kw)
    monkeypatch.setitem(attention.ATTENTION_FNS, "sdpa", leaky)
    cfg = gpt_config("nano")
    rows = run.battery(cfg, data.Batches(torch.arange(5000) % 17, cfg.block_size, 4), "cpu", steps=1, lr=1e-3)
    assert rows[1]["pass"] is False


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["checks_passed"] == 4 and m["overfit_loss"] <= 0.1
    assert m["val_loss"] < 4.2 and m["tokens_per_s"] > 0  # below ln(65) = 4.17 after 30 steps
    assert (tmp_path / "checkpoints" / "day07_ckpt.pt").is_file()
    text = (tmp_path / "deliverable.md").read_text()
    assert "Verification battery" in text and "identical validation loss" in text


FAKE_NANOGPT_LOG = """step 0: train loss 4.2000, val loss 4.2100
iter 0: loss 4.2000, time 900.00ms, mfu -100.00%
""" + "".join(f"iter {i}: loss 3.0000, time {40 + i % 3}.00ms, mfu 0.01%\n" for i in range(1, 250)) + \
    """step 250: train loss 2.4000, val loss 2.4500
iter 250: loss 2.4, time 700.00ms, mfu 0.01%
"""


def test_parse_nanogpt_log():
    r = run.parse_nanogpt_log(FAKE_NANOGPT_LOG)
    assert r["val"] == {0: 4.21, 250: 2.45}
    assert r["ms_per_iter"] == 41.0  # eval iterations (0, 250) and warm-up (< 10) excluded


def test_run_nanogpt_drives_a_checkout(tmp_path, require_data):
    """A stand-in nanoGPT checkout: the data is prepared, train.py gets the baby arguments, the log is parsed."""
    require_data("tinyshakespeare")
    repo = tmp_path / "nanoGPT"
    (repo / "data" / "shakespeare_char").mkdir(parents=True)
    (repo / "data" / "shakespeare_char" / "prepare.py").write_text(
        "import os\nassert os.path.getsize('input.txt') == 1115394\nopen('train.bin', 'wb').close()\n")
    (repo / "train.py").write_text(
        "import sys\nassert '--batch_size=12' in sys.argv and '--n_embd=128' in sys.argv\n"
        f"print({FAKE_NANOGPT_LOG!r})\n")
    r = run.run_nanogpt(str(repo), 2000)
    assert r["val"][250] == 2.45 and (repo / "data" / "shakespeare_char" / "train.bin").is_file()
    with pytest.raises(runner.UserError, match="no train.py"):
        run.run_nanogpt(str(tmp_path), 2000)


def test_a_failing_nanogpt_step_is_one_sentence_with_its_real_error(tmp_path, require_data):
    require_data("tinyshakespeare")
    repo = tmp_path / "nanoGPT"
    (repo / "data" / "shakespeare_char").mkdir(parents=True)
    (repo / "data" / "shakespeare_char" / "prepare.py").write_text("import requests_missing_here\n")
    (repo / "train.py").write_text("pass\n")
    with pytest.raises(runner.UserError, match=r"prepare.py failed \(exit 1\): ModuleNotFoundError: No module named"):
        run.run_nanogpt(str(repo), 2000)
