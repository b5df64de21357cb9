"""Day 6: bit-identical repeat training, seeding facts, init scaling, LayerNorm dtype/eps, and the quick run."""

import math

import pytest
import torch

from common import data
from common.nn.layers import LayerNorm, layer_norm_reference
from common.nn.model import GPT, gpt_config
from common.run import runner
from days.day06 import run

NANO = run.Config(**{**run.PRESETS["nano"], "max_iters": 8, "eval_interval": 4})


@pytest.fixture
def corpus(require_data):
    """Tiny Shakespeare, or a skip (a failure when REQUIRE_DATA=1) if it is not on DATA_DIR."""
    require_data("tinyshakespeare")
    return data.char_corpus("tinyshakespeare")


def test_same_seed_is_bit_identical_and_other_seeds_are_not(corpus):
    dev = torch.device("cpu")
    a, b = run.train_once(NANO, 3, corpus, dev), run.train_once(NANO, 3, corpus, dev)
    assert run.max_delta(a, b) == (0.0, 0.0)
    c = run.train_once(NANO, 4, corpus, dev)
    loss_d, weight_d = run.max_delta(a, c)
    assert loss_d > 0 and weight_d > 1e-3  # a different init, different batches


def test_rng_facts_all_hold(corpus):
    facts = run.rng_facts(corpus, torch.device("cpu"))
    assert len(facts) == 5 and all(facts.values()), facts


def test_gpt2_init_scales_residual_projections():
    L = 4
    model = GPT(gpt_config("nano", n_layer=L, n_embd=128))
    std = {n: p.std().item() for n, p in model.named_parameters() if p.dim() == 2}
    for name, s in std.items():
        want = 0.02 / math.sqrt(2 * L) if name.endswith(("attn.proj.weight", "mlp.proj.weight")) else 0.02
        assert s == pytest.approx(want, rel=0.1), name


def test_variance_of_a_sum_and_fan_in_scaling():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 256, generator=g)
    w = torch.randn(256, 256, generator=g) / math.sqrt(256)  # std 1/sqrt(fan_in)
    assert (x @ w).var().item() == pytest.approx(1.0, rel=0.05)  # variance kept
    assert (x @ (w * math.sqrt(256))).var().item() == pytest.approx(256, rel=0.05)  # unscaled: grows by fan_in
    # 2L residual branches, each with variance 1/(2L), add up to variance 1
    L = 6
    branches = torch.randn(2 * L, 100_000, generator=g) / math.sqrt(2 * L)
    assert branches.sum(0).var().item() == pytest.approx(1.0, rel=0.05)


def test_layer_norm_tables():
    dtype_rows, eps_rows = run.layer_norm_tables(run.Config(ln_dim=64), seed=0)
    err = {r["input dtype"]: r["max abs err vs float64 LN of the rounded input"] for r in dtype_rows}
    assert err["float32"] < 1e-5 and err["float32"] < err["float16"] < err["bfloat16"] < 0.05
    assert all(r["output dtype"] == r["input dtype"] for r in dtype_rows)
    for r in eps_rows:
        if r["row std"] == 0 and r["eps"] == 0:
            assert r["NaN count"] == 64  # 0 / 0: the reason eps exists
        else:
            assert r["NaN count"] == 0
            assert r["output std"] == pytest.approx(r["predicted std / sqrt(std^2 + eps)"], rel=1e-3, abs=1e-6)


def test_layer_norm_module_matches_reference_and_normalises():
    x = 5 + 3 * torch.randn(8, 32, dtype=torch.float64)
    ln = LayerNorm(32).double()
    y = ln(x)
    assert torch.allclose(y, layer_norm_reference(x), atol=1e-12)
    assert torch.allclose(y.mean(-1), torch.zeros(8, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(y.var(-1, unbiased=False), torch.full((8,), 1.0, dtype=torch.float64), atol=1e-5)


def test_quick_run(tmp_path, corpus):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["identical"] == "yes" and m["max_loss_delta"] == 0.0
    assert 0 < m["val_loss_rel_std"] < 0.1 and m["tokens_per_s_mean"] > 0
    text = (tmp_path / "deliverable.md").read_text()
    assert "Determinism checklist" in text and "NO" not in text.split("Determinism checklist")[1].split("##")[0]
    assert (tmp_path / "plots" / "day06_val_loss_seeds.png").is_file()
    assert not torch.are_deterministic_algorithms_enabled()  # the run restored the global switch
