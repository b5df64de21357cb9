"""Day 22: shards hold exactly the tokens, the loader is deterministic and resumable, the run works."""

import numpy as np
import pytest
import torch

from common import data
from common.nn.model import GPT, gpt_config
from common.run import runner
from common.train import TrainConfig, train
from days.day22 import run


def test_shards_hold_the_tokens_and_windows_stay_inside_one_shard(tmp_path):
    tokens = np.arange(25_000)                              # every value distinct: a window shows where it came from
    meta = data.write_shards(tokens, tmp_path / "s", shard_tokens=10_000)
    assert meta["sizes"] == [10_000, 10_000, 5_000] and meta["total"] == 25_000 and meta["dtype"] == "uint16"
    st = data.ShardedTokens(tmp_path / "s")
    assert np.array_equal(np.concatenate([np.asarray(s) for s in st.shards]), tokens)
    with pytest.raises(data.DataError):
        data.write_shards([70_000], tmp_path / "big")       # does not fit in uint16
    loader = data.StreamingLoader(st, 16, 256, seed=3)
    starts = []
    for _ in range(4):
        x, y = loader.sample()
        assert x.shape == y.shape == (256, 16) and x.dtype == torch.int64
        win = torch.cat([x, y[:, -1:]], dim=1)              # (B, T+1): consecutive ids of one shard
        assert torch.equal(y[:, :-1], x[:, 1:]) and bool((win.diff(dim=1) == 1).all())
        assert torch.equal(win[:, 0] // 10_000, win[:, -1] // 10_000)
        starts.append(win[:, 0])
    shard_of = torch.cat(starts) // 10_000
    assert set(shard_of.tolist()) == {0, 1, 2}              # every shard is drawn from, the short last one too
    assert all(torch.equal(a[0], b[0]) for a, b in zip(loader.fixed(2), loader.fixed(2)))

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
