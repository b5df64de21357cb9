"""The Sprint 3 pretraining corpus: combined text -> SentencePiece -> train/val uint16 shards, cached.

    td = corpus.token_data(16000, cache=ctx.cache_dir("tokens"))   # builds once, then reuses
    loader = data.StreamingLoader(td.train, block_size=256, batch_size=16, seed=1337)
    bpb = corpus.bits_per_byte(mean_nats_per_token, td.val_bytes_per_token)

The corpus is Tiny Shakespeare + WikiText-2 train + the TinyStories 2 MiB slice (non-empty lines).
The last `val_frac` of each source's lines is held out, so validation mixes all three styles and the
tokenizer never sees it. Everything derived (tokenizer model, shards) lives under
`<cache>/<key>/` (a day passes `ctx.cache_dir("tokens")`: `.cache/tokens` for a full run, scratch
space for `--quick`; the default is the project's `.cache/tokens`), where the key hashes every
setting that changes the bytes written, so two days asking for the same vocabulary share one build
and a changed setting never reads a stale one.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, data
from common.run import atomic
from common.run.errors import UserError

SOURCES = [("tinyshakespeare", None), ("wikitext2", "train.txt"), ("tinystories", "TinyStories-train-first2MiB.txt")]
CACHE = ROOT / ".cache" / "tokens"


def split_lines(corpus_bytes: int = 0, val_frac: float = 0.05, sources: str = "all") -> tuple[list[str], list[str]]:
    """(train lines, val lines): per source, non-empty lines, the last `val_frac` held out.

    `corpus_bytes` > 0 keeps only that many leading bytes of each source (quick runs); `sources`
    is "all" or one dataset name of SOURCES (e.g. "tinystories")."""
    if not 0 < val_frac < 1:
        raise UserError(f"val_frac must be between 0 and 1, got {val_frac}.")
    chosen = [s for s in SOURCES if sources == "all" or s[0] == sources]
    if not chosen:
        raise UserError(f"Unknown corpus source {sources!r}; use all or one of {', '.join(n for n, _ in SOURCES)}.")
    train, val = [], []
    for name, file in chosen:
        text = data.load_text(name, file)
        if corpus_bytes:
            text = text[:corpus_bytes]
        lines = [ln for ln in text.splitlines() if ln.strip()]
        cut = len(lines) - max(1, int(len(lines) * val_frac))
        train += lines[:cut]
        val += lines[cut:]
    return train, val


@dataclass
class TokenData:
    """A tokenizer and its train/val shards, with the byte counts that bits per byte needs."""
    root: Path
    vocab_size: int
    sp: object                 # sentencepiece.SentencePieceProcessor
    train: data.ShardedTokens
    val: data.ShardedTokens
    train_bytes: int           # UTF-8 bytes of the text behind the train shards
    val_bytes: int

    @property
    def train_tokens(self) -> int:
        return len(self.train)

    @property
    def val_tokens(self) -> int:
        return len(self.val)

    @property
    def val_bytes_per_token(self) -> float:
        return self.val_bytes / self.val_tokens

    def val_tensor(self):
        """The whole validation split as one int64 tensor (for `train.full_split_loss`)."""
        return _as_tensor(self.val)

    def train_tensor(self):
        """The whole train split as one int64 tensor (small corpora only: it is read into memory)."""
        return _as_tensor(self.train)


def _as_tensor(tokens):
    import numpy as np
    import torch

    return torch.from_numpy(np.concatenate([np.asarray(s, dtype=np.int64) for s in tokens.shards]))


def bits_per_byte(nats_per_token: float, bytes_per_token: float) -> float:
    """Cross-entropy in nats per token -> bits per byte of text: nats / ln 2 / (bytes per token)."""
    # >>> exercise day26.bits_per_byte: nats per token to bits per byte of text
    return nats_per_token / math.log(2) / bytes_per_token
    # <<< exercise day26.bits_per_byte


def _key(**settings) -> str:
    import sentencepiece

    blob = json.dumps({**settings, "sentencepiece": sentencepiece.__version__, "format": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def eol_id(sp) -> int:
    """The token that ends every line in the shards (the user-defined "\n" piece; eos as a fallback)."""
    return sp.piece_to_id("\n") if sp.piece_to_id("\n") != sp.unk_id() else sp.eos_id()


def _encode(sp, lines: list[str]):
    import numpy as np

    # one end-of-line token between lines, so documents do not run into each other unmarked
    eol = eol_id(sp)
    out = []
    for ids in sp.encode(lines):
        out.extend(ids)
        if eol >= 0:
            out.append(eol)
    return np.asarray(out, dtype=np.int64)


def token_data(vocab_size: int = 16000, kind: str = "bpe", corpus_bytes: int = 0, val_frac: float = 0.05,
               shard_tokens: int = 1 << 20, cache: Path | None = None, rebuild: bool = False,
               sources: str = "all") -> TokenData:
    """Train (or reuse) a SentencePiece tokenizer on the train lines and shard both splits as uint16/uint32.

    `sources="tinystories"` (or another SOURCES name) builds a corpus of that dataset alone."""
    from common.data.tokenizers import train_sentencepiece

    key = _key(vocab_size=vocab_size, kind=kind, corpus_bytes=corpus_bytes, val_frac=val_frac,
               shard_tokens=shard_tokens, **({} if sources == "all" else {"sources": sources}))
    root = Path(cache or CACHE) / f"sp{vocab_size}_{kind}{'' if sources == 'all' else '_' + sources}_{key}"
    if rebuild and root.exists():
        shutil.rmtree(root)
    if not (root / "info.json").is_file():
        train_lines, val_lines = split_lines(corpus_bytes, val_frac, sources)
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # SentencePiece's default control tokens (unk, bos, eos) count towards vocab_size; bos/eos unused
        sp = train_sentencepiece(iter(train_lines), tmp / "sp", vocab_size, kind, user_defined_symbols=["\n"],
                                 input_sentence_size=400_000, shuffle_input_sentence=True)
        dtype = "uint16" if vocab_size <= 65535 else "uint32"
        for split, lines in (("train", train_lines), ("val", val_lines)):
            data.write_shards(_encode(sp, lines), tmp / split, shard_tokens, dtype)
        info = {"vocab_size": vocab_size, "kind": kind, "corpus_bytes": corpus_bytes, "val_frac": val_frac,
                "train_bytes": sum(len(ln.encode()) + 1 for ln in train_lines),
                "val_bytes": sum(len(ln.encode()) + 1 for ln in val_lines)}
        atomic.write_text(tmp / "info.json", json.dumps(info, indent=2))
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)  # the finished build appears at once, never half-written
    import sentencepiece as spm

    info = json.loads((root / "info.json").read_text())
    return TokenData(root=root, vocab_size=vocab_size, sp=spm.SentencePieceProcessor(model_file=str(root / "sp.model")),
                     train=data.ShardedTokens(root / "train"), val=data.ShardedTokens(root / "val"),
                     train_bytes=info["train_bytes"], val_bytes=info["val_bytes"])
