"""Day 32: the KV-cache memory model per group count, and GQA as MHA with repeated K/V heads."""

import dataclasses

import pytest
import torch

from common.nn.attention import MultiHeadAttention, copy_from_torch_mha
from common.nn.kv_cache import KVCache, kv_bytes, kv_bytes_per_token, kv_cache_bytes
from common.nn.model import GPT, gpt_config
from common.run import runner
from days.day32 import run


@pytest.mark.parametrize("n_kv", [4, 2, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_memory_model_matches_a_cache_filled_by_a_prefill(n_kv, dtype):
    cfg = gpt_config("nano", n_layer=3, n_head=4, n_embd=32, n_kv_head=n_kv, pos="rope")
    torch.manual_seed(0)
    model = GPT(cfg).to(dtype).eval()
    B, T = 2, 48  # past block_size: RoPE has no position table
    cache = KVCache.for_model(model, B, T)
    with torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (B, T)), kv_cache=cache)
    b = torch.finfo(dtype).bits // 8
    assert cache.seq_len == T and cache.k.shape == (cfg.n_layer, B, n_kv, T, 8)
    assert cache.nbytes() == kv_cache_bytes(cfg, T, B, b) == kv_bytes(cfg.n_layer, B, n_kv, T, 8, b)
    assert kv_bytes_per_token(cfg, b) == 2 * cfg.n_layer * n_kv * 8 * b  # 2 (K and V) x layers x heads x hs x bytes


def test_kv_bytes_fall_in_proportion_to_kv_heads():
    mha = gpt_config("nano", n_head=8, n_embd=64)
    for g in run.kv_counts(8, 2):
        gqa = dataclasses.replace(mha, n_kv_head=g)
        assert kv_cache_bytes(mha, 2048) == (8 // g) * kv_cache_bytes(gqa, 2048)
    assert run.kv_counts(8, 2) == [8, 4, 2, 1] and run.kv_counts(6, 3) == [6, 3, 1] and run.kv_counts(4, 4) == [4, 2, 1]


def test_toggle_names_the_attention():
    names = [run.attention_kind(gpt_config("nano", n_head=8, n_embd=64, n_kv_head=g)) for g in (None, 8, 4, 2, 1)]
    assert names == ["MHA", "MHA", "GQA-4", "GQA-2", "MQA"]


def test_gqa_with_n_kv_head_equal_n_head_is_mha_bit_for_bit():
    x = torch.randint(0, 65, (2, 16))
    outs = []
    for n_kv in (None, 4):
        torch.manual_seed(0)
        model = GPT(gpt_config("nano", n_head=4, n_kv_head=n_kv)).eval()
        with torch.no_grad():
            outs.append((model(x)[0], model.state_dict()))
    assert torch.equal(outs[0][0], outs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(outs[0][1].values(), outs[1][1].values()))


def test_one_layer_with_n_kv_head_equal_n_head_is_torch_mha():
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True, bias=True)
    ours = copy_from_torch_mha(MultiHeadAttention(32, 4, n_kv_head=4, bias=True), ref)
    x = torch.randn(2, 6, 32)
    mask = torch.ones(6, 6, dtype=torch.bool).triu(1)  # torch: True = blocked
    torch.testing.assert_close(ours(x), ref(x, x, x, attn_mask=mask, need_weights=False)[0], rtol=1e-5, atol=1e-6)


def test_repeat_kv_heads_copies_each_head_for_its_group():
    w = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2 * 3, 5)  # 2 K/V heads of 3 rows, width 5
    out = run.repeat_kv_heads(w, 2, 2)
    assert out.shape == (12, 5)
    assert torch.equal(out, torch.cat([w[:3], w[:3], w[3:], w[3:]]))  # head h of the result is old head h // 2
    b = torch.arange(6.0)
    assert torch.equal(run.repeat_kv_heads(b, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5.0]))
    assert torch.equal(run.repeat_kv_heads(w, 2, 1), w)


@pytest.mark.parametrize("n_kv,bias", [(2, False), (1, True), (4, False)])
def test_gqa_equals_mha_with_its_kv_heads_repeated(n_kv, bias):
    cfg = gpt_config("nano", n_head=4, n_kv_head=n_kv, bias=bias, pos="rope")
    torch.manual_seed(0)
    gqa = GPT(cfg).eval()
    mha = run.as_mha(gqa)
    assert mha.cfg.n_kv_head is None and mha.num_params() == GPT(dataclasses.replace(cfg, n_kv_head=None)).num_params()
    x = torch.randint(0, cfg.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(mha(x)[0], gqa(x)[0], rtol=1e-5, atol=1e-5)
        caches = [KVCache.for_model(m, 2, 20) for m in (gqa, mha)]
        for m, c in zip((gqa, mha), caches):
            m(x, kv_cache=c)
    assert caches[1].nbytes() == (4 // n_kv) * caches[0].nbytes()  # same function, a bigger cache


def test_memory_sweep_rows(monkeypatch):
    monkeypatch.setattr(run, "release_freed_memory", lambda: False)  # keep glibc's setting out of the test process
    base = {k: v for k, v in dataclasses.asdict(gpt_config("nano", pos="rope")).items() if k != "n_kv_head"}
    out = run.measure_kv_memory(base, [2, 1], [16, 32], 2, "cpu", 0)  # in this process: the rows, not the numbers
    assert [(r["n_kv_head"], r["seq"]) for r in out["rows"]] == [(2, 16), (2, 32), (1, 16), (1, 32)]
    assert [r["cache_bytes"] for r in out["rows"]] == [kv_bytes(2, 2, g, T, 16, 4) for g in (2, 1) for T in (16, 32)]


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["kv_bytes_reduction"] == 2 and m["kv_model_exact"] is True  # nano: 4 query heads, n_kv_head 2
    assert m["gqa_equals_mha"] is True and m["gqa_equals_repeated_mha"] is True
    assert set(m) >= {"val_loss_kv4", "val_loss_kv2", "val_loss_kv1"} and 0 < m["val_loss_kv1"] < 4.2
    assert (tmp_path / "plots" / "day32_kv_bytes.png").is_file()
