"""Checkpoints: model, optimizer, step, config and every RNG state in one atomically written file.

`save_checkpoint` / `load_checkpoint` are what `train(..., ckpt_path=..., resume=True)` uses; a
broken or mismatched file is a `UserError` that says to delete it, never a raw traceback.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from common.lab import determinism
from common.run import atomic
from common.run.errors import UserError

if TYPE_CHECKING:
    from common.train.loop import TrainConfig


def save_checkpoint(path, model, optimizer, it: int, cfg: TrainConfig, extra: dict | None = None) -> None:
    """Model, optimizer, step, config and every RNG state, written atomically."""
    # >>> exercise day25.save_checkpoint: one dict of model, optimizer, step, config and RNG states, saved atomically
    raw = getattr(model, "_orig_mod", model)
    atomic.torch_save({"model": raw.state_dict(), "optimizer": optimizer.state_dict(), "iter": it,
                       "train_config": asdict(cfg), "rng": determinism.rng_state(), **(extra or {})}, path)
    # <<< exercise day25.save_checkpoint


def best_path(ckpt_path) -> Path:
    """Where the best-so-far checkpoint sits next to `ckpt_path`: ckpt.pt -> ckpt.best.pt."""
    p = Path(ckpt_path)
    return p.with_name(p.stem + ".best" + p.suffix)


def load_checkpoint(path, model=None, optimizer=None) -> dict:
    """Load a checkpoint (into `model`/`optimizer` when given); a broken file is a UserError."""
    # >>> exercise day25.load_checkpoint: torch.load, restore model and optimizer, any failure becomes one UserError
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict) or "model" not in ckpt:
            raise ValueError("no model state inside")
        if model is not None:
            getattr(model, "_orig_mod", model).load_state_dict(ckpt["model"])
        if optimizer is not None and "optimizer" in ckpt:
            optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, EOFError, OSError, KeyError, pickle.UnpicklingError) as e:
        raise UserError(f"Checkpoint {path} is corrupt or does not match this model "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:120]}); delete it to start fresh.") from None
    return ckpt
    # <<< exercise day25.load_checkpoint
