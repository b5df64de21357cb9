"""Tests of common/nn/model.py: shapes, parameter counts, causality, dropout, init, training."""

import itertools
import math

import pytest
import torch

from common.nn.kv_cache import KVCache
from common.nn.model import GPT, GPTConfig, count_params_formula, gpt_config


def nano(**overrides):
    torch.manual_seed(0)
    return GPT(gpt_config("nano", **overrides))


def test_logits_shape_and_loss():
    model = nano()
    idx = torch.randint(0, 65, (3, 20))
    logits, loss = model(idx)
    assert logits.shape == (3, 20, 65) and loss is None
    logits, loss = model(idx, idx)
    assert loss.shape == () and torch.isfinite(loss)


def test_param_count_formula_on_a_grid():
    grid = itertools.product([False, True], ["learned", "sinusoidal", "rope", "alibi", "none"],
                             ["layer", "rms"], ["gelu", "swiglu"], [False, True], [None, 2, 1])
    for bias, pos, norm, mlp, tie, n_kv in grid:
        cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=4, n_embd=16, bias=bias, pos=pos,
                        norm=norm, mlp=mlp, tie_weights=tie, n_kv_head=n_kv)
        model = GPT(cfg)
        assert model.num_params() == count_params_formula(cfg), cfg
        assert model.num_params(non_embedding=True) == count_params_formula(cfg, non_embedding=True)


def test_preset_param_counts_match_nanogpt():
    # nanoGPT prints params without position embeddings: 0.80M (CPU baby) and 10.65M (GPU)
    baby, big = gpt_config("baby"), gpt_config("shakespeare")
    assert round(GPT(baby).num_params(non_embedding=True) / 1e6, 2) == 0.80
    assert count_params_formula(baby, non_embedding=True) == 795_904
    assert round(count_params_formula(big, non_embedding=True) / 1e6, 2) == 10.65
    assert count_params_formula(big, non_embedding=True) == 10_646_784
    assert big.dropout == 0.2 and not big.bias and gpt_config("gpu") == big and gpt_config("cpu") == baby


def test_gpt_config_overrides_and_bad_input():
    cfg = gpt_config("nano", pos="rope", n_layer=3)
    assert cfg.pos == "rope" and cfg.n_layer == 3 and cfg.n_embd == 32
    for bad in (lambda: gpt_config("huge"), lambda: gpt_config("nano", n_layers=3),
                lambda: gpt_config("nano", pos="xpos"), lambda: gpt_config("nano", n_head=3),
                lambda: gpt_config("nano", n_kv_head=3, n_head=4), lambda: gpt_config("nano", norm="batch")):
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_future_tokens_do_not_change_past_logits(pos):
    model = nano(pos=pos).eval()
    idx = torch.randint(0, 65, (2, 16))
    idx2 = idx.clone()
    idx2[:, 9:] = (idx2[:, 9:] + 1) % 65
    a, b = model(idx)[0], model(idx2)[0]
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-6)
    assert not torch.allclose(a[:, 9:], b[:, 9:], atol=1e-4)


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_kv_cache_decode_equals_full_forward(pos):
    model = nano(pos=pos, n_head=4, n_kv_head=2).eval()
    idx = torch.randint(0, 65, (2, 12))
    full = model(idx)[0]
    cache = KVCache.for_model(model, batch=2, max_len=12)  # the real cache, GQA-sized
    steps = [model(idx[:, :5], kv_cache=cache)[0]]
    steps += [model(idx[:, t:t + 1], kv_cache=cache, start_pos=t)[0] for t in range(5, 12)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_dropout_off_in_eval_on_in_train():
    model = nano(dropout=0.5)
    idx = torch.randint(0, 65, (2, 16))
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])
    model.train()
    assert not torch.allclose(model(idx)[0], model(idx)[0])


def test_manual_backend_gives_the_same_model():
    a, b = nano(attn_backend="manual").eval(), nano().eval()
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, 65, (2, 16))
    assert torch.allclose(a(idx)[0], b(idx)[0], atol=1e-5)


def test_learned_positions_reject_long_inputs_others_extrapolate():
    with pytest.raises(ValueError, match="block_size"):
        nano()(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size"):
        nano()(torch.zeros(1, 2, dtype=torch.long), start_pos=31)
    for pos in ("rope", "alibi", "sinusoidal"):
        assert nano(pos=pos)(torch.zeros(1, 40, dtype=torch.long))[0].shape == (1, 40, 65)


def test_tied_weights_share_storage():
    tied, untied = nano(), nano(tie_weights=False)
    assert tied.lm_head.weight is tied.wte.weight
    assert tied.lm_head.weight.data_ptr() == tied.wte.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.wte.weight.data_ptr()
    assert untied.num_params() - tied.num_params() == 65 * 32


def test_init_statistics_and_initial_loss():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=512, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=True)
    model = GPT(cfg)
    std = lambda p: p.detach().std().item()  # noqa: E731
    assert abs(std(model.blocks[0].attn.qkv.weight) - 0.02) < 1e-3
    assert abs(std(model.blocks[1].mlp.proj.weight) - 0.02 / math.sqrt(8)) < 5e-4
    assert abs(std(model.wte.weight) - 0.02) < 1e-3
    biases = [m.bias for m in model.modules() if isinstance(m, torch.nn.Linear) and m.bias is not None]
    assert biases and all((b == 0).all() for b in biases)
    idx, targets = torch.randint(0, 512, (4, 64)), torch.randint(0, 512, (4, 64))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(512)) < 0.1  # near-uniform predictions at init


def test_configure_optimizer_groups():
    model = nano(bias=True)
    opt = model.configure_optimizer(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == model.num_params()
    assert any(p is model.wte.weight for p in decay["params"])  # embeddings decay, as nanoGPT


def test_overfits_one_batch():
    model = nano()
    torch.manual_seed(1)
    batch = torch.randint(0, 65, (4, 33))
    x, y = batch[:, :-1], batch[:, 1:]
    opt = model.configure_optimizer(weight_decay=0.0, lr=1e-2, device_type="cpu")
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


@pytest.mark.parametrize("overrides", [dict(), dict(n_kv_head=1), dict(mlp="swiglu"), dict(pos="rope", bias=True),
                                       dict(attn="mla", kv_lora_rank=8, rope_head_dim=8, pos="rope"),
                                       dict(attn="linear", pos="rope"), dict(window=5, n_global=2, pos="rope"),
                                       dict(n_expert=4, expert_top_k=2)])
def test_flops_per_token_equals_the_flop_counter(overrides):
    from torch.utils.flop_counter import FlopCounterMode

    from common.nn.model import flops_per_token

    cfg = gpt_config("nano", attn_backend="manual", **overrides)
    model = GPT(cfg).eval()
    T = cfg.block_size
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (2, T)))
    assert fc.get_total_flops() / (2 * T) == pytest.approx(flops_per_token(cfg, T, training=False), rel=1e-12)


def test_gpt_config_for_takes_the_shared_fields():
    from dataclasses import dataclass

    from common.nn.model import gpt_config_for

    @dataclass
    class DayCfg:
        n_layer: int = 3
        n_embd: int = 48
        lr: float = 1e-3  # not a model field: ignored

    c = gpt_config_for(DayCfg(), vocab_size=100)
    assert (c.n_layer, c.n_embd, c.vocab_size, c.n_head, c.block_size) == (3, 48, 100, 4, 64)  # rest from "baby"
