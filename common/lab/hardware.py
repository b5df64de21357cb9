"""What this machine can do: its matmul peak per dtype, whether bfloat16 pays, and the dtype `auto` picks.

    hardware.matmul_peak("bfloat16")                       # GFLOP/s, measured once per machine, cached
    hardware.choose_dtype("auto", n_embd=384)              # ("bfloat16", "why, in one sentence")
    hardware.mfu(tokens_per_s, flops_per_token, "bfloat16")  # model FLOP utilisation, 0..1

**The `auto` rule.** Training runs in float32 unless bfloat16 autocast is known to be faster:

  * on CUDA, bfloat16 when the GPU supports it (Ampere and later), else float32;
  * on a CPU, bfloat16 when both
      (a) this CPU multiplies bfloat16 matrices at least `BF16_MIN_SPEEDUP` times faster than float32
          (a cached micro-benchmark; true with matrix units such as AMX or AVX512-BF16, false where
          bfloat16 is emulated and runs slower than float32), and
      (b) the model is at least `BF16_MIN_WIDTH` wide: on narrower models the casts around small
          matrices cost more than the faster multiply saves;
  * float32 everywhere else.

The measured ratio is bimodal (several times faster with matrix units, slower without), so timing
noise cannot flip (a), and (b) depends on the config alone: one machine and one config always make
the same choice, which `make reproduce` needs. The width threshold comes from the training-step
benchmark in part 2 of `days/day02` (bfloat16 vs float32 per model width).

**What autocast changes.** Master weights, gradients and AdamW's moments stay float32. Inside
`torch.autocast("cpu", dtype=torch.bfloat16)` the matrix multiplies (linear layers, attention's
two products) take bfloat16 inputs and accumulate in float32; softmax, the norms, the loss and
every reduction stay in float32 (PyTorch's autocast op lists). bfloat16 keeps float32's 8-bit
exponent, so nothing overflows and no loss scaling is needed; it keeps 7 mantissa bits (a relative
rounding of at most 2^-8, about 0.4%), noise a trained network absorbs.

Measurements are cached in `$DAYS_CACHE/hardware.json` (default `~/.cache/100-days-of-ai/`),
keyed by CPU or GPU model, torch version and thread count.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

from common.lab import bench
from common.run import atomic

BF16_MIN_SPEEDUP = 2.0   # (a): a bfloat16 matmul this much faster than float32 means matrix units
BF16_MIN_WIDTH = 256     # (b): narrower models lose more to casts than they gain (day 2 measures it)
PEAK_SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048))  # square multiplies big enough to reach peak


def cache_path() -> Path:
    return Path(os.environ.get("DAYS_CACHE") or Path.home() / ".cache" / "100-days-of-ai") / "hardware.json"


def machine_key(device: torch.device | str = "cpu") -> str:
    """What a measurement depends on: the processor, torch's version and its thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return f"{device.type}|{name}|torch {torch.__version__}|{torch.get_num_threads()} threads"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _cached(device, what: str, measure):
    """The cached value `what` for this machine, measured (and stored) the first time."""
    key = machine_key(device)
    data = _load()
    if what not in data.get(key, {}):
        value = measure()
        data = _load()  # another process may have written meanwhile
        data.setdefault(key, {})[what] = value
        try:
            cache_path().parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(cache_path(), json.dumps(data, indent=1, sort_keys=True) + "\n")
        except OSError:  # a read-only home: measure again next time
            pass
        return value
    return data[key][what]


def _gflops(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, min_time: float = 0.25) -> float:
    """GFLOP/s of the fastest of several (m x k) @ (k x n) multiplies, timed with `bench.time_fn`."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    return 2 * m * k * n / bench.time_fn(lambda: a @ b, warmup=2, repeats=3, device=device, min_time=min_time).min / 1e9


def measure_peak(dtype: str, device: torch.device | str = "cpu") -> float:
    """The best GFLOP/s of a square matrix multiply in `dtype` (not cached)."""
    device = torch.device(device)
    return max(_gflops(*s, getattr(torch, dtype), device) for s in PEAK_SHAPES)


def matmul_peak(dtype: str, device: torch.device | str = "cpu") -> float:
    """This machine's matmul peak in GFLOP/s for `dtype`, measured once and cached: the denominator of MFU."""
    device = torch.device(device)
    return _cached(device, f"peak_gflops_{dtype}", lambda: round(measure_peak(dtype, device), 1))


def bf16_speedup(device: torch.device | str = "cpu") -> float:
    """How many times faster a bfloat16 matmul runs than a float32 one here (cached peaks' ratio)."""
    return matmul_peak("bfloat16", device) / matmul_peak("float32", device)


def choose_dtype(requested: str, n_embd: int | None, device: torch.device | str = "cpu",
                 speedup: float | None = None) -> tuple[str, str]:
    """The dtype a run computes in, and the reason in one sentence. `requested`: auto | float32 |
    bfloat16 | float16. `speedup` overrides the measured bfloat16/float32 ratio (tests force one)."""
    device = torch.device(device)
    if requested != "auto":
        return requested, f"{requested}: set in the config"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "bfloat16: this GPU supports it (auto)"
        return "float32", "float32: this GPU has no bfloat16 (auto)"
    if device.type != "cpu":
        return "float32", f"float32: auto keeps float32 on {device.type}"
    ratio = bf16_speedup(device) if speedup is None else speedup
    if ratio < BF16_MIN_SPEEDUP:
        return "float32", (f"float32: a bfloat16 matmul is only {ratio:.2g}x float32's speed on this CPU "
                           f"(auto needs {BF16_MIN_SPEEDUP:g}x: matrix units)")
    if n_embd is not None and n_embd < BF16_MIN_WIDTH:
        return "float32", (f"float32: the model is {n_embd} wide, below {BF16_MIN_WIDTH}, where casts cost more "
                           f"than bfloat16's {ratio:.1f}x faster matmul saves (auto)")
    return "bfloat16", (f"bfloat16 autocast: this CPU multiplies bfloat16 matrices {ratio:.1f}x faster than "
                        f"float32 and the model is {n_embd} wide (auto)")


def mfu(tokens_per_s: float, flops_per_token: float, dtype: str, device: torch.device | str = "cpu") -> float:
    """Model FLOP utilisation: the matmul FLOPs a run did per second over the machine's peak in its dtype."""
    return tokens_per_s * flops_per_token / (matmul_peak(dtype, device) * 1e9)


def remeasure(device: torch.device | str = "cpu") -> dict:
    """Measure this machine's peaks again (on a quiet machine) and replace the cached values."""
    device = torch.device(device)
    key = machine_key(device)
    data = _load()
    data.pop(key, None)
    cache_path().parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(cache_path(), json.dumps(data, indent=1, sort_keys=True) + "\n")
    return {dt: matmul_peak(dt, device) for dt in ("float32", "bfloat16")}


if __name__ == "__main__":  # python -m common.lab.hardware: re-measure and show what `auto` picks
    peaks = remeasure("cpu")
    print(f"{machine_key('cpu')}\nmatmul peak: " + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peaks.items())
          + f" (cached in {cache_path()})")
    for w in (64, 128, 256, 384, 768):
        print(f"  width {w:>4}: {choose_dtype('auto', w)[1]}")
