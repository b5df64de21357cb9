"""Token batches and loaders: what `common.train.train` draws its (x, y) windows from.

Three sources satisfy the same `BatchSource` protocol (`sample()` for training, `fixed(n)` for
evaluation): `Batches` (random windows of one in-memory tensor), `StreamingLoader` (random windows
of memory-mapped uint16 shards, resumable through `state_dict`), and the synthetic tasks in
`common.data.synthetic`. Unlike `registry.py`, nothing here touches the network or DATA_DIR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from common.data.registry import DataError, load_text
from common.run import atomic
from common.run.errors import UserError


class BatchSource(Protocol):
    """What `train()` needs from its data: a random training batch, and fixed evaluation batches."""

    def sample(self, generator=None, batch_size: int | None = None) -> tuple: ...

    def fixed(self, n_batches: int) -> list: ...


# ---- token batches -------------------------------------------------------------------------------

class Batches:
    """Random windows of a 1-D token tensor, as (x, y) with y shifted by one.

    Train batches draw from the global Torch RNG (so a seeded, resumed run draws the same batches);
    `fixed=True` batches come from a private generator reset on every call, so every evaluation
    of every model sees the very same windows — comparisons between runs are not luck of the draw.
    """

    def __init__(self, tokens, block_size: int, batch_size: int, device="cpu", seed: int = 0):
        import torch

        self.tokens = torch.as_tensor(tokens, dtype=torch.long)
        if self.tokens.numel() <= block_size + 1:
            raise UserError(f"The corpus has {self.tokens.numel()} tokens, too few for block_size {block_size}.")
        self.block_size, self.batch_size = block_size, batch_size
        self.device = torch.device(device)
        self.seed = seed
        self._offsets = torch.arange(block_size + 1)

    def sample(self, generator=None, batch_size: int | None = None):
        import torch

        b = batch_size or self.batch_size
        ix = torch.randint(self.tokens.numel() - self.block_size - 1, (b,), generator=generator)
        win = self.tokens[ix[:, None] + self._offsets]  # (B, T+1) in one gather
        x, y = win[:, :-1].contiguous(), win[:, 1:].contiguous()
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    def fixed(self, n_batches: int):
        """`n_batches` batches that are identical on every call."""
        import torch

        g = torch.Generator().manual_seed(self.seed)
        return [self.sample(g) for _ in range(n_batches)]


def split_batches(train_tokens, val_tokens, block_size: int, batch_size: int, device="cpu"):
    """(train, val) `Batches` with the fixed evaluation seeds the days share (1 and 2)."""
    return (Batches(train_tokens, block_size, batch_size, device, seed=1),
            Batches(val_tokens, block_size, batch_size, device, seed=2))


def char_corpus(name: str = "tinyshakespeare", file: str | None = None, val_frac: float = 0.1):
    """Character-level corpus: (tokenizer, train ids, val ids), split like nanoGPT (first 90% train)."""
    import torch

    from common.data.tokenizers import CharTokenizer

    text = load_text(name, file)
    tok = CharTokenizer.from_text(text)
    ids = torch.from_numpy(tok.encode_array(text))
    n = int(len(ids) * (1 - val_frac))
    return tok, ids[:n], ids[n:]


# ---- on-disk token shards and a streaming loader (sprint 3) -------------------------------------

def write_shards(tokens, out_dir, shard_tokens: int = 1 << 20, dtype: str = "uint16") -> dict:
    """Write a 1-D token array as fixed-size binary shards plus `meta.json`; returns the meta.

    uint16 holds vocabularies up to 65,535 (half the bytes of int32); use uint32 above that.
    Each shard is written atomically, `meta.json` last, so a half-written set is never read.
    """
    # >>> exercise day22.write_shards: check the dtype fits, write fixed-size shards atomically, then meta.json
    import json

    import numpy as np

    arr = np.asarray(tokens)
    np_dtype = np.dtype(dtype)
    if arr.size and int(arr.max()) > np.iinfo(np_dtype).max:
        raise DataError(f"Token id {int(arr.max())} does not fit in {dtype}; use dtype='uint32'.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = []
    for i, start in enumerate(range(0, arr.size, shard_tokens)):
        chunk = arr[start:start + shard_tokens].astype(np_dtype)
        with atomic.atomic_path(out_dir / f"shard_{i:05d}.bin") as tmp:
            chunk.tofile(tmp)
        sizes.append(int(chunk.size))
    meta = {"dtype": dtype, "shard_tokens": shard_tokens, "sizes": sizes, "total": int(sum(sizes))}
    atomic.write_text(out_dir / "meta.json", json.dumps(meta, indent=2))
    return meta
    # <<< exercise day22.write_shards


class ShardedTokens:
    """Read-only memory maps over the shards that `write_shards` wrote."""

    def __init__(self, shard_dir):
        import json

        import numpy as np

        shard_dir = Path(shard_dir)
        meta_path = shard_dir / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{shard_dir} holds no meta.json: the shards are missing or were not fully written.")
        self.meta = json.loads(meta_path.read_text())
        self.shards = [np.memmap(shard_dir / f"shard_{i:05d}.bin", dtype=self.meta["dtype"], mode="r", shape=(n,))
                       for i, n in enumerate(self.meta["sizes"])]

    def __len__(self) -> int:
        return self.meta["total"]


class StreamingLoader:
    """Random windows across memory-mapped shards: deterministic per seed, resumable, Batches-compatible.

    Each batch picks, for every row, a shard (weighted by its usable length) and an offset inside it,
    from a private generator; `state_dict()` captures that generator and the batch count, so a resumed
    loader continues with exactly the batches an uninterrupted one would have produced. Windows never
    straddle two shards. `sample()` / `fixed()` match `Batches`, so `common.train.train` takes either.
    """

    def __init__(self, shards: ShardedTokens, block_size: int, batch_size: int, seed: int = 0, device="cpu"):
        import numpy as np
        import torch

        usable = np.array([max(0, len(s) - block_size - 1) for s in shards.shards], dtype=np.int64)
        if usable.sum() == 0:
            raise DataError(f"No shard is longer than block_size + 1 = {block_size + 1} tokens.")
        self.shards, self.block_size, self.batch_size = shards, block_size, batch_size
        self.device, self.seed = torch.device(device), seed
        self._cum = np.cumsum(usable)
        self._rng = np.random.default_rng(seed)
        self.batches_served = 0

    def _windows(self, rng, b: int):
        # >>> exercise day22.windows: draw b positions in the usable space, map each to (shard, offset), cut (x, y)
        import numpy as np
        import torch

        flat = rng.integers(0, self._cum[-1], size=b)              # a position in the usable space
        shard = np.searchsorted(self._cum, flat, side="right")     # which shard it falls in
        offset = flat - np.concatenate([[0], self._cum[:-1]])[shard]
        win = np.stack([self.shards.shards[s][o:o + self.block_size + 1] for s, o in zip(shard, offset)])
        win = torch.from_numpy(win.astype(np.int64))                # (B, T+1)
        x, y = win[:, :-1].contiguous(), win[:, 1:].contiguous()
        return x.to(self.device), y.to(self.device)
        # <<< exercise day22.windows

    def sample(self, generator=None, batch_size: int | None = None):
        self.batches_served += 1
        return self._windows(self._rng, batch_size or self.batch_size)

    def fixed(self, n_batches: int):
        import numpy as np

        rng = np.random.default_rng(self.seed + 10_000)  # never touches the training stream
        return [self._windows(rng, self.batch_size) for _ in range(n_batches)]

    def state_dict(self) -> dict:
        return {"rng": self._rng.bit_generator.state, "batches_served": self.batches_served, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self._rng.bit_generator.state = state["rng"]
        self.batches_served, self.seed = state["batches_served"], state["seed"]
