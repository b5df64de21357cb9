"""Day 25: the pretraining run resumes exactly — across real process kills and across invocations."""

import json

import pytest
from omegaconf import OmegaConf

from common import ROOT
from common.data import corpus
from common.run import runner
from days.day25 import run
from days.day25.worker import read_log


@pytest.fixture
def corpus_data(require_data):
    for name, file in corpus.SOURCES:
        require_data(name, file)


def test_default_shape_is_day24s_27m_shape_at_half_context():
    yaml = OmegaConf.load(ROOT / "days" / "day24" / "configs" / "pretrain_27m.yaml")
    cfg = run.Config()
    for k in ("vocab_size", "n_layer", "n_head", "n_embd"):
        assert getattr(cfg, k) == yaml[k], k
    assert cfg.block_size == yaml["block_size"] // 2
    assert cfg.kr_ckpt_interval < cfg.kr_kill_after < cfg.kr_steps  # the kill lands after a checkpoint
    assert cfg.compare_steps % cfg.eval_interval == 0  # the twin is compared at an evaluation step


def test_gpu_preset_is_in_the_20_to_50M_range():
    import torch

    from common.nn.model import GPT, gpt_config_for

    cfg = run.Config(**run.PRESETS["gpu"])
    with torch.device("meta"):
        n = GPT(gpt_config_for(cfg, vocab_size=cfg.vocab_size)).num_params()
    assert 20e6 <= n <= 50e6


def test_read_log_skips_a_line_cut_by_the_kill(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text(json.dumps({"step": 0, "loss": 2.5}) + "\n" + json.dumps({"step": 1, "loss": 2.4}) + "\n{\"st")
    assert read_log(p) == {0: 2.5, 1: 2.4}
    assert read_log(tmp_path / "missing.jsonl") == {}


def test_checkpoint_round_trip_restores_weights_optimizer_step_and_rngs(tmp_path):
    import random

    import numpy as np
    import torch

    from common.lab import determinism
    from common.nn.model import GPT, gpt_config
    from common.run.errors import UserError
    from common.train import TrainConfig, load_checkpoint, save_checkpoint

    def make(seed, **over):
        torch.manual_seed(seed)
        m = GPT(gpt_config("nano", **over))
        return m, m.configure_optimizer(0.1, 1e-3, (0.9, 0.95), "cpu")

    model, opt = make(0)
    x = torch.randint(0, 65, (2, 32))
    model(x, x)[1].backward()
    opt.step()                                             # the optimizer now holds moments and a step count
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, opt, 5, TrainConfig(max_iters=7), {"loader": {"batches_served": 3}})
    after = (random.random(), float(np.random.rand()), torch.rand(3))  # what the run would draw next
    fresh, fresh_opt = make(1)
    ckpt = load_checkpoint(path, fresh, fresh_opt)
    assert ckpt["iter"] == 5 and ckpt["train_config"]["max_iters"] == 7 and ckpt["loader"] == {"batches_served": 3}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    saved, loaded = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k][n], loaded[k][n]) for k in saved
                                                 for n in saved[k])
    determinism.set_rng_state(ckpt["rng"])
    assert (random.random(), float(np.random.rand())) == after[:2] and torch.equal(torch.rand(3), after[2])
    with pytest.raises(UserError, match="delete it"):      # another shape: one clear error, not a traceback
        load_checkpoint(path, make(0, n_embd=64)[0])
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="delete it"):
        load_checkpoint(path)

def test_quick_run_kills_a_worker_and_resumes_it_exactly(tmp_path, corpus_data):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["killed"] and m["resume_losses_equal"] and m["resume_weights_equal"]
    assert m["tokens_trained"] == 30 * 4 * 32
    assert (tmp_path / "plots" / "day25_kill_resume.png").is_file()
    assert list((tmp_path / "logs" / "day25").glob("*/events.out.tfevents.*"))  # TensorBoard curves


def test_a_second_invocation_with_resume_continues_the_first(tmp_path, corpus_data):
    runner.quick(run, tmp_path, kr_steps=0, max_iters=20)
    s = runner.quick(run, tmp_path, kr_steps=0, max_iters=30, resume=True)
    assert s["metrics"]["tokens_trained"] == 10 * 4 * 32  # steps 20-29 only
    assert "Resumed at step 20" in (tmp_path / "deliverable.md").read_text()
