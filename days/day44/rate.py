"""Blind A/B ratings of day 44's two models: `make rate` (or `python -m days.day44.rate [--n 10]`).

Draws `n` test prompts (seeded, so every session sees the same items), takes the greedy answers of the SFT
and the DPO model (cached by days 42 and 43; trained first if the cache is empty), shows them as A and B in
an order drawn per item, and asks for two 1-5 ratings and a preference. Every answer is written at once to
`results/day44/ratings.csv`; run it again to continue where you stopped. `make day 44` then reports the means.
"""

from __future__ import annotations

import argparse
import random
import sys

from common import ROOT
from common.eval import ratings
from common.run import runner
from common.run.dayfiles import day_name
from common.train import posttrain, preference
from days.day44.run import MIN_RATINGS, RATINGS


def build_items(n: int, seed: int = 0, preset: str = "cpu", device="cpu", cache=None) -> list[dict]:
    """The n blind items: test prompts with the SFT and DPO greedy answers, order randomised per item."""
    cache = cache or ROOT / ".cache" / "posttrain"
    _, sft = posttrain.models_for(preset, device, cache)
    splits = posttrain.sft_splits(posttrain.recipes(preset)[1])
    dpo = preference.train_dpo(sft, preference.dpo_recipe(preset), splits, device, cache_dir=cache)
    exs = random.Random(seed).sample(splits["test"], n)
    replies = {name: [r["reply"] for r in posttrain.score(m, exs)] for name, m in (("sft", sft.model),
                                                                                     ("dpo", dpo.model))}
    return ratings.blind_items([e.prompt for e in exs], replies, seed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m days.day44.rate", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=MIN_RATINGS, help=f"items to rate (default {MIN_RATINGS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="cpu", choices=list(posttrain.RECIPES))
    args = p.parse_args(argv)
    if args.n < 1:
        print("--n must be at least 1.", file=sys.stderr)
        return 2
    path = ROOT / "results" / day_name(44) / RATINGS
    items = build_items(args.n, args.seed, args.preset, runner.pick_device("auto"))
    try:
        done = ratings.rate(items, path)
    except (KeyboardInterrupt, EOFError):
        print("\nStopped; what you rated is saved.")
        done = None
    s = ratings.summary(path)
    print(f"\n{s['n']} item(s) rated in {path.relative_to(ROOT)}"
          + (f" ({done} this session)" if done is not None else "") + ". "
          + ", ".join(f"{m}: mean {v['mean']:.2f}" for m, v in s["models"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
