import pytest
import torch

from common.nn.generate import filter_logits, generate, sample_next
from common.nn.kv_cache import KVCache, PagedKVCache, PagedKVStore, kv_bytes
from common.nn.model import GPT, gpt_config


@pytest.fixture(scope="module", params=["learned", "rope", "alibi"])
def model(request):
    torch.manual_seed(0)
    return GPT(gpt_config("nano", pos=request.param, block_size=64))


def test_cached_decoding_equals_recompute(model):
    idx = torch.randint(0, 65, (3, 5))
    greedy_cached = generate(model, idx, 20, temperature=0)
    greedy_full = generate(model, idx, 20, temperature=0, use_cache=False)
    assert torch.equal(greedy_cached, greedy_full)
    a = generate(model, idx, 20, top_k=10, generator=torch.Generator().manual_seed(3))
    b = generate(model, idx, 20, top_k=10, use_cache=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (3, 25) and torch.equal(a[:, :5], idx)


def test_paged_cache_gives_the_same_tokens(model):
    idx = torch.randint(0, 65, (2, 7))
    store = PagedKVStore().allocate(2, 2, 16, max_tokens=128, block_size=4)
    paged = generate(model, idx, 15, temperature=0, cache=PagedKVCache(store, [5, 9]))
    assert torch.equal(paged, generate(model, idx, 15, temperature=0))
    assert store.used_blocks == 2 * -(-(7 + 14) // 4)  # blocks taken only as tokens arrive


def test_paged_store_views_and_lru():
    st = PagedKVStore().allocate(n_layer=1, heads=2, head_dim=3, max_tokens=16, block_size=4)
    ks = {s: torch.randn(2, 6, 3) for s in (0, 1)}
    for s in (0, 1):
        st.append(s, 0, ks[s][:, :4], -ks[s][:, :4])
        st.append(s, 0, ks[s][:, 4:], -ks[s][:, 4:])
    k, v = st.get_view(0, 0, 1, 6)
    assert torch.equal(k, ks[0][:, 1:6]) and torch.equal(v, -ks[0][:, 1:6])
    assert st.used_blocks == 4 and not st.free_blocks
    st.get_view(0, 0)            # touch 0: sequence 1 is now least recently used
    st.append(2, 0, torch.randn(2, 5, 3), torch.randn(2, 5, 3))  # needs 2 blocks, none free: evict
    assert st.evictions == 1 and 1 not in st.tables and 0 in st.tables
    with pytest.raises(KeyError):
        st.get_view(1, 0)
    with pytest.raises(IndexError):
        st.get_view(0, 0, 0, 7)


def test_contiguous_cache_overflow_is_clear():
    c = KVCache(1, 1, 1, 4, 2)
    c.update(0, torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    with pytest.raises(Exception, match="KV cache is full"):
        c.update(0, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))


def test_kv_bytes_formula():
    # a 7B-style model: 32 layers, 32 heads of 128, 4096 tokens, fp16 -> 2 GiB per sequence
    assert kv_bytes(32, 1, 32, 4096, 128, 2) == 2 * 2**30
    c = KVCache(2, 3, 4, 5, 6)
    assert c.nbytes() == kv_bytes(2, 3, 4, 5, 6, 4)


def test_sampling_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[True, False, False, True]]
    p = torch.softmax(logits, -1)[0]  # 0.087, 0.644, 0.237, 0.032
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[False, True, True, False]] and p[1] < 0.7 < p[1] + p[2]
    assert sample_next(logits, temperature=0).item() == 1
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next(logits, 1.0, top_k=1, generator=g) for _ in range(20)])
    assert (draws == 1).all()
