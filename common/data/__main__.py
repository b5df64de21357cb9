"""`python -m common.data fetch [name ...]` (`make data`): download and verify the registered datasets."""

import sys

from common.data.registry import DATASETS, DataError, fetch_all

args = sys.argv[1:]
if not args or args[0] != "fetch":
    print(f"usage: python -m common.data fetch [{' | '.join(DATASETS)} ...]", file=sys.stderr)
    raise SystemExit(2)
try:
    for path in fetch_all(args[1:]):
        print(f"ok  {path}")
except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
