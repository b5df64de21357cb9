"""Data: the dataset registry and downloads, tokenizers, token batches and loaders, the Sprint 3
corpus and synthetic tasks.

The registry (`registry.py`) and the loaders (`loaders.py`) are re-exported here, so the common
calls read `data.char_corpus()`, `data.load_text("wikitext2", "valid.txt")`, `data.StreamingLoader`.
Tokenizers, the corpus and synthetic tasks are imported by module: `from common.data import corpus`.
"""

from common.data.loaders import (
                                 Batches,
                                 BatchSource,
                                 ShardedTokens,
                                 StreamingLoader,
                                 char_corpus,
                                 split_batches,
                                 write_shards,
)
from common.data.registry import (
                                 DATASETS,
                                 DataError,
                                 DataFile,
                                 available,
                                 data_dirs,
                                 data_path,
                                 download,
                                 load_text,
                                 sha256_of,
                                 verify,
)

__all__ = ["BatchSource", "Batches", "ShardedTokens", "StreamingLoader", "char_corpus", "split_batches",
           "write_shards", "DATASETS", "DataError", "DataFile", "available", "data_dirs", "data_path",
           "download", "load_text", "sha256_of", "verify"]
