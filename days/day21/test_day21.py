"""Day 21: the Zipf fit against a closed form, the statistics row, ByteBPE on real text, and the end-to-end run."""


import numpy as np
import pytest

from common import data
from common.data.tokenizers import ByteBPE
from common.run import runner
from conftest import need_data
from days.day21 import run
from days.day21.run import stats, zipf_fit


@pytest.mark.parametrize("s", [0.8, 1.0, 1.7])
def test_zipf_fit_recovers_an_exact_power_law(s):
    counts = 1e6 * np.arange(1, 2001, dtype=float) ** -s
    est, r, f = zipf_fit(np.random.default_rng(0).permutation(counts))  # order must not matter
    assert est == pytest.approx(s, abs=1e-9)
    assert r[0] == 1 and f[0] == counts.max() and np.all(np.diff(f) <= 0)


def test_zipf_fit_of_a_flat_distribution_is_zero():
    assert zipf_fit([5] * 100)[0] == pytest.approx(0.0, abs=1e-12)


def test_stats_row_by_hand():
    lines = [[1, 2, 0], [3], [0, 0, 4, 5, 6, 7]]       # 10 tokens, 3 of them unk id 0
    r = stats("t", "k", 8, lines, 0, heldout_bytes=25, secs=0.5, train_bytes=2e6)
    assert r["bytes/token"] == 2.5 and r["unk rate"] == pytest.approx(0.3)
    assert r["mean tok/line"] == pytest.approx(10 / 3)
    assert r["p95 tok/line"] == pytest.approx(np.percentile([3, 1, 6], 95))
    assert stats("t", "k", 8, lines, None, 25, 0.5, 2e6)["unk rate"] == 0.0


def test_bytebpe_worked_example_by_hand():
    """The classic "aaabdaaabac": the merges, their order, tie-breaking and the encoding, all worked out by hand."""
    from common.data.tokenizers import _merge

    assert _merge([97, 97, 97, 98], (97, 97), 256) == [256, 97, 98]    # non-overlapping, left to right
    assert _merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    bpe = ByteBPE.train("aaabdaaabac", vocab_size=259)
    assert bpe.merges == [(97, 97), (97, 98), (256, 257)]                # ties go to the smallest pair of ids
    assert bpe.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert bpe.decode([258, 99]) == "aaabc" and bpe.decode(bpe.encode("héllo 🙂")) == "héllo 🙂"
    assert ByteBPE.train("ab ab ab", 300).encode("ab ab") == [256, 257]  # chunks "ab" + " ab"; merges stay inside

def test_bytebpe_compresses_held_out_shakespeare_and_round_trips():
    need_data("tinyshakespeare")
    text = data.load_text("tinyshakespeare")
    bpe = ByteBPE.train(text[:100_000], 400)
    held = text[-20_000:]
    ids = bpe.encode(held)
    assert bpe.decode(ids) == held
    assert len(held.encode()) / len(ids) > 1.5          # 144 merges: ~1.6 bytes/token on unseen text (vs 1.0)


def test_quick_run(tmp_path):
    for n, f in run.CORPORA + [("wikitext2", "valid.txt")]:
        need_data(n, f)
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["bytebpe_roundtrip"] is True and m["bytebpe_256_bytes_per_token"] == 1.0
    assert m["bytebpe_300_bytes_per_token"] > 1.2 and m["bytebpe_300_unk_rate"] == 0.0
    assert m["sp_bpe_400_bytes_per_token"] > m["bytebpe_300_bytes_per_token"]
    assert 0 <= m["sp_unigram_400_unk_rate"] < 0.01 and m["sp_bpe_400_vocab"] == 400
    assert (tmp_path / "deliverable.md").is_file() and "Zipf" in (tmp_path / "deliverable.md").read_text()
    for what in ("zipf", "bytes_per_token"):
        assert (tmp_path / "plots" / f"day21_{what}.png").is_file()
    assert (tmp_path / ".cache" / "day21" / "sp_unigram_400.model").is_file()
