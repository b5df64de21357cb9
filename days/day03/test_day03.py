"""Day 3: every attention path against the reference, the tiled online softmax, skips, the run."""

import importlib.util
from types import SimpleNamespace

import pytest
import torch

from common.nn.attention import attention_reference
from common.run import runner
from days.day03 import run
from days.day03.run import Config, attention_tiled, closest_timing, dispatcher_choice, implementations, measure


def qkv(B=2, H=3, T=37, D=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=dtype) for _ in range(3)]


@pytest.mark.parametrize("T,block", [(37, 8), (64, 16), (5, 128), (33, 32)])
def test_tiled_online_softmax_equals_exact_attention(T, block):
    q, k, v = qkv(T=T)
    expected = attention_reference(q, k, v, is_causal=True)
    torch.testing.assert_close(attention_tiled(q, k, v, block=block), expected, atol=1e-5, rtol=1e-5)


def test_tiled_attention_gradients():
    q, k, v = (t.requires_grad_() for t in qkv(B=1, H=2, T=7, D=4, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda q, k, v: attention_tiled(q, k, v, block=3), (q, k, v))


def test_every_backend_that_runs_matches_the_reference():
    q, k, v = qkv(T=64, D=16)
    expected = attention_reference(q, k, v, is_causal=True)
    ran = []
    for name, fn in implementations().items():
        if isinstance(fn, str):
            assert fn.startswith("skipped: ")
            continue
        try:
            out = fn(q, k, v)
        except RuntimeError:  # a backend without a kernel for this device; measure() reports it
            continue
        torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-4, msg=name)
        ran.append(name)
    assert {"reference", "sdpa default", "sdpa MATH"} <= set(ran)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available(),
                    reason="flash-attn is usable here")
def test_flash_attn_package_is_reported_as_skipped():
    assert implementations()["flash_attn pkg"].startswith("skipped: flash-attn")


def test_memory_budget_skips_only_the_materialising_paths():
    cfg = Config(tokens=64, n_head=2, head_dim=8, runs=1, min_time_s=0.0, check_rows=8, mem_budget_mib=0)
    ctx = SimpleNamespace(device=torch.device("cpu"))
    B, rows, choice = measure(cfg, ctx, 32, torch.float32, implementations(), train=False)
    assert B == 2
    assert "budget" in rows["reference"]["skip"] and "budget" in rows["sdpa MATH"]["skip"]
    assert "tok_s" in rows["sdpa default"] and "tok_s" in rows["tiled (ours, online softmax)"]
    assert rows["sdpa default"]["err"] < 1e-5 and len(rows["sdpa default"]["tok_s"]) == 1
    assert choice in {"MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "OVERRIDEABLE", None}


def test_dispatcher_and_timing_match():
    q = qkv(T=16)[0]
    assert dispatcher_choice(q) in {"MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", None}
    rows = {"sdpa default": {"t": [1.0, 1.1]}, "sdpa MATH": {"t": [3.0]}, "sdpa FLASH_ATTENTION": {"t": [1.2]},
            "sdpa CUDNN_ATTENTION": {"skip": "skipped: x"}, "reference": {"t": [1.05]}}
    assert closest_timing(rows) == "FLASH_ATTENTION"  # the reference is not a backend
    assert closest_timing({"sdpa default": {"skip": "x"}}) is None


def test_quick_run(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["sdpa_speedup_at_128"] > 0 and m["max_abs_err_sdpa"] < 1e-4 and m["max_abs_err_reference"] < 1e-4
    assert m["fastest_backend"] in implementations()
    assert 0 < m["bf16_max_abs_err"] < 0.1  # bfloat16 keeps ~3 significant digits
    text = (tmp_path / "deliverable.md").read_text()
    assert "Which backend SDPA picked" in text and "skipped" in text and "Range vs precision" in text
    assert (tmp_path / "plots" / "day03_tokens_per_s_vs_seq_len.png").is_file()
    assert (tmp_path / "plots" / "day03_train_tokens_per_s_vs_seq_len.png").is_file()
