"""Day 4: the KV cache is an optimisation, so it must never change what the model generates."""

import pytest
import torch

from common.nn.generate import generate
from common.nn.kv_cache import KVCache, PagedKVCache, PagedKVStore, kv_bytes
from common.nn.model import GPT, gpt_config
from common.run import runner
from days.day04 import run


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(gpt_config("nano", pos="rope", block_size=32)).eval()


def test_cache_grows_one_position_per_step(model):
    cache = KVCache.for_model(model, batch=2, max_len=20)
    prompt = torch.randint(0, 65, (2, 6))
    generate(model, prompt, 5, temperature=0, cache=cache)
    assert cache.lengths == [10] * model.cfg.n_layer  # prompt + 4 fed-back tokens (the 5th is never fed)


def test_paged_equals_contiguous_for_ragged_lengths(model):
    store = PagedKVStore().allocate(model.cfg.n_layer, model.cfg.n_head, 16, max_tokens=256, block_size=4)
    for seq, L in enumerate([3, 9, 17]):
        prompt = torch.randint(0, 65, (1, L))
        a = generate(model, prompt, 8, temperature=0, cache=PagedKVCache(store, [seq]))
        assert torch.equal(a, generate(model, prompt, 8, temperature=0, use_cache=False))
    # each sequence holds ceil((L + 7) / 4) blocks: memory follows the actual lengths
    assert store.used_blocks == sum(-(-(L + 7) // 4) for L in [3, 9, 17])


def test_get_view_is_the_appended_data_across_block_edges():
    st = PagedKVStore().allocate(n_layer=2, heads=3, head_dim=4, max_tokens=64, block_size=5)
    k, v = torch.randn(3, 13, 4), torch.randn(3, 13, 4)
    for a, b in [(0, 4), (4, 5), (5, 13)]:  # chunks straddle block boundaries
        st.append(7, 1, k[:, a:b], v[:, a:b])
    kk, vv = st.get_view(7, 1, 2, 11)
    assert torch.equal(kk, k[:, 2:11]) and torch.equal(vv, v[:, 2:11])
    assert st.lengths[7] == [0, 13]


def test_kv_memory_formula_against_counted_bytes():
    c = KVCache(n_layer=3, batch=2, n_kv_head=4, max_len=10, head_dim=8, dtype=torch.bfloat16)
    assert c.nbytes() == kv_bytes(3, 2, 4, 10, 8, 2) == 2 * 3 * 2 * 4 * 10 * 8 * 2
    # Llama-2-13B shape at 4096 tokens in fp16: 3.125 GiB
    assert kv_bytes(40, 1, 40, 4096, 128, 2) / 2**30 == pytest.approx(3.125)


def test_crossing_interpolates_in_log_space():
    assert run.crossing([100, 1000], [5.0, 15.0], 10.0) == 316  # geometric midpoint
    assert run.crossing([1, 2], [1.0, 2.0], 10.0) is None
    assert run.crossing([4, 8], [12.0, 20.0], 10.0) == 4


def test_quick_run_end_to_end(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["paged_equal"] is True and m["lru_ok"] is True and m["kv_speedup"] > 0
    assert (tmp_path / "plots" / "day04_kv_speedup_vs_context.png").is_file()
    text = (tmp_path / "deliverable.md").read_text()
    assert "2.00 GiB" in text  # 7B shape, 4096 tokens, bf16, batch 1
