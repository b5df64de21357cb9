"""The dtype `auto` picks: deterministic, never a slower dtype, and MFU's arithmetic."""

import json

import pytest
import torch

from common.lab import hardware


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DAYS_CACHE", str(tmp_path))


def test_forced_no_speedup_keeps_float32_at_every_width():
    """A CPU without matrix units (bfloat16 measured slower than float32) stays on float32."""
    for width in (64, 256, 384, 4096):
        dtype, why = hardware.choose_dtype("auto", width, "cpu", speedup=0.8)
        assert dtype == "float32" and "0.8x" in why


def test_fast_bf16_is_used_only_from_the_width_threshold():
    w = hardware.BF16_MIN_WIDTH
    assert hardware.choose_dtype("auto", w - 1, "cpu", speedup=5.0)[0] == "float32"
    dtype, why = hardware.choose_dtype("auto", w, "cpu", speedup=5.0)
    assert dtype == "bfloat16" and "5.0x" in why
    # a speed-up just under the bar is not enough, whatever the width
    assert hardware.choose_dtype("auto", 4096, "cpu", speedup=hardware.BF16_MIN_SPEEDUP - 0.01)[0] == "float32"


def test_an_explicit_dtype_is_kept():
    for d in ("float32", "bfloat16", "float16"):
        assert hardware.choose_dtype(d, 64, "cpu", speedup=0.5)[0] == d


def test_measurements_are_cached_per_machine(tmp_path, monkeypatch):
    calls = []

    def fake(dtype, device="cpu"):
        calls.append(dtype)
        return {"float32": 100.0, "bfloat16": 450.0}[dtype]

    monkeypatch.setattr(hardware, "measure_peak", fake)
    assert hardware.bf16_speedup() == pytest.approx(4.5)
    assert hardware.bf16_speedup() == pytest.approx(4.5) and calls == ["bfloat16", "float32"]  # measured once
    data = json.loads((tmp_path / "hardware.json").read_text())
    assert data[hardware.machine_key("cpu")]["peak_gflops_bfloat16"] == 450.0
    # the same machine makes the same choice every time
    assert len({hardware.choose_dtype("auto", 384, "cpu") for _ in range(3)}) == 1


def test_mfu_arithmetic(monkeypatch):
    monkeypatch.setattr(hardware, "measure_peak", lambda dtype, device="cpu": 200.0)
    # 1000 tokens/s x 1e8 FLOPs/token = 1e11 FLOP/s = 100 GFLOP/s of a 200 GFLOP/s peak
    assert hardware.mfu(1000, 1e8, "float32") == pytest.approx(0.5)


def test_measured_peak_is_a_plausible_number():
    """A real (small) measurement: positive and below any CPU's plausible peak."""
    g = hardware._gflops(128, 128, 128, torch.float32, torch.device("cpu"), min_time=0.01)
    assert 0.01 < g < 1e6
