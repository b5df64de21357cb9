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
