"""Run tracking: the environment banner, metrics as JSON lines + TensorBoard, and the summary.

One run = one folder `logs/dayNN/<run-id>/` holding
    metrics.jsonl   one {"step", "name", "value", "time"} object per logged point
    events.out.*    TensorBoard scalars for the same points (`make tensorboard`)
    summary.json    config, environment, wall time, status and the day's key metrics

`Tracker` is deliberately small: `log(name, value, step)`, `log_dict(...)`, `summary(...)`.
`progress(...)` is the progress bar every loop longer than a few seconds uses.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from datetime import datetime
from pathlib import Path

import torch

from common import ROOT  # noqa: F401  (re-exported: tests import tracking.ROOT)
from common.run import atomic
from common.run.gitinfo import GENERATED, dirty_paths, git_commit  # noqa: F401  (re-exported)
from common.run.progress_bar import progress  # noqa: F401  (re-exported: days use tracking.progress)


def environment(device: torch.device | str | None = None) -> dict:
    """Versions and hardware, as recorded in every banner, summary and deliverable."""
    import numpy

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else "cpu",
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git": git_commit(),
        "load_avg_1m": round(os.getloadavg()[0], 2),  # > cpu_count means timings are inflated
    }
    return env


def banner(title: str, env: dict, seed: int | None, preset: str | None, cfg_hash: str | None) -> str:
    """The block every run prints first."""
    dev = env["device"] + (f" ({env['gpu']}, CUDA {env['cuda']})" if env.get("gpu") else "")
    lines = [
        f"== {title} ==",
        f"seed {seed} | preset {preset} | config {cfg_hash} | device {dev}",
        f"python {env['python']} | torch {env['torch']} | numpy {env['numpy']} | "
        f"{env['platform']}, {env['cpu_count']} cpus, {env['torch_threads']} torch threads, load {env['load_avg_1m']} "
        f"| git {env['git']}",
    ]
    return "\n".join(lines)


def make_run_id(now: datetime | None = None, tag: str = "") -> str:
    """A sortable id: date-time plus the process id, so parallel runs do not collide, plus a `tag`
    (preset and overrides) so TensorBoard's run list says what each run was:
    20261201-141500-1234_cpu_lr=3e-4."""
    now = now or datetime.now()
    safe = re.sub(r"[^A-Za-z0-9=.+,_-]+", "-", tag).strip("-_")[:60]
    return now.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 10000:04d}" + (f"_{safe}" if safe else "")


class Tracker:
    """Writes metrics to `run_dir/metrics.jsonl` and TensorBoard; `summary()` writes summary.json."""

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self._tb_enabled = tensorboard
        self._tb = None  # created on first scalar: importing TensorBoard costs ~1 s
        self.t0 = self._last_flush = time.time()

    @property
    def writer(self):
        if self._tb is None and self._tb_enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir))
        return self._tb

    def log(self, name: str, value: float, step: int = 0) -> None:
        value = float(value)
        rec = {"step": int(step), "name": name, "value": value, "time": round(time.time() - self.t0, 4)}
        self._jsonl.write(json.dumps(rec) + "\n")
        if time.time() - self._last_flush > 5:  # a long run can be watched while it runs
            self.flush()
        if self.writer is not None:
            self.writer.add_scalar(name, value, int(step))

    def log_dict(self, values: dict, step: int = 0, prefix: str = "") -> None:
        for k, v in values.items():
            self.log(prefix + k, v, step)

    def flush(self) -> None:
        self._last_flush = time.time()
        self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def scoped(self, prefix: str) -> Scoped:
        """This tracker with every name under `prefix/`: one run's curves among several in one day."""
        return Scoped(self, prefix)

    def summary(self, **fields) -> Path:
        fields.setdefault("wall_time_s", round(time.time() - self.t0, 3))
        return atomic.write_json(self.run_dir / "summary.json", fields)

    def close(self) -> None:
        self.flush()
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


class Scoped:
    """A view of a Tracker that puts every name under `prefix/` (a `MetricSink`, as `train()` wants)."""

    def __init__(self, inner: Tracker, prefix: str):
        self.inner, self.prefix = inner, prefix.strip("/")

    def log(self, name: str, value: float, step: int = 0) -> None:
        self.inner.log(f"{self.prefix}/{name}", value, step)

    def log_dict(self, values: dict, step: int = 0, prefix: str = "") -> None:
        for k, v in values.items():
            self.log(prefix + k, v, step)

    def flush(self) -> None:
        self.inner.flush()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Load a metrics.jsonl file (or the one inside a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
