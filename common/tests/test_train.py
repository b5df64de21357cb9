import math

import pytest
import torch

from common import data
from common.lab import determinism
from common.nn.model import GPT, gpt_config
from common.run.errors import UserError
from common.train import SCHEDULES, TrainConfig, load_checkpoint, lr_at, train


def _setup(seed=0, **model_kw):
    g = torch.Generator().manual_seed(0)  # the data never depends on the run's seed
    tokens = torch.arange(4000) % 13  # a pattern to learn...
    noise = torch.rand(4000, generator=g) < 0.1
    tokens[noise] = torch.randint(0, 65, (int(noise.sum()),), generator=g)  # ...with some noise
    determinism.seed_everything(seed)
    cfg = gpt_config("nano", **model_kw)
    tb = data.Batches(tokens[:3500], cfg.block_size, 8)
    vb = data.Batches(tokens[3500:], cfg.block_size, 8)
    return GPT(cfg), tb, vb


def test_lr_schedule_shape():
    c = TrainConfig(max_iters=1000, lr=1e-3, min_lr=1e-4, warmup_iters=100)
    assert lr_at(0, c) == pytest.approx(1e-5) and lr_at(99, c) == pytest.approx(1e-3)
    assert lr_at(550, c) == pytest.approx((1e-3 + 1e-4) / 2)  # cosine midpoint
    assert lr_at(1000, c) == pytest.approx(1e-4) and lr_at(5000, c) == pytest.approx(1e-4)
    lrs = [lr_at(i, c) for i in range(100, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay after warm-up
    for name in SCHEDULES:
        c.schedule = name
        assert all(0 < lr_at(i, c) <= c.lr + 1e-12 for i in range(0, 1200, 50))
    with pytest.raises(UserError):
        lr_at(0, TrainConfig(schedule="triangle"))


def test_training_reduces_loss_and_reports_throughput():
    model, tb, vb = _setup()
    r = train(model, tb, vb, TrainConfig(max_iters=60, eval_interval=30, eval_iters=2, lr=3e-3, warmup_iters=5),
              "cpu", show_progress=False)
    assert r.history["step"] == [30, 59]
    assert r.train_log["loss"][-1] < r.train_log["loss"][0] - 0.5
    assert r.tokens_per_s > 0 and r.tokens_per_iter == 8 * 32 and len(r.iter_times) == 60


def test_kill_and_resume_gives_the_same_trajectory(tmp_path):
    cfg = TrainConfig(max_iters=30, eval_interval=10, eval_iters=2, log_interval=1, lr=3e-3, warmup_iters=5)
    model, tb, vb = _setup(seed=1, dropout=0.1)
    full = train(model, tb, vb, cfg, "cpu", show_progress=False)
    ck = tmp_path / "ckpt.pt"
    model, tb, vb = _setup(seed=1, dropout=0.1)
    train(model, tb, vb, cfg, "cpu", ckpt_path=ck, stop_at=14, show_progress=False)  # "killed" after 14
    model, tb, vb = _setup(seed=99, dropout=0.1)  # a fresh process: different RNG until restored
    resumed = train(model, tb, vb, cfg, "cpu", ckpt_path=ck, resume=True, show_progress=False)
    assert resumed.train_log["step"][0] == 15
    assert resumed.train_log["loss"] == full.train_log["loss"][15:]
    assert resumed.history["val"][-1] == full.history["val"][-1]


def _streaming_setup(tmp_path, seed, loader_seed):
    tokens = (torch.arange(6000) * 7 % 13).numpy()
    if not (tmp_path / "shards" / "meta.json").is_file():
        data.write_shards(tokens, tmp_path / "shards", shard_tokens=1000)
    shards = data.ShardedTokens(tmp_path / "shards")
    determinism.seed_everything(seed)
    cfg = gpt_config("nano")
    return (GPT(cfg), data.StreamingLoader(shards, cfg.block_size, 8, seed=loader_seed),
            data.StreamingLoader(shards, cfg.block_size, 8, seed=loader_seed + 1))


def test_resume_restores_the_streaming_loader_position(tmp_path):
    """The loader's private generator is not a torch RNG: without its state in the checkpoint the
    resumed run would draw fresh batches from the start of the stream."""
    cfg = TrainConfig(max_iters=20, eval_interval=0, eval_iters=1, log_interval=1, lr=3e-3, warmup_iters=2)
    model, tb, vb = _streaming_setup(tmp_path, 1, 5)
    full = train(model, tb, vb, cfg, "cpu", show_progress=False)
    ck = tmp_path / "ckpt.pt"
    model, tb, vb = _streaming_setup(tmp_path, 1, 5)
    train(model, tb, vb, cfg, "cpu", ckpt_path=ck, stop_at=9, show_progress=False)
    assert load_checkpoint(ck)["loader"]["batches_served"] == 10
    model, tb, vb = _streaming_setup(tmp_path, 2, 5)  # fresh loader at the start of its stream
    resumed = train(model, tb, vb, cfg, "cpu", ckpt_path=ck, resume=True, show_progress=False)
    assert resumed.train_log["loss"] == full.train_log["loss"][10:]
    assert tb.batches_served == 20


def test_profiler_sees_the_step_phases():
    model, tb, vb = _setup()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train(model, tb, vb, TrainConfig(max_iters=3, eval_interval=0, eval_iters=1), "cpu", show_progress=False)
    names = {e.key for e in prof.key_averages()}
    assert {"data", "forward", "backward", "optimizer"} <= names


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(bad)
    model, tb, vb = _setup()
    with pytest.raises(UserError, match="corrupt"):
        train(model, tb, vb, TrainConfig(max_iters=2), "cpu", ckpt_path=bad, resume=True, show_progress=False)


def test_nan_loss_stops_with_the_step():
    model, tb, vb = _setup()
    with pytest.raises(UserError, match=r"Stopped at step 0 .*the loss is nan"):
        with torch.no_grad():
            model.wte.weight.fill_(math.nan)
        train(model, tb, vb, TrainConfig(max_iters=5, eval_iters=1), "cpu", show_progress=False)


def _poison_grad_at(model, step_to_poison):
    """A hook that makes one parameter's gradient inf at one step: the guard must name it."""
    calls = {"n": 0}
    w = model.blocks[0].mlp.fc.weight

    def hook(grad):
        calls["n"] += 1
        return grad * math.inf if calls["n"] == step_to_poison + 1 else grad
    w.register_hook(hook)


def test_non_finite_gradient_is_named_and_stops():
    model, tb, vb = _setup()
    _poison_grad_at(model, 3)
    with pytest.raises(UserError, match=r"Stopped at step 3 .*gradient of blocks.0.mlp.fc.weight"):
        train(model, tb, vb, TrainConfig(max_iters=6, eval_iters=1, grad_clip=0.0), "cpu", show_progress=False)


def test_skip_policy_skips_the_bad_step_and_keeps_the_weights_finite():
    model, tb, vb = _setup()
    _poison_grad_at(model, 2)
    r = train(model, tb, vb, TrainConfig(max_iters=6, eval_iters=1, nan_policy="skip", log_interval=1), "cpu",
              show_progress=False)
    assert [s for s, _ in r.skipped] == [2] and "blocks.0.mlp.fc.weight" in r.skipped[0][1]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert r.train_log["step"] == [0, 1, 3, 4, 5] and all(math.isfinite(g) for g in r.train_log["grad_norm"])


def test_eval_batches_are_fixed():
    _, tb, _ = _setup()
    a, b = tb.fixed(3), tb.fixed(3)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    state = torch.get_rng_state()
    tb.fixed(2)
    assert torch.equal(state, torch.get_rng_state())  # evaluation never moves the training RNG


def test_early_stopping_keeps_the_best_checkpoint(tmp_path):
    """Random train and val tokens: memorising the train set can only hurt val, so early stopping fires."""
    from common.train import best_path

    g = torch.Generator().manual_seed(0)
    tb = data.Batches(torch.randint(0, 65, (200,), generator=g), 32, 8)
    vb = data.Batches(torch.randint(0, 65, (2000,), generator=g), 32, 8)
    torch.manual_seed(0)
    model = GPT(gpt_config("nano"))
    cfg = TrainConfig(max_iters=400, lr=1e-2, warmup_iters=1, eval_interval=10, eval_iters=2,
                      early_stop_patience=3, weight_decay=0.0)
    r = train(model, tb, vb, cfg, "cpu", ckpt_path=tmp_path / "ckpt.pt", show_progress=False)
    assert r.stopped_early and r.final_iter < 399
    assert r.history["step"][-1] == r.best_step + 3 * 10  # three evaluations without a new best
    best = load_checkpoint(best_path(tmp_path / "ckpt.pt"))
    assert best["iter"] == r.best_step and best["val_loss"] == pytest.approx(min(r.history["val"]))
    assert (tmp_path / "ckpt.pt").is_file()


def test_wsd_schedule_is_flat_then_decays():
    c = TrainConfig(max_iters=110, lr=1.0, min_lr=0.1, warmup_iters=10, schedule="wsd", decay_frac=0.2)
    assert [lr_at(t, c) for t in (10, 50, 89)] == pytest.approx([1.0, 1.0, 1.0])  # stable phase
    assert lr_at(100, c) == pytest.approx(0.55) and lr_at(110, c) == pytest.approx(0.1)  # linear decay to the floor


def test_bfloat16_autocast_matches_float32_quality_at_equal_steps():
    """bfloat16 autocast (matmuls in bf16, weights and optimizer in float32) reaches a val loss within
    1% of float32's after the same steps on the same data and seed."""
    vals, dtypes = {}, {}
    for dtype in ("float32", "bfloat16"):
        model, tb, vb = _setup(seed=0)
        res = train(model, tb, vb, TrainConfig(max_iters=150, lr=3e-3, warmup_iters=10, eval_interval=0,
                                               eval_iters=4, dtype=dtype), "cpu", show_progress=False)
        vals[dtype], dtypes[dtype] = res.final_val, res.dtype
        assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert dtypes == {"float32": "float32", "bfloat16": "bfloat16"}
    assert vals["float32"] < 2.0  # it learned the pattern (ln 65 = 4.17 at the start)
    assert abs(vals["bfloat16"] - vals["float32"]) <= 0.01 * vals["float32"], vals


def test_auto_dtype_is_resolved_and_reported(monkeypatch):
    from common.lab import hardware

    monkeypatch.setattr(hardware, "bf16_speedup", lambda device="cpu": 0.7)  # a CPU without matrix units
    model, tb, vb = _setup()
    res = train(model, tb, vb, TrainConfig(max_iters=3, eval_interval=0, eval_iters=1), "cpu", show_progress=False)
    assert TrainConfig().dtype == "auto" and res.dtype == "float32" and "0.7x" in res.dtype_reason
