"""Learning-rate schedules: warm-up, then cosine, linear, constant or warm-up-stable-decay.

`lr_at(it, cfg)` is a pure function of the step and a `TrainConfig`, so day 12 can plot the very
schedule the loop uses and a resumed run picks up the same rate. A new shape is one entry in
`SCHEDULES`, a function of the decay fraction f (0 -> 1) and the config.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from common.run.errors import UserError

if TYPE_CHECKING:
    from common.train.loop import TrainConfig


def _warmup_then(fn):
    """Wrap a decay shape with linear warm-up: step `it` < warmup climbs from lr/warmup to lr."""
    def lr(it: int, c: TrainConfig) -> float:
        # >>> exercise day19.warmup: linear warm-up to c.lr, then fn(decay fraction, c); min_lr past the end
        if it < c.warmup_iters:
            return c.lr * (it + 1) / c.warmup_iters
        end = c.lr_decay_iters or c.max_iters
        if it >= end:
            return c.min_lr if c.schedule != "constant" else c.lr
        frac = (it - c.warmup_iters) / max(1, end - c.warmup_iters)  # 0 -> 1 over the decay
        return fn(frac, c)
        # <<< exercise day19.warmup
    return lr


SCHEDULES = {
    "cosine": _warmup_then(lambda f, c: c.min_lr + 0.5 * (1 + math.cos(math.pi * f)) * (c.lr - c.min_lr)),
    "linear": _warmup_then(lambda f, c: c.lr + f * (c.min_lr - c.lr)),
    "constant": _warmup_then(lambda f, c: c.lr),
    # warm-up, stable at the peak, then a linear decay over the last `decay_frac` of the steps
    "wsd": _warmup_then(lambda f, c: c.lr if f < 1 - c.decay_frac
                        else c.lr + (f - 1 + c.decay_frac) / c.decay_frac * (c.min_lr - c.lr)),
}


def lr_at(it: int, cfg: TrainConfig) -> float:
    """The learning rate at optimizer step `it` (warm-up, then the configured decay)."""
    if cfg.schedule not in SCHEDULES:
        raise UserError(f"Unknown schedule {cfg.schedule!r}; use one of {', '.join(SCHEDULES)}.")
    return SCHEDULES[cfg.schedule](it, cfg)
