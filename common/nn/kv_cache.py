"""KV caches: a contiguous one for generation, and a paged store in the style of vLLM.

Both speak the protocol of `common/nn/attention.py`: `k_all, v_all = cache.update(layer_idx, k, v)`
appends this step's keys/values (B, Hkv, T_new, D) for one layer and returns all of them.

`KVCache` preallocates (B, Hkv, max_len, D) per layer: appending is a slice copy, reading is a
view. Simple and fast, but every sequence reserves `max_len` slots up front.

`PagedKVStore` keeps keys/values in a shared pool of fixed-size blocks (pages). A sequence owns a
*block table*, the list of its blocks, so memory is taken one block at a time as it grows and is
returned the moment it is evicted; nothing is reserved for tokens that never come. Reading a
sequence gathers its blocks back into a contiguous tensor (`get_view`): real PagedAttention
kernels read the blocks in place instead, which is the part this store leaves out.
`PagedKVCache` adapts the store to the `update` protocol so a decode loop runs through it.

Memory of a cache (both kinds, when full): 2 (K and V) x layers x B x Hkv x T x D x bytes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from common.run.errors import UserError


def kv_bytes(n_layer: int, batch: int, n_kv_head: int, seq_len: int, head_dim: int, bytes_per_elem: int) -> int:
    """Bytes to cache keys and values: 2 * layers * B * Hkv * T * D * bytes."""
    return 2 * n_layer * batch * n_kv_head * seq_len * head_dim * bytes_per_elem


def kv_layout(cfg) -> tuple[int, int, int]:
    """(heads, key features, value features) a GPT(cfg) caches per token and layer.

    MHA/GQA/MQA: (n_kv_head, head_dim, head_dim). MLA: one "head" holding the latent and the
    shared rotated key, (1, kv_lora_rank + rope_head_dim, 0). Linear attention keeps a fixed-size
    state instead of a per-token cache: (0, 0, 0).
    """
    if cfg.attn == "mla":
        return 1, cfg.kv_lora_rank + cfg.rope_head_dim, 0
    if cfg.attn == "linear":
        return 0, 0, 0
    hs = cfg.n_embd // cfg.n_head
    return cfg.n_kv_head or cfg.n_head, hs, hs


def kv_bytes_per_token(cfg, bytes_per_elem: int = 4) -> int:
    """Bytes the KV cache of GPT(cfg) grows by per token (all layers): layers x heads x (k + v features) x bytes.

    MHA: 2 L H hs b; GQA/MQA: 2 L Hkv hs b; MLA: L (r + dR) b; linear attention: 0 (its state is fixed).
    """
    # >>> exercise day32.kv_bytes_per_token: layers x cached heads x (key + value features) x bytes, per config kind
    heads, dk, dv = kv_layout(cfg)
    return cfg.n_layer * heads * (dk + dv) * bytes_per_elem
    # <<< exercise day32.kv_bytes_per_token


def kv_cache_bytes(cfg, seq_len: int, batch: int = 1, bytes_per_elem: int = 4, rolling: bool = True) -> int:
    """Bytes of the KV cache for `batch` sequences of `seq_len` tokens.

    With a sliding window and rolling=True, a ring buffer only needs the last `window` keys and the
    `n_global` first ones, so the cache stops growing there (our `KVCache` keeps every token: rolling=False).
    """
    kept = seq_len
    if cfg.window is not None and rolling:
        kept = min(seq_len, cfg.window + cfg.n_global)
    return kv_bytes_per_token(cfg, bytes_per_elem) * kept * batch


class KVCache:
    """Preallocated keys/values for `n_layer` layers; `update` appends and returns views.

    `v_dim` defaults to `head_dim`; MLA caches a latent as "keys" and nothing as values (v_dim=0).
    """

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, max_len: int, head_dim: int,
                 device="cpu", dtype=torch.float32, v_dim: int | None = None):
        self.k = torch.zeros((n_layer, batch, n_kv_head, max_len, head_dim), device=device, dtype=dtype)
        v_dim = head_dim if v_dim is None else v_dim
        self.v = torch.zeros((n_layer, batch, n_kv_head, max_len, v_dim), device=device, dtype=dtype)
        self.lengths = [0] * n_layer
        self.max_len = max_len

    @classmethod
    def for_model(cls, model, batch: int, max_len: int, device=None, dtype=None):
        cfg = model.cfg
        if cfg.attn == "linear":
            raise UserError("attn='linear' keeps a running state, not a KV cache; generate with use_cache=False.")
        heads, dk, dv = kv_layout(cfg)
        p = next(model.parameters())
        return cls(cfg.n_layer, batch, heads, max_len, dk, device or p.device, dtype or p.dtype, v_dim=dv)

    @property
    def seq_len(self) -> int:
        return self.lengths[0]

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        # >>> exercise day04.kv_update: write k, v into the layer's next free slots, return views of all cached ones
        start, T = self.lengths[layer_idx], k.shape[-2]
        if start + T > self.max_len:
            raise UserError(f"KV cache is full: {start} + {T} tokens exceed max_len {self.max_len}.")
        self.k[layer_idx, :, :, start:start + T] = k
        self.v[layer_idx, :, :, start:start + T] = v
        self.lengths[layer_idx] = start + T
        return self.k[layer_idx, :, :, :start + T], self.v[layer_idx, :, :, :start + T]  # (B, Hkv, S, D)
        # <<< exercise day04.kv_update

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()


class PagedKVStore:
    """A pool of KV blocks shared by many sequences, with block tables and LRU eviction.

    allocate(...)                         set up the pool (all layers)
    append(seq, layer, k, v)              k, v (Hkv, T, D): add tokens to a sequence's layer
    get_view(seq, layer, start, end)      (Hkv, end-start, D) keys and values, contiguous copies
    evict(policy="lru") / free(seq)       give a sequence's blocks back to the pool
    """

    def __init__(self):
        self.pool_k = self.pool_v = None

    def allocate(self, n_layer: int, heads: int, head_dim: int, dtype=torch.float32, max_tokens: int = 4096,
                 block_size: int = 16, device="cpu") -> PagedKVStore:
        n_blocks = -(-max_tokens // block_size)  # ceil
        shape = (n_layer, n_blocks, heads, block_size, head_dim)
        self.pool_k = torch.zeros(shape, dtype=dtype, device=device)
        self.pool_v = torch.zeros(shape, dtype=dtype, device=device)
        self.block_size, self.n_blocks, self.n_layer = block_size, n_blocks, n_layer
        self.free_blocks = list(range(n_blocks - 1, -1, -1))  # a stack; pop() gives block 0 first
        self.tables: OrderedDict[int, list[int]] = OrderedDict()  # seq -> blocks, in LRU order
        self.lengths: dict[int, list[int]] = {}  # seq -> tokens stored, per layer
        self.evictions = 0
        return self

    def _touch(self, seq: int) -> None:
        self.tables.move_to_end(seq)  # most recently used at the end

    def _grow(self, seq: int, n_tokens: int) -> list[int]:
        table = self.tables.setdefault(seq, [])
        self.lengths.setdefault(seq, [0] * self.n_layer)
        need = -(-n_tokens // self.block_size) - len(table)
        for _ in range(need):
            if not self.free_blocks:
                self.evict("lru", keep=seq)
            table.append(self.free_blocks.pop())
        self._touch(seq)
        return table

    def append(self, seq: int, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        # >>> exercise day04.paged_append: grow the block table, write each token at (its block, its offset) in the pool
        start, T = (self.lengths.get(seq) or [0] * self.n_layer)[layer], k.shape[-2]
        table = self._grow(seq, start + T)
        pos = torch.arange(start, start + T)
        blocks = torch.tensor(table, dtype=torch.long)[pos // self.block_size]
        offs = pos % self.block_size
        self.pool_k[layer, blocks, :, offs] = k.transpose(0, 1).to(self.pool_k.dtype)  # (T, Hkv, D)
        self.pool_v[layer, blocks, :, offs] = v.transpose(0, 1).to(self.pool_v.dtype)
        self.lengths[seq][layer] = start + T
        # <<< exercise day04.paged_append

    def get_view(self, seq: int, layer: int, start: int = 0, end: int | None = None):
        if seq not in self.tables:
            raise KeyError(f"sequence {seq} is not in the store (never added, or evicted)")
        end = self.lengths[seq][layer] if end is None else end
        if not 0 <= start <= end <= self.lengths[seq][layer]:
            raise IndexError(f"tokens {start}:{end} outside the {self.lengths[seq][layer]} stored")
        self._touch(seq)
        pos = torch.arange(start, end)
        blocks = torch.tensor(self.tables[seq], dtype=torch.long)[pos // self.block_size]
        offs = pos % self.block_size
        k = self.pool_k[layer, blocks, :, offs].transpose(0, 1)  # (Hkv, T, D)
        v = self.pool_v[layer, blocks, :, offs].transpose(0, 1)
        return k, v

    def free(self, seq: int) -> None:
        self.free_blocks.extend(reversed(self.tables.pop(seq)))
        del self.lengths[seq]

    def evict(self, policy: str = "lru", keep: int | None = None) -> int:
        """Free the least recently used sequence (not `keep`); returns its id."""
        if policy != "lru":
            raise ValueError(f"unknown eviction policy {policy!r}; only 'lru' is implemented")
        victims = [s for s in self.tables if s != keep]
        if not victims:
            raise UserError("The paged KV pool is full with a single sequence; allocate more max_tokens.")
        self.free(victims[0])
        self.evictions += 1
        return victims[0]

    @property
    def used_blocks(self) -> int:
        return self.n_blocks - len(self.free_blocks)


class PagedKVCache:
    """The `update` protocol over a `PagedKVStore`: batch row b is sequence `seq_ids[b]`."""

    def __init__(self, store: PagedKVStore, seq_ids: list[int]):
        self.store, self.seq_ids = store, list(seq_ids)

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        ks, vs = [], []
        for b, seq in enumerate(self.seq_ids):
            self.store.append(seq, layer_idx, k[b], v[b])
            kb, vb = self.store.get_view(seq, layer_idx)
            ks.append(kb)
            vs.append(vb)
        return torch.stack(ks), torch.stack(vs)  # (B, Hkv, S, D): equal lengths in a batch
