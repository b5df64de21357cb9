"""Day 34: the cache-size arithmetic in closed form, the decode loops' exactness, and a quick end-to-end run."""

import pytest
import torch

from common.nn.kv_cache import KVCache, kv_bytes, kv_bytes_per_token
from common.nn.model import GPT, gpt_config
from common.nn.speculative import greedy_accept, greedy_decode, speculative_decode
from common.run import runner
from days.day34 import run

GIB, KIB = 2**30, 2**10


def test_cache_bytes_of_published_shapes_in_bf16():
    per = {name: kv_bytes_per_token(c, 2) for name, c in run.SHAPES.items()}
    assert per["Llama-2-7B (MHA)"] == 512 * KIB and per["Llama-2-7B (MHA)"] * 4096 == 2 * GIB
    gqa = per["Llama-2/3-70B (GQA, 8 KV heads)"]
    assert gqa == 320 * KIB and gqa * 32768 == 10 * GIB
    assert per["70B shape as MHA (64 KV heads)"] == 8 * gqa  # 64 / 8 KV heads
    assert per["70B shape as MQA (1 KV head)"] == 40 * KIB
    assert per["DeepSeek-V2 (MLA, 60 layers)"] == 60 * (512 + 64) * 2 == 69120  # 4.5 heads' worth of 128 per layer
    assert per["70B shape with MLA (512 + 64)"] == 90 * KIB
    for c in run.SHAPES.values():  # the MHA twin: a key and a value of every query head
        assert kv_bytes_per_token(run.as_mha(c), 2) == 2 * c.n_layer * c.n_embd * 2


@pytest.mark.parametrize("kw", [{}, {"n_kv_head": 1}, {"attn": "mla", "kv_lora_rank": 6, "rope_head_dim": 4}])
def test_bytes_per_token_is_what_a_real_cache_holds(kw):
    cfg = gpt_config("nano", pos="rope", n_layer=3, n_head=4, **kw)
    cache = KVCache.for_model(GPT(cfg), batch=1, max_len=10)
    assert cache.nbytes() == 10 * kv_bytes_per_token(cfg, 4)
    if "attn" not in kw:
        assert kv_bytes_per_token(cfg, 2) == kv_bytes(3, 1, kw.get("n_kv_head", 4), 1, 8, 2)


def test_expected_tokens_per_pass_is_a_geometric_sum():
    assert run.expected_tokens(0.0, 4) == 1.0 and run.expected_tokens(1.0, 4) == 5.0
    for a in (0.3, 0.7, 0.9):
        assert run.expected_tokens(a, 3) == pytest.approx(sum(a**i for i in range(4)))


def test_greedy_accept_counts_the_matching_prefix():
    assert greedy_accept(torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 2, 9, 4, 0]])) == 2
    assert greedy_accept(torch.tensor([[1, 2], [1, 2]]), torch.tensor([[1, 2, 0], [0, 2, 0]])) == 0


def test_speculative_decoding_reproduces_the_targets_greedy_tokens():
    torch.manual_seed(0)
    target = GPT(gpt_config("nano", pos="rope", n_layer=2)).eval()
    draft = GPT(gpt_config("nano", pos="rope", n_layer=1, n_embd=16, n_head=1)).eval()
    idx = torch.randint(0, 65, (2, 5), generator=torch.Generator().manual_seed(1))
    ref = greedy_decode(target, idx, 16, None)  # the recompute reference
    assert torch.equal(greedy_decode(target, idx, 16, KVCache.for_model(target, 2, 21)), ref)
    for k in (1, 3, 6):
        out, st = speculative_decode(target, draft, idx, 16, k)
        assert torch.equal(out, ref) and st.target_calls == 16 - st.accepted
    out, st = speculative_decode(target, target, idx, 16, 3)  # a draft that is the target: every guess accepted
    assert torch.equal(out, ref) and st.acceptance_rate == 1.0


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["spec_equals_greedy"] is True and m["cached_equals_recompute"] is True
    assert m["kv_kib_per_token_7b"] == 512 and m["kv_reduction_70b_gqa"] == 8 and m["kv_speedup_context"] == 32
    assert 0 <= m["spec_acceptance_k1"] <= 1 and 0 <= m["agreement"] <= 1
    assert m["kv_speedup"] >= 0  # a clock ratio: on a loaded machine a nano-size run can round it to 0.0
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {
        "day34_decode_tps_vs_batch.png", "day34_kv_speedup_vs_context.png", "day34_speculative_speedup.png"}
