"""MNIST from the four original IDX files (`make data` fetches them; `DATA_DIR` may point at a local copy).

    x, y = load("train")        # uint8 (60000, 28, 28), int64 (60000,)
    x, y = load("test")         # 10,000 of each

The IDX format is a big-endian header (a magic number whose last byte is the number of dimensions, then
one 32-bit size per dimension) followed by the raw uint8 values; the files are gzipped.
"""

from __future__ import annotations

import gzip
import struct
from functools import lru_cache

import numpy as np
import torch

from common.data import registry

FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(raw: bytes) -> np.ndarray:
    """An IDX file's contents as an array of its declared shape (uint8 data only, as MNIST's are)."""
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"not a uint8 IDX file (header {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"IDX file holds {data.size} values, header says {shape}")
    return data.reshape(shape)


@lru_cache(maxsize=2)
def load(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) of the train or test split."""
    if split not in FILES:
        raise ValueError(f"unknown MNIST split {split!r}; choose train or test")
    img, lab = (read_idx(gzip.decompress(registry.data_path("mnist", f).read_bytes())) for f in FILES[split])
    return torch.from_numpy(img.copy()), torch.from_numpy(lab.astype(np.int64))
