"""Dataset files: a registry of files with their sha256 and where to download them.

Lookup order for a file: every folder on the `DATA_DIR` path (colon-separated, like `PATH`;
default `data/` in the repository, which git ignores), then a download into the first folder
with a progress bar and checksum. Offline, the error says which file to put where.

    path = data_path("tinyshakespeare")            # -> Path to tinyshakespeare.txt
    text = load_text("wikitext2", "valid.txt")

The registry is facts about public files; see `../shared/data/MANIFEST.md` for their provenance.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common import ROOT
from common.run import atomic
from common.run.errors import UserError
from common.run.progress_bar import progress


class DataError(UserError):
    """A dataset file is missing or corrupt; the message says what to do."""


@dataclass(frozen=True)
class DataFile:
    """One registered file: where it goes, its checksum and size, and where to download it."""

    path: str           # relative to a DATA_DIR folder
    sha256: str
    size: int           # bytes
    url: str
    truncate: bool = False  # the URL holds a longer file; keep its first `size` bytes


_GH = "https://raw.githubusercontent.com"
_WT2 = f"{_GH}/pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/word_language_model/data/wikitext-2"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist"

DATASETS: dict[str, dict[str, DataFile]] = {
    "tinyshakespeare": {
        "tinyshakespeare.txt": DataFile(
            "tinyshakespeare.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1_115_394,
            f"{_GH}/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt"),
    },
    "wikitext2": {
        "train.txt": DataFile("wikitext2/train.txt",
                              "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f", 10_797_148,
                              f"{_WT2}/train.txt"),
        "valid.txt": DataFile("wikitext2/valid.txt",
                              "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8", 1_121_681,
                              f"{_WT2}/valid.txt"),
        "test.txt": DataFile("wikitext2/test.txt",
                             "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0", 1_256_449,
                             f"{_WT2}/test.txt"),
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": DataFile(
            "mnist/train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            9_912_422, f"{_MNIST}/train-images-idx3-ubyte.gz"),
        "train-labels-idx1-ubyte.gz": DataFile(
            "mnist/train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            28_881, f"{_MNIST}/train-labels-idx1-ubyte.gz"),
        "t10k-images-idx3-ubyte.gz": DataFile(
            "mnist/t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            1_648_877, f"{_MNIST}/t10k-images-idx3-ubyte.gz"),
        "t10k-labels-idx1-ubyte.gz": DataFile(
            "mnist/t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            4_542, f"{_MNIST}/t10k-labels-idx1-ubyte.gz"),
    },
    "tinystories": {
        # The first 2,316 complete stories of TinyStories-train.txt: a 2 MiB slice published in
        # gusjengis/toy-RNN, with the unfinished last story cut off (hence `truncate`).
        "TinyStories-train-first2MiB.txt": DataFile(
            "tinystories/TinyStories-train-first2MiB.txt",
            "ba02237f5747a07d420cb7329f721fdc51b6f5c35a81788b9c4bb871e15ff30a", 2_096_346,
            f"{_GH}/gusjengis/toy-RNN/e4c7ff8bba4ff7989e69a3a816ebe4b14813b41e/data/tinystories_sample.txt",
            truncate=True),
    },
}


def data_dirs() -> list[Path]:
    """The folders searched for data, from `DATA_DIR` (colon-separated) or the default `data/`."""
    raw = os.environ.get("DATA_DIR", "")
    dirs = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
    dirs = [d if d.is_absolute() else (Path.cwd() / d) for d in dirs]
    return dirs or [ROOT / "data"]


def _entry(name: str, file: str | None) -> DataFile:
    if name not in DATASETS:
        raise DataError(f"Unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}.")
    files = DATASETS[name]
    if file is None:
        if len(files) != 1:
            raise DataError(f"Dataset {name!r} has several files; pick one of: {', '.join(files)}.")
        return next(iter(files.values()))
    if file not in files:
        raise DataError(f"Dataset {name!r} has no file {file!r}; its files: {', '.join(files)}.")
    return files[file]


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_verified: dict[str, str] = {}  # path -> sha, so repeated lookups in one process hash once


def verify(path: Path, entry: DataFile) -> None:
    """Check size and sha256 (hashing once per file version per process); DataError if wrong."""
    if path.stat().st_size != entry.size:
        raise DataError(f"{path} has {path.stat().st_size:,} bytes, expected {entry.size:,}: "
                        f"the file is incomplete or a different version; delete it and run again to download it.")
    key = f"{path}:{path.stat().st_mtime_ns}"
    if _verified.get(key) != entry.sha256:
        if sha256_of(path) != entry.sha256:
            raise DataError(f"{path} fails its sha256 check (expected {entry.sha256[:12]}…); "
                            f"delete it and run again to download a fresh copy.")
        _verified[key] = entry.sha256


def download(entry: DataFile, dest: Path, timeout: float = 30.0) -> Path:
    """Fetch `entry.url` into `dest` with a progress bar; verify size and sha256 before keeping it."""
    with atomic.atomic_path(dest) as tmp:
        with urllib.request.urlopen(entry.url, timeout=timeout) as resp, open(tmp, "wb") as out:
            total = entry.size if entry.truncate else int(resp.headers.get("Content-Length") or 0) or None
            written = 0
            with progress(total=total, desc=f"download {dest.name}", unit="B", unit_scale=True) as bar:
                while block := resp.read(1 << 16):
                    if entry.truncate:
                        block = block[: max(0, entry.size - written)]
                    out.write(block)
                    written += len(block)
                    bar.update(len(block))
                    if entry.truncate and written >= entry.size:
                        break
        verify(tmp, entry)
    return dest


def data_path(name: str, file: str | None = None, allow_download: bool = True) -> Path:
    """Path of a verified dataset file, downloading it if it is nowhere on the DATA_DIR path."""
    entry = _entry(name, file)
    dirs = data_dirs()
    for d in dirs:
        p = d / entry.path
        if p.is_file():
            verify(p, entry)
            return p
    where = ", ".join(str(d) for d in dirs)
    if not allow_download or os.environ.get("OFFLINE") == "1":
        raise DataError(f"Dataset file {entry.path} was not found in DATA_DIR ({where}); "
                        f"download it from {entry.url} into one of those folders, or set DATA_DIR.")
    dest = dirs[0] / entry.path
    try:
        return download(entry, dest)
    except OSError as e:
        raise DataError(f"Dataset file {entry.path} was not found in DATA_DIR ({where}) and could not be "
                        f"downloaded ({e.__class__.__name__}: {e}); fetch {entry.url} by hand into "
                        f"{dest.parent}, or set DATA_DIR to a folder that has it.") from None


def load_text(name: str, file: str | None = None) -> str:
    return data_path(name, file).read_text(encoding="utf-8")


def available(name: str, file: str | None = None) -> bool:
    """True when the file is already on the DATA_DIR path (no download attempted)."""
    entry = _entry(name, file)
    return any((d / entry.path).is_file() for d in data_dirs())




def fetch_all(names: list[str] | None = None) -> list[Path]:
    """Download (or find and verify) every file of the named datasets, all of them by default."""
    return [data_path(n, f) for n in (names or list(DATASETS)) for f in _files(n)]


def _files(name: str) -> list[str]:
    if name not in DATASETS:
        raise DataError(f"Unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}.")
    return list(DATASETS[name])

