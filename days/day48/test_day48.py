"""Day 48: micro and macro averages by hand, the battery's rows on a tiny model, and a quick run."""

import pytest
import torch

from common.data import instruct
from common.eval import battery
from common.nn.model import GPT, GPTConfig
from common.run import runner
from common.train import posttrain
from days.day48 import run

ROWS = [{"model": "a", "family": "x", "n": 10, "exact_match": 0.9},
        {"model": "a", "family": "y", "n": 30, "exact_match": 0.1},
        {"model": "b", "family": "x", "n": 10, "exact_match": 0.5, "exact_match_tools": 1.0}]


def test_micro_and_macro_by_hand():
    assert run.summarise(ROWS, "a") == pytest.approx((9 + 3) / 40)
    assert run.macro(ROWS, "a") == pytest.approx(0.5)
    assert run.summarise(ROWS, "b", "exact_match_tools") == 1.0
    assert run.macro(ROWS, "b") == 0.5


def test_battery_rows_cover_every_model_and_family():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=posttrain.TOKENIZER.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=16,
                          pos="rope")).eval()
    exs = instruct.generate(30, seed=0)["test"][:40]
    rows = battery.run_battery({"m": model}, exs, latency_n=1)
    fams = sorted({e.family for e in exs})
    assert len(fams) >= 4
    assert sorted(r["family"] for r in rows) == fams
    for r in rows:
        assert r["n"] == sum(e.family == r["family"] for e in exs) and 0 <= r["exact_match"] <= 1
        assert ("exact_match_tools" in r) == (r["family"] in battery.TOOL_FAMILIES)
        assert 0 < r["latency_ms_p50"] <= r["latency_ms_p90"]
    assert "| m |" in battery.markdown(rows)


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert all(0 <= m[f"exact_match_{k}"] <= 1 for k in run.MODELS)
    assert 0 < m["n_test"] <= 6 * len(instruct.FAMILIES)  # at most 6 per family (nano has fewer of some)
