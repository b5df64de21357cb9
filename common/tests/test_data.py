import hashlib

import pytest

from common import data
from common.data import DataError, DataFile


def test_registry_covers_the_manifest():
    assert set(data.DATASETS) == {"tinyshakespeare", "wikitext2", "mnist", "tinystories"}
    for files in data.DATASETS.values():
        for f in files.values():
            assert len(f.sha256) == 64 and f.size > 0 and f.url.startswith("https://")


@pytest.mark.parametrize("name,file", [(n, f) for n, fs in data.DATASETS.items() for f in fs])
def test_shared_files_verify(require_data, name, file):
    require_data(name, file)
    p = data.data_path(name, file, allow_download=False)
    assert p.stat().st_size == data.DATASETS[name][file].size


def test_data_dir_is_a_search_path(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    (b / "wikitext2").mkdir(parents=True)
    monkeypatch.setenv("DATA_DIR", f"{a}:{b}")
    assert data.data_dirs() == [a, b]
    monkeypatch.delenv("DATA_DIR")
    assert data.data_dirs()[0].name == "data"


def test_missing_file_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OFFLINE", "1")
    with pytest.raises(DataError, match=r"tinyshakespeare.txt was not found in DATA_DIR .*download it from https://"):
        data.data_path("tinyshakespeare")


def test_unknown_dataset_and_file():
    with pytest.raises(DataError, match="known datasets"):
        data.data_path("imagenet")
    with pytest.raises(DataError, match="its files"):
        data.data_path("wikitext2", "dev.txt")
    with pytest.raises(DataError, match="several files"):
        data.data_path("wikitext2")


def test_corrupt_file_is_rejected(tmp_path, monkeypatch):
    entry = data.DATASETS["tinyshakespeare"]["tinyshakespeare.txt"]
    (tmp_path / entry.path).write_bytes(b"x" * entry.size)  # right size, wrong bytes
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="sha256"):
        data.data_path("tinyshakespeare", allow_download=False)
    (tmp_path / entry.path).write_bytes(b"short")
    with pytest.raises(DataError, match="expected 1,115,394"):
        data.data_path("tinyshakespeare", allow_download=False)


def test_download_verifies_and_truncates(tmp_path, monkeypatch):
    """A file:// URL stands in for the network: the download path, truncation and checksum run for real."""
    payload = b"hello world, " * 100
    src = tmp_path / "src.txt"
    src.write_bytes(payload + b"UNFINISHED TAIL")
    keep = payload
    sha = hashlib.sha256(keep).hexdigest()
    entry = DataFile("toy/t.txt", sha, len(keep), src.as_uri(), truncate=True)
    dest = tmp_path / "dl" / entry.path
    data.download(entry, dest)
    assert dest.read_bytes() == keep
    bad = DataFile("toy/u.txt", "0" * 64, len(keep), src.as_uri(), truncate=True)
    with pytest.raises(DataError, match="sha256"):
        data.download(bad, tmp_path / "dl" / bad.path)
    assert not (tmp_path / "dl" / bad.path).exists()  # nothing half-verified is left behind


def test_shards_round_trip_and_refuse_overflow(tmp_path):
    import numpy as np

    tokens = np.arange(10_000) % 5000
    meta = data.write_shards(tokens, tmp_path / "s", shard_tokens=3000)
    assert meta["sizes"] == [3000, 3000, 3000, 1000] and meta["total"] == 10_000
    st = data.ShardedTokens(tmp_path / "s")
    assert np.array_equal(np.concatenate([np.asarray(s) for s in st.shards]), tokens) and len(st) == 10_000
    with pytest.raises(DataError, match="does not fit in uint16"):
        data.write_shards(np.array([70_000]), tmp_path / "t")
    with pytest.raises(DataError, match="no meta.json"):
        data.ShardedTokens(tmp_path / "missing")


def test_streaming_loader_windows_determinism_and_resume(tmp_path):
    import numpy as np
    import torch

    data.write_shards(np.arange(20_000) % 60_000, tmp_path / "s", shard_tokens=4096)
    st = data.ShardedTokens(tmp_path / "s")
    a, b = data.StreamingLoader(st, 32, 8, seed=3), data.StreamingLoader(st, 32, 8, seed=3)
    for _ in range(5):
        (xa, ya), (xb, yb) = a.sample(), b.sample()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(ya, xa + 1)  # a window never straddles a shard (ids are consecutive inside one)
    state = a.state_dict()
    nxt = a.sample()
    c = data.StreamingLoader(st, 32, 8, seed=99)
    c.load_state_dict(state)
    assert torch.equal(c.sample()[0], nxt[0]) and c.batches_served == 6
    other = data.StreamingLoader(st, 32, 8, seed=4).sample()[0]
    assert not torch.equal(other, data.StreamingLoader(st, 32, 8, seed=3).sample()[0])
    starts = torch.cat([a.sample()[0][:, 0] for _ in range(50)])
    assert len({int(s) // 4096 for s in starts}) == 5  # every shard is visited
    f1, f2 = a.fixed(2), a.fixed(2)
    assert torch.equal(f1[1][0], f2[1][0])
