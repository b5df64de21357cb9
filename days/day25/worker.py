"""One training process for day 25's kill-and-resume check: `python -m days.day25.worker spec.json`.

The spec (JSON) names the token shards, the model and training configs, the seed, the checkpoint
path and a log file. The worker writes one JSON line per optimizer step (`{"step": 12, "loss": ...}`),
flushed at once. With `"pause_after": N` it stops after logging step N, prints `paused N` and waits
to be killed: a handshake, so the kill lands at the same step every time. With `"resume": true` it
continues from the checkpoint through `common.train.train(..., resume=True)` exactly as a learner's
restarted run would.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch


class LineLog:
    """A `MetricSink` (what `train()` calls) that flushes every line, so a killed worker leaves its log.

    With `pause_after=N` it is also the kill handshake: once step N is logged it says so on stdout
    (`paused N`) and blocks, so the parent kills it at exactly that point instead of racing it."""

    def __init__(self, path, pause_after: int | None = None):
        self.f = open(path, "a", encoding="utf-8")
        self.pause_after = pause_after

    def log(self, name, value, step=0):
        if name == "train/loss":
            self.f.write(json.dumps({"step": int(step), "loss": float(value)}) + "\n")
            self.f.flush()
            if self.pause_after is not None and step >= self.pause_after:
                print(f"paused {step}", flush=True)
                while True:  # wait here for the parent's SIGKILL
                    time.sleep(60)

    def log_dict(self, values, step=0, prefix=""):
        pass

    def flush(self):
        self.f.flush()


def run(spec: dict) -> None:
    from common import data
    from common.lab import determinism
    from common.nn.model import GPT, GPTConfig
    from common.train import TrainConfig, train

    torch.set_num_threads(1)  # the same arithmetic in every process, whatever the machine's load
    determinism.seed_everything(spec["seed"])
    model = GPT(GPTConfig(**spec["model"]))
    tcfg = TrainConfig(**spec["train"])
    block, batch = spec["model"]["block_size"], spec["batch_size"]
    tb = data.StreamingLoader(data.ShardedTokens(spec["train_shards"]), block, batch, seed=spec["seed"])
    vb = data.StreamingLoader(data.ShardedTokens(spec["val_shards"]), block, batch, seed=spec["seed"] + 1)
    train(model, tb, vb, tcfg, "cpu", LineLog(spec["log"], spec.get("pause_after")), ckpt_path=spec["ckpt"],
          resume=spec.get("resume", False), show_progress=False)


def read_log(path) -> dict[int, float]:
    """step -> loss from a worker's log (a later line for the same step wins)."""
    p = Path(path)
    if not p.is_file():
        return {}
    out = {}
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the kill
            continue
        out[rec["step"]] = rec["loss"]
    return out


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
