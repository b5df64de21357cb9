"""Day 39: MLA's cache and its reduction in closed form, the MoE layer, the decision rule, and a quick run."""

import math

import pytest
import torch

from common.nn.generate import generate
from common.nn.kv_cache import KVCache
from common.nn.layers import MLP, MoE
from common.nn.model import GPT, gpt_config
from common.run import runner
from days.day39 import run


def cfg_of(name, **kw):
    c = run.Config(n_layer=2, n_head=8, n_embd=64, block_size=32, mla_rank=24, mla_rope_dim=4, kv_groups=2, **kw)
    return gpt_config("nano", n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size,
                      pos="rope", **run.variant_overrides(name, c))


def test_kv_reduction_closed_forms():
    base = cfg_of("mha")
    hs = 64 // 8
    assert run.kv_reduction(base, cfg_of("mla")) == pytest.approx(2 * 8 * hs / (24 + 4))  # 2 n_h d_h / (d_c + d_R)
    assert run.kv_reduction(base, cfg_of("gqa")) == pytest.approx(8 / 2)                  # n_h / n_kv
    assert run.kv_reduction(base, cfg_of("mqa")) == pytest.approx(8)
    assert run.kv_reduction(base, cfg_of("moe")) == 1 and run.kv_reduction(base, cfg_of("sliding")) == 1
    assert math.isinf(run.kv_reduction(base, gpt_config("nano", attn="linear")))


def test_mla_caches_the_latent_and_decodes_like_recomputing():
    torch.manual_seed(0)
    model = GPT(cfg_of("mla"))
    cache = KVCache.for_model(model, 2, 20)
    prompt = torch.randint(0, 65, (2, 5))
    out = generate(model, prompt, 15, temperature=0, cache=cache)
    assert torch.equal(out, generate(model, prompt, 15, temperature=0, use_cache=False))
    assert cache.k.shape[2:] == (1, 20, 24 + 4) and cache.v.shape[-1] == 0  # one latent "head", no values


def test_moe_one_expert_is_dense_and_gates_pick_top_k():
    torch.manual_seed(0)
    moe, mlp = MoE(16, 32, n_expert=1, top_k=1), MLP(16, 32)
    mlp.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(moe(x), mlp(x))
    moe4 = MoE(16, 32, n_expert=4, top_k=2)
    with torch.no_grad():  # a router that always prefers experts 3 then 1: the output uses those two only
        moe4.router.weight.zero_()
        moe4.router.weight[3] = 1e-3
        moe4.router.weight[1] = 5e-4
    xs = torch.rand(5, 16) + 0.1  # positive inputs, so the router's order is the same for every token
    p = torch.softmax(moe4.router(xs), -1)
    g3, g1 = p[:, 3] / (p[:, 3] + p[:, 1]), p[:, 1] / (p[:, 3] + p[:, 1])
    expect = g3[:, None] * moe4.experts[3](xs) + g1[:, None] * moe4.experts[1](xs)
    torch.testing.assert_close(moe4(xs), expect, atol=1e-6, rtol=1e-5)
    assert moe4.last_load.tolist() == [0.0, 0.5, 0.0, 0.5]


def test_choose_follows_its_rule():
    rows = [dict(variant="mha", val_loss=2.00, kv_bytes_per_token=512, hit=0.9),
            dict(variant="mqa", val_loss=2.03, kv_bytes_per_token=64, hit=0.85),    # 1.5% worse: keeps quality
            dict(variant="mla", val_loss=1.995, kv_bytes_per_token=112, hit=0.9),
            dict(variant="sliding", val_loss=1.99, kv_bytes_per_token=512, hit=0.1),  # best loss, loses retrieval
            dict(variant="gqa", val_loss=2.10, kv_bytes_per_token=128, hit=0.9),    # 5% worse: does not
            dict(variant="moe", val_loss=1.90, kv_bytes_per_token=512, hit=0.9)]    # 5% better: adopted
    d = run.choose(rows, tol=0.02, hit_tol=0.1)
    assert d["keeps"] == ["mha", "mqa", "mla", "moe"]
    assert d["default"] == "mla" and d["inference"] == "mqa" and d["moe"] == "adopt"
    rows[-1]["val_loss"] = 1.99  # a 0.5% gain is inside the tolerance: keep the dense MLP as default
    assert run.choose(rows, tol=0.02, hit_tol=0.1)["moe"] == "option"
    for r in rows:
        r["hit"] = None  # retention not measured: the rule falls back to the loss alone
    assert run.choose(rows, tol=0.02, hit_tol=0.1)["default"] == "sliding"


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["mla_kv_bytes_reduction"] == pytest.approx(2 * 4 * 8 / (8 + 4), rel=1e-3)  # nano: 4 heads of 8
    assert m["mla_val_loss_gap"] == pytest.approx((m["val_mla"] - m["val_mha"]) / m["val_mha"], abs=2e-4)
    assert m["kv_bytes_gqa"] * 2 == m["kv_bytes_mha"] and m["kv_bytes_mqa"] * 4 == m["kv_bytes_mha"]
    assert m["chosen_default"] in run.Config.variants.split(",") and m["chosen_inference"] in run.Config.variants
    assert all(2.0 < m[f"val_{v}"] < math.log(65) + 0.5 for v in run.Config.variants.split(","))
    assert 0 < m["moe_load_max"] <= 1
    assert all(0 <= m[f"hit_{v}"] <= 1 for v in run.Config.variants.split(",") if v != "moe")  # retention measured
    assert "hit_moe" not in m  # the MoE's attention is MHA's: not scored again
    assert m["moe_verdict"] in ("adopt", "option", "drop")
