"""Decode loops over a rewindable cache: greedy decoding and speculative decoding must give the target's tokens."""

import pytest
import torch

from common.nn.generate import generate
from common.nn.kv_cache import KVCache, PagedKVCache, PagedKVStore
from common.nn.model import GPT, gpt_config
from common.nn.speculative import SpecStats, feed, greedy_accept, greedy_decode, rewind, speculative_decode


def make(seed, **kw):
    torch.manual_seed(seed)
    return GPT(gpt_config("nano", pos="rope", **kw)).eval()


@pytest.fixture(scope="module")
def target():
    return make(0, n_layer=2, n_embd=32)


@pytest.fixture(scope="module")
def draft():
    return make(1, n_layer=1, n_embd=16, n_head=1)


def test_greedy_decode_cached_equals_recompute_and_generate(target):
    idx = torch.randint(0, 65, (3, 7), generator=torch.Generator().manual_seed(0))
    cached = greedy_decode(target, idx, 12, KVCache.for_model(target, 3, 19))
    assert torch.equal(cached, greedy_decode(target, idx, 12, None))
    assert torch.equal(cached, generate(target, idx, 12, temperature=0))
    assert cached.shape == (3, 19) and torch.equal(cached[:, :7], idx)


def test_the_cache_holds_every_token_but_the_last(target):
    idx = torch.randint(0, 65, (2, 5))
    cache = KVCache.for_model(target, 2, 16)
    out = greedy_decode(target, idx, 4, cache)
    assert cache.lengths == [out.shape[1] - 1] * target.cfg.n_layer  # the newest token is still pending
    rewind(cache, 4)  # back to the prompt minus its last token: decoding again repeats itself exactly
    assert torch.equal(greedy_decode(target, idx, 4, cache), out)


def test_feed_runs_only_what_the_cache_lacks(target):
    idx = torch.randint(0, 65, (1, 9))
    cache = KVCache.for_model(target, 1, 9)
    assert feed(target, idx[:, :6], cache).shape == (1, 6, 65)
    logits = feed(target, idx, cache)  # the three new positions only
    assert logits.shape == (1, 3, 65)
    torch.testing.assert_close(logits, target(idx)[0][:, 6:], rtol=1e-5, atol=1e-5)


def test_rewind_checks_its_argument():
    c = KVCache(2, 1, 1, 8, 2)
    c.update(0, torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2))
    c.update(1, torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2))
    rewind(c, 3)
    assert c.lengths == [3, 3]
    with pytest.raises(ValueError):
        rewind(c, 4)
    with pytest.raises(TypeError):
        rewind(PagedKVCache(PagedKVStore().allocate(1, 1, 2, max_tokens=8, block_size=4), [0]), 0)


def test_greedy_accept_keeps_the_agreeing_prefix_of_every_row():
    d = torch.tensor([[5, 7, 9], [5, 7, 9]])
    assert greedy_accept(d[:1], torch.tensor([[5, 7, 9, 1]])) == 3  # all three, then a bonus token
    assert greedy_accept(d[:1], torch.tensor([[4, 7, 9, 1]])) == 0  # a match after a miss does not count
    assert greedy_accept(d, torch.tensor([[5, 7, 9, 1], [5, 3, 9, 1]])) == 1  # the batch keeps the fewest
    assert greedy_accept(d[:, :0], torch.tensor([[2], [2]])) == 0


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 8])
def test_speculative_output_is_the_targets_greedy_output(target, draft, k):
    idx = torch.randint(0, 65, (2, 6), generator=torch.Generator().manual_seed(k))
    out, st = speculative_decode(target, draft, idx, 20, k)
    assert torch.equal(out, greedy_decode(target, idx, 20, None))
    assert st.new_tokens == 20 and st.accepted <= st.drafted <= k * st.target_calls
    assert st.target_calls == st.new_tokens - st.accepted  # each pass adds its accepted tokens plus one


def test_a_perfect_draft_is_always_accepted(target):
    """The target as its own draft: every guess is right, so each pass yields k + 1 tokens."""
    idx = torch.randint(0, 65, (1, 4))
    out, st = speculative_decode(target, target, idx, 24, k=3)
    assert torch.equal(out, greedy_decode(target, idx, 24, None))
    assert st.acceptance_rate == 1.0 and st.target_calls == 6 and st.tokens_per_call == 4.0


def test_spec_stats_rates():
    s = SpecStats(target_calls=4, drafted=12, accepted=6, new_tokens=10)
    assert s.acceptance_rate == 0.5 and s.tokens_per_call == 2.5
    assert SpecStats().acceptance_rate != SpecStats().acceptance_rate  # NaN before anything was drafted
