"""Day 22: shards hold exactly the tokens, the loader is deterministic and resumable, the run works."""

import numpy as np
import torch

from common import data
from common.nn.model import GPT, gpt_config
from common.run import runner
from common.train import TrainConfig, train
from days.day22 import run


def test_loader_drives_the_training_loop(tmp_path):
    """StreamingLoader is a drop-in for Batches in common.train.train."""
    data.write_shards(np.arange(30_000) % 65, tmp_path / "s", shard_tokens=8000)
    st = data.ShardedTokens(tmp_path / "s")
    torch.manual_seed(0)
    model = GPT(gpt_config("nano"))
    r = train(model, data.StreamingLoader(st, 32, 4, seed=1), data.StreamingLoader(st, 32, 4, seed=2),
              TrainConfig(max_iters=20, eval_iters=2, lr=3e-3, warmup_iters=2), "cpu", show_progress=False)
    assert r.train_log["loss"][-1] < r.train_log["loss"][0]


def test_resume_mid_stream_matches_uninterrupted(tmp_path):
    data.write_shards(np.random.default_rng(0).integers(0, 1000, 50_000), tmp_path / "s", shard_tokens=10_000)
    st = data.ShardedTokens(tmp_path / "s")
    full = data.StreamingLoader(st, 16, 4, seed=7)
    stream = [full.sample()[0] for _ in range(12)]
    first = data.StreamingLoader(st, 16, 4, seed=7)
    for _ in range(5):
        first.sample()
    saved = first.state_dict()
    resumed = data.StreamingLoader(st, 16, 4, seed=0)
    resumed.load_state_dict(saved)
    assert all(torch.equal(resumed.sample()[0], stream[i]) for i in range(5, 12))


def test_quick_run_end_to_end(tmp_path, require_data):
    for name, file in run.CORPUS:
        require_data(name, file)
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["deterministic"] is True and m["resume_exact"] is True and m["loader_over_model"] > 0
    assert (tmp_path / ".cache" / "day22" / "shards" / "meta.json").is_file()
    assert (tmp_path / "plots" / "day22_loader_vs_model.png").is_file()
