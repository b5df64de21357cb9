"""The progress bar every loop longer than a few seconds shows (tqdm on stderr, quiet off a terminal).

A leaf module: the model, data and training layers import it without pulling in the run tracker.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(iterable=None, total=None, desc: str = "", **kw):
    """A progress bar on stderr that stays quiet when output is not a terminal (CI, tests)."""
    kw.setdefault("disable", None if sys.stderr.isatty() else True)
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("mininterval", 0.5)
    return tqdm(iterable, total=total, desc=desc, **kw)
