"""Seeds and determinism switches, in one place.

`seed_everything` makes a run repeatable on one machine: Python's `random`, NumPy, and Torch
(CPU and every CUDA device) all start from the same seed. `set_deterministic` additionally asks
Torch to refuse non-deterministic kernels, which matters on CUDA (atomics in scatter/index_add,
cuBLAS workspaces) and costs some speed. `rng_state` / `set_rng_state` capture and restore all
generators so a resumed training run draws the same batches as an uninterrupted one.

What this cannot promise: identical numbers across different hardware, thread counts, library
versions or CPU instruction sets. Floating-point addition is not associative, and a different
reduction order changes the last bits.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and Torch (CPU + all CUDA devices). Returns the seed for logging."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def set_deterministic(enabled: bool = True, warn_only: bool = False) -> None:
    """Ask Torch for deterministic kernels (and cuDNN/cuBLAS settings that go with them).

    `warn_only=True` logs instead of raising when an op has no deterministic version.
    """
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; it must be set before the first
        # cuBLAS call, so setting it late only helps later processes. Harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


@contextmanager
def deterministic(enabled: bool = True, warn_only: bool = False):
    """`set_deterministic` for the duration of a block, then every switch back as it was."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    set_deterministic(enabled, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def rng_state() -> dict:
    """All generator states, ready to be stored in a checkpoint."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def describe() -> dict:
    """The determinism settings in force, for the run banner."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "threads": torch.get_num_threads(),
    }
