"""Day 24: every shape's parameter count is exact, FLOPs match the counter, YAMLs round-trip."""

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from common.nn.model import GPT, GPTConfig, count_params_formula, flops_per_token
from common.run import runner
from days.day24 import run


@pytest.mark.parametrize("name", [n for n in run.SHAPES if not n.startswith("pretrain_4")])
def test_formula_equals_counted(name):
    c = run.SHAPES[name]
    assert GPT(c).num_params() == count_params_formula(c)


def test_flops_grow_with_context_only_through_attention():
    c = run.SHAPES["baby"]
    assert flops_per_token(c, 128) - flops_per_token(c, 64) == 3 * 4 * c.n_layer * 64 * c.n_embd


@pytest.mark.parametrize("over", [dict(), dict(n_head=4, n_kv_head=2, mlp="swiglu", norm="rms", pos="rope"),
                                  dict(bias=True, tie_weights=False)])
def test_flops_per_token_equals_torchs_flop_counter(over):
    """The closed form against PyTorch's own count of the forward matmuls, at the full and a shorter context."""
    c = GPTConfig(**{**dict(vocab_size=50, block_size=24, n_layer=2, n_head=2, n_embd=32, attn_backend="manual"),
                     **over})
    model = GPT(c).eval()
    for T in (24, 10):
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(torch.randint(0, c.vocab_size, (3, T)))
        assert flops_per_token(c, T, training=False) == fc.get_total_flops() / (3 * T), T
        assert flops_per_token(c, T) == 3 * flops_per_token(c, T, training=False)

def test_gqa_shrinks_kv_and_params():
    mha, gqa = run.SHAPES["pretrain_42m"], GPTConfig(**{**run.SHAPES["pretrain_42m"].__dict__, "n_kv_head": 2})
    assert count_params_formula(gqa) < count_params_formula(mha)
    assert count_params_formula(mha) - count_params_formula(gqa) == mha.n_layer * 2 * mha.n_embd * (8 - 2) * 64


def test_yaml_round_trip(tmp_path):
    c = run.SHAPES["pretrain_48m_llama"]
    p = tmp_path / "c.yaml"
    p.write_text(OmegaConf.to_yaml(OmegaConf.structured(c)))
    assert OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(GPTConfig), OmegaConf.load(p))) == c


def test_quick_run_end_to_end(tmp_path):
    s = runner.quick(run, tmp_path)
    assert s["metrics"]["all_params_match"] is True and s["metrics"]["yaml_round_trip"] is True
    assert sorted(p.name for p in (tmp_path / "configs").glob("*.yaml")) == ["baby.yaml", "day07_default.yaml",
                                                                              "nano.yaml"]
