"""The one training loop: AdamW, warm-up + cosine, accumulation, clipping, AMP, compile, checkpoints.

    result = train(model, batches_train, batches_val, TrainConfig(max_iters=2000), device, tracker)

Every day that trains something calls this; variants are `TrainConfig` fields, not copies of the
loop. What it guarantees:
  * the learning rate at step `it` is `lr_at(it, cfg)` (a pure function, plotted on day 12);
  * evaluation uses fixed batches (same windows every time) and never touches the training RNG;
  * a checkpoint holds model, optimizer, step, every RNG state, the data loader's position (when it
    has a `state_dict`, like `data.StreamingLoader`) and the early-stopping counters, written
    atomically, so a killed run resumed from it continues on exactly the same trajectory;
  * the phases of a step run under `torch.profiler.record_function` labels `data`, `forward`,
    `backward` and `optimizer`, so a profiler around `train()` shows where the time goes (day 28);
  * a non-finite loss stops the run with the step number (`UserError`), never silently;
  * timings exclude evaluation and checkpointing: `tokens_per_s` is training throughput;
  * `dtype="auto"` (the default) is resolved once per run by `common.lab.hardware.choose_dtype`:
    bfloat16 autocast where this machine and model width make it faster, float32 elsewhere. Weights,
    gradients and optimizer state stay float32 either way; `result.dtype` and `.dtype_reason` say
    what ran and why.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch.profiler import record_function

from common.data.loaders import BatchSource
from common.lab import determinism, hardware
from common.run.errors import UserError
from common.run.progress_bar import progress
from common.train.checkpoint import best_path, load_checkpoint, save_checkpoint
from common.train.schedules import lr_at


@dataclass
class TrainConfig:
    max_iters: int = 2000
    lr: float = 1e-3             # peak learning rate
    min_lr: float = 1e-4         # floor of the cosine (nanoGPT: lr / 10)
    warmup_iters: int = 100      # linear warm-up from 0: Adam's early steps are large and noisy
    lr_decay_iters: int = 0      # where the cosine reaches min_lr; 0 = max_iters
    schedule: str = "cosine"     # cosine | linear | constant | wsd (warm-up, stable, decay)
    decay_frac: float = 0.2      # wsd: the final fraction of the steps that decays to min_lr
    weight_decay: float = 0.1    # decoupled (AdamW), on 2-D weights only
    beta1: float = 0.9
    beta2: float = 0.99          # 0.99 rather than 0.999: small batches, short runs
    grad_clip: float = 1.0       # global-norm clip; 0 disables
    grad_accum: int = 1          # micro-batches per optimizer step
    eval_interval: int = 250
    eval_iters: int = 20         # fixed batches per split per evaluation
    log_interval: int = 10
    compile: bool = False        # torch.compile the model (day 2)
    compile_mode: str = "default"     # default | reduce-overhead | max-autotune
    compile_backend: str = "inductor"  # inductor: generated kernels; eager: tracing only (tests)
    dtype: str = "auto"          # auto | float32 | bfloat16 | float16 (autocast); auto: common/lab/hardware.py
    ckpt_interval: int = 0       # save every N iters (0: only at the end, if a path is given)
    early_stop_patience: int = 0  # stop after this many evaluations without a new best val loss (0: off)
    nan_policy: str = "stop"     # stop | skip: what a non-finite loss or gradient does (day 17)
    max_skips: int = 10          # with "skip", stop anyway after this many skipped steps


# Day configs that name a TrainConfig field differently (a day's `steps` is the loop's `max_iters`).
ALIASES = {"steps": "max_iters", "patience": "early_stop_patience"}


def train_config_for(day_cfg, **overrides) -> TrainConfig:
    """The bridge from a day's flat config to the loop's: every TrainConfig field the day config
    has (by name, or through ALIASES) is copied, then `overrides` win. `min_lr` defaults to lr / 10
    (nanoGPT's floor; TrainConfig's own defaults, 1e-3 and 1e-4, follow the same rule).

        tc = train_config_for(cfg, warmup_iters=cfg.steps // 20, eval_interval=0)
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"Unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}.")
    shared = {}
    for f in dataclasses.fields(day_cfg):
        key = ALIASES.get(f.name, f.name)
        if key in names:
            shared[key] = getattr(day_cfg, f.name)
    kw = {**shared, **overrides}
    kw.setdefault("min_lr", kw.get("lr", TrainConfig.lr) / 10)
    return TrainConfig(**kw)


@dataclass
class TrainResult:
    history: dict = field(default_factory=lambda: {"step": [], "train": [], "val": [], "time": []})
    train_log: dict = field(default_factory=lambda: {"step": [], "loss": [], "lr": [], "grad_norm": []})
    skipped: list = field(default_factory=list)      # (step, what was not finite) with nan_policy="skip"
    best_step: int = -1                              # the evaluation with the lowest val loss
    stopped_early: bool = False                      # early stopping ended the run
    iter_times: list = field(default_factory=list)   # seconds per optimizer step, eval excluded
    tokens_per_iter: int = 0
    first_iter_s: float = 0.0                        # includes torch.compile's compilation
    wall_s: float = 0.0
    final_iter: int = 0
    dtype: str = "float32"                           # what the run computed in (`auto` resolved)
    dtype_reason: str = ""                           # why, in one sentence

    @property
    def tokens_per_s(self) -> float:
        """Median steady-state throughput (first 10% of steps excluded: warm-up, compile)."""
        t = sorted(self.iter_times[max(1, len(self.iter_times) // 10):] or self.iter_times)
        return self.tokens_per_iter / t[len(t) // 2] if t else float("nan")

    @property
    def final_val(self) -> float:
        return self.history["val"][-1] if self.history["val"] else float("nan")

    @property
    def best_val(self) -> float:
        return min(self.history["val"]) if self.history["val"] else float("nan")


def autocast(device: torch.device, dtype: str):
    """An autocast context for `dtype` (disabled for float32)."""
    if dtype == "float32":
        return torch.autocast(device.type, enabled=False)
    if dtype not in ("bfloat16", "float16"):
        raise UserError(f"Unknown dtype {dtype!r}; use float32, bfloat16 or float16.")
    return torch.autocast(device.type, dtype=getattr(torch, dtype))


@torch.no_grad()
def full_split_loss(model, tokens, block_size: int, batch_size: int, device, dtype: str = "float32") -> float:
    """Mean next-token loss over every non-overlapping window of a split (no sampling noise)."""
    was_training = model.training
    model.eval()
    n = (tokens.numel() - 1) // block_size
    x = tokens[: n * block_size].view(n, block_size)
    y = tokens[1 : n * block_size + 1].view(n, block_size)
    total = 0.0
    for i in range(0, n, batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        with autocast(torch.device(device), dtype):
            _, loss = model(xb, yb)
        total += loss.float().item() * xb.shape[0]
    model.train(was_training)
    return total / n


@torch.no_grad()
def evaluate(model, batches: dict, device, dtype: str = "float32") -> dict:
    """Mean loss over each split's fixed batches."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = {}
    for split, bs in batches.items():
        losses = []
        for x, y in bs:
            with autocast(device, dtype):
                _, loss = model(x, y)
            losses.append(loss.float().item())
        out[split] = sum(losses) / len(losses)
    model.train(was_training)
    return out


def non_finite(loss: torch.Tensor, model, check_grads: bool = True) -> str | None:
    """None if the loss and every gradient are finite, else a description of the first offender."""
    # >>> exercise day17.non_finite: None if loss and grads are finite, else a message naming the loss or the bad tensor
    if not torch.isfinite(loss):
        return f"the loss is {loss.item()}"
    if check_grads:
        for name, p in getattr(model, "_orig_mod", model).named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                bad = (~torch.isfinite(p.grad)).sum().item()
                return f"the gradient of {name} has {bad} non-finite value(s) of {p.grad.numel()}"
    return None
    # <<< exercise day17.non_finite


class MetricSink(Protocol):
    """What `train()` logs into: `common.run.tracking.Tracker`, or a day's own recorder (days 14, 19, 25)."""

    def log(self, name: str, value: float, step: int = 0) -> None: ...

    def log_dict(self, values: dict, step: int = 0, prefix: str = "") -> None: ...

    def flush(self) -> None: ...


def train(model, train_batches: BatchSource, val_batches: BatchSource, cfg: TrainConfig, device,
          tracker: MetricSink | None = None, *,
          ckpt_path=None, resume: bool = False, stop_at: int | None = None, show_progress: bool = True,
          optimizer=None) -> TrainResult:
    """Train `model` (returning (logits, loss) from `model(x, y)`) for `cfg.max_iters` optimizer steps.

    `stop_at` ends the run early after that step (used to simulate a kill in the resume test).
    """
    device = torch.device(device)
    model.to(device)
    dtype, why = hardware.choose_dtype(cfg.dtype, getattr(getattr(model, "cfg", None), "n_embd", None), device)
    cfg = dataclasses.replace(cfg, dtype=dtype)  # `auto` resolved once, before the first step
    if show_progress:  # a full run says what it computes in, before the progress bar
        print(f"precision: {why}", flush=True)
    if optimizer is None:
        optimizer = model.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), device.type)
    start = 0
    best_val, since_best = float("inf"), 0
    if resume and ckpt_path and Path(ckpt_path).is_file():
        ckpt = load_checkpoint(ckpt_path, model, optimizer)
        determinism.set_rng_state(ckpt["rng"])
        if "loader" in ckpt and hasattr(train_batches, "load_state_dict"):
            train_batches.load_state_dict(ckpt["loader"])
        best_val, since_best = ckpt.get("best_val", best_val), ckpt.get("since_best", since_best)
        start = ckpt["iter"] + 1
    step_model = torch.compile(model, mode=cfg.compile_mode, backend=cfg.compile_backend) if cfg.compile else model
    scaler = torch.amp.GradScaler(device.type, enabled=(cfg.dtype == "float16" and device.type == "cuda"))
    eval_sets = {"train": train_batches.fixed(cfg.eval_iters), "val": val_batches.fixed(cfg.eval_iters)}
    res = TrainResult(tokens_per_iter=train_batches.batch_size * train_batches.block_size * cfg.grad_accum,
                      dtype=dtype, dtype_reason=why)
    t_start = time.perf_counter()
    model.train()

    def state() -> dict:  # what a resumed run needs besides model, optimizer and RNG
        st = {"best_val": best_val, "since_best": since_best}
        if hasattr(train_batches, "state_dict"):
            st["loader"] = train_batches.state_dict()
        return st

    last = min(cfg.max_iters, stop_at + 1 if stop_at is not None else cfg.max_iters)
    bar = progress(range(start, last), desc="train", disable=None if show_progress else True)
    optimizer.zero_grad(set_to_none=True)  # gradients left on the model by earlier code must not leak in
    for it in bar:
        lr = lr_at(it, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        for _ in range(cfg.grad_accum):
            with record_function("data"):
                x, y = train_batches.sample()
            with record_function("forward"), autocast(device, cfg.dtype):
                _, loss = step_model(x, y)
            with record_function("backward"):
                scaler.scale(loss / cfg.grad_accum).backward()
        scaler.unscale_(optimizer)
        # the global L2 norm of the gradient, checked before clipping could spread a nan to every tensor
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        gnorm = torch.nn.utils.get_total_norm(grads)
        if torch.isfinite(gnorm) and cfg.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(model.parameters(), cfg.grad_clip, gnorm)
        if not torch.isfinite(gnorm) or not torch.isfinite(loss):
            # fp16 with a GradScaler skips inf/nan steps itself; everything else goes through the guard
            bad = non_finite(loss, model, check_grads=not scaler.is_enabled())
            if bad:
                optimizer.zero_grad(set_to_none=True)
                if cfg.nan_policy not in ("stop", "skip"):
                    raise UserError(f"Unknown nan_policy {cfg.nan_policy!r}; use stop or skip.")
                if cfg.nan_policy == "stop" or len(res.skipped) >= cfg.max_skips:
                    raise UserError(f"Stopped at step {it} (lr {lr:.3g}): {bad}. Lower the learning rate, keep "
                                    f"grad_clip on, use float32, or set nan_policy=skip.")
                res.skipped.append((it, bad))
                if tracker:
                    tracker.log("train/skipped_step", 1.0, it)
                continue
        with record_function("optimizer"):
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        if it == start:
            res.first_iter_s = dt
        res.iter_times.append(dt)
        if it % cfg.log_interval == 0 or it == last - 1:
            lv = loss.item()
            res.train_log["step"].append(it)
            res.train_log["loss"].append(lv)
            res.train_log["lr"].append(lr)
            res.train_log["grad_norm"].append(gnorm.item())
            if tracker:
                tracker.log("train/loss", lv, it)
                tracker.log("train/lr", lr, it)
                tracker.log("train/grad_norm", res.train_log["grad_norm"][-1], it)
            bar.set_postfix(loss=f"{lv:.3f}", refresh=False)
        is_last = it == cfg.max_iters - 1
        if (cfg.eval_interval and it % cfg.eval_interval == 0 and it > 0) or is_last:
            losses = evaluate(model, eval_sets, device, cfg.dtype)
            res.history["step"].append(it)
            res.history["train"].append(losses["train"])
            res.history["val"].append(losses["val"])
            res.history["time"].append(time.perf_counter() - t_start)  # wall-clock since start, evals included
            if tracker:
                tracker.log_dict(losses, it, prefix="eval/")
            if losses["val"] < best_val:
                best_val, res.best_step, since_best = losses["val"], it, 0
                if ckpt_path:  # keep the best model, next to the latest one
                    save_checkpoint(best_path(ckpt_path), model, optimizer, it, cfg, {"val_loss": best_val, **state()})
            else:
                since_best += 1
                if cfg.early_stop_patience and since_best >= cfg.early_stop_patience:
                    res.stopped_early, res.final_iter = True, it
                    if ckpt_path:
                        save_checkpoint(ckpt_path, model, optimizer, it, cfg, state())
                    break
        if ckpt_path and ((cfg.ckpt_interval and it % cfg.ckpt_interval == 0) or it == last - 1):
            save_checkpoint(ckpt_path, model, optimizer, it, cfg, state())
        res.final_iter = it
    res.wall_s = time.perf_counter() - t_start
    if tracker:
        tracker.flush()
    return res
