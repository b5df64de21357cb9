"""Timing and memory measurement that can be trusted on a noisy machine.

Rules every benchmark here follows:
  * warm up first (allocator, lazy init, autotuning and `torch.compile` happen in the first calls);
  * synchronise the device before reading the clock (CUDA kernels run asynchronously);
  * repeat, and report mean ± std (and min, the least-disturbed run);
  * compare variants inside one process, interleaved, and state ratios rather than single timings.

Peak memory: on CUDA the allocator's own high-water mark; on CPU the process's resident set size
sampled by a background thread (what the OS charges us, so it includes Python and Torch itself).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass, field

import psutil
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def sync(device: torch.device | str | None = None) -> None:
    """Wait for queued device work to finish (no-op on CPU)."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev is not None and dev.type == "mps":
        torch.mps.synchronize()


@dataclass
class Timing:
    times: list[float] = field(default_factory=list)  # seconds per call

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)

    @property
    def std(self) -> float:
        return statistics.stdev(self.times) if len(self.times) > 1 else 0.0

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def __str__(self) -> str:
        return f"{fmt_seconds(self.mean)} ± {fmt_seconds(self.std)} (n={len(self.times)})"


def time_fn(fn, *, warmup: int = 3, repeats: int = 10, device=None, min_time: float = 0.0) -> Timing:
    """Call `fn()` `warmup` times untimed, then time `repeats` calls (more if `min_time` not reached)."""
    # >>> exercise day02.time_fn: warm up untimed, then time each call between device syncs into a Timing
    for _ in range(warmup):
        fn()
    sync(device)
    t = Timing()
    start_all = time.perf_counter()
    while len(t.times) < repeats or (time.perf_counter() - start_all) < min_time:
        t0 = time.perf_counter()
        fn()
        sync(device)
        t.times.append(time.perf_counter() - t0)
        if len(t.times) >= 10 * max(repeats, 1):
            break
    return t
    # <<< exercise day02.time_fn


def interleave(measures: dict, rounds: int, rotate: bool = False) -> dict[str, list]:
    """Call every measurement once per round, in turn, and collect what each returns.

    Interleaving spreads slow drifts of the machine (another process, thermal throttling) over all
    variants alike. `rotate` starts round r at the r-th variant, so no variant always runs first.
    A measurement is any callable: a timing (`lambda: time_fn(f).mean`) or a whole run's tokens/s.
    """
    # >>> exercise day02.interleave: call every measurement once per round, in turn, collecting the results
    names = list(measures)
    out = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names) if rotate and names else 0
        for n in names[k:] + names[:k]:
            out[n].append(measures[n]())
    return out
    # <<< exercise day02.interleave


def compare(fns: dict, *, rounds: int = 5, repeats: int = 2, warmup: int = 1, device=None,
            per_round: bool = False, min_time: float = 0.0) -> dict[str, Timing]:
    """Time several variants interleaved, so machine noise hits all of them alike.

    Each variant is warmed up, then in every one of `rounds` rounds each variant in turn runs
    `repeats` timed calls (more until `min_time` seconds pass). Returns {name: Timing} with every
    call's time, or with one sample per round (that round's mean) when `per_round` is set, for
    mean ± std over rounds.
    """
    for fn in fns.values():
        time_fn(fn, warmup=warmup, repeats=0, device=device)
    runs = interleave({name: (lambda fn=fn: time_fn(fn, warmup=0, repeats=repeats, device=device,
                                                     min_time=min_time)) for name, fn in fns.items()}, rounds)
    return {name: Timing([t.mean for t in ts] if per_round else [x for t in ts for x in t.times])
            for name, ts in runs.items()}


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value, NaN for none)."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt_mean_std(values, digits: int = 3) -> str:
    """'mean ± std' with `digits` significant digits for the mean."""
    m, s = mean_std(values)
    return f"{m:.{digits}g} ± {s:.2g}"


def fmt_seconds(s: float) -> str:
    """A duration in s, ms or µs, whichever reads best."""
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} µs"


class PeakMemory:
    """Context manager: peak memory (bytes) used inside the block.

    CUDA: `torch.cuda.max_memory_allocated` after resetting the peak. CPU: the process RSS,
    sampled every `interval` seconds in a thread; `peak_bytes` is the absolute peak and
    `delta_bytes` the rise over the RSS at entry.
    """

    def __init__(self, device=None, interval: float = 0.005):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.interval = interval
        self.peak_bytes = 0
        self.start_bytes = 0
        self._stop = threading.Event()
        self._thread = None

    def _sample(self, proc):
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
        else:
            proc = psutil.Process()
            self.start_bytes = self.peak_bytes = proc.memory_info().rss
            self._thread = threading.Thread(target=self._sample, args=(proc,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, psutil.Process().memory_info().rss)
        return False

    @property
    def delta_bytes(self) -> int:
        return max(0, self.peak_bytes - self.start_bytes)


def mib(n_bytes: float) -> float:
    """Bytes to MiB."""
    return n_bytes / 2**20


class ByteCounter(TorchDispatchMode):
    """Bytes every (non-view) ATen op reads and writes inside the block: what unfused eager moves.

        with ByteCounter() as bc:
            step()
        bc.bytes, bc.ops
    """

    def __init__(self):
        super().__init__()
        self.bytes, self.ops = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # >>> exercise day08.byte_counter: run the op, then add the bytes of every tensor it read or wrote
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            self.bytes += sum(t.numel() * t.element_size() for t in tensors)
            self.ops += 1
        return out
        # <<< exercise day08.byte_counter


class ColdCompile:
    """Switch inductor's on-disk FX-graph and AOT-autograd caches off inside the block, so a timed
    `torch.compile` pays the full compile (when `enabled`), not a cache hit from an earlier run."""

    def __init__(self, enabled: bool = True):
        import torch._functorch.config as fconf
        import torch._inductor.config as iconf
        self.enabled, self.confs = enabled, [(iconf, "fx_graph_cache"), (fconf, "enable_autograd_cache")]

    def __enter__(self):
        self.saved = [getattr(c, k) for c, k in self.confs]
        for c, k in self.confs:
            setattr(c, k, getattr(c, k) and not self.enabled)
        return self

    def __exit__(self, *exc):
        for (c, k), v in zip(self.confs, self.saved):
            setattr(c, k, v)
