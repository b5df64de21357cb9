"""Eval battery v1: exact match, answer length and latency per task family, for any set of chat models.

    rows = run_battery({"sft": sft.model, "dpo": dpo.model}, examples, latency_n=10)
    python -m common.eval.battery [--preset cpu] [--split test]    # the sprint's models, one command

For every model and family: greedy exact match answering directly; exact match with the calculator offered
(for the families whose answer comes from an expression); the mean reply length in tokens; the latency of
one prompt answered alone (median and 90th percentile over `latency_n` prompts, milliseconds: what a user
waits), and the throughput of answering the family in batches (answers per second: what a server sustains).

The command loads the sprint's models from `.cache/posttrain` (training any that are missing: base, SFT, DPO,
PPO, GRPO) and writes `results/eval/battery.json` and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from common.data import instruct
from common.run import atomic
from common.train import posttrain

TOOL_FAMILIES = ("arithmetic", "convert", "word")


def latency_ms(model, examples, tools: bool = False) -> list[float]:
    """Milliseconds to answer each example alone (batch of one), greedy."""
    out = []
    for ex in examples:
        t0 = time.perf_counter()
        posttrain.score(model, [ex], tools=tools)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def run_battery(models: dict, examples, latency_n: int = 10, families=None) -> list[dict]:
    """One row per (model, family): exact match direct and with tools, mean reply tokens, latency, throughput."""
    families = families or [f for f in instruct.FAMILIES if any(e.family == f for e in examples)]
    rows = []
    for name, model in models.items():
        for fam in families:
            exs = [e for e in examples if e.family == fam]
            t0 = time.perf_counter()
            rec = posttrain.score(model, exs)
            batched = time.perf_counter() - t0
            row = {"model": name, "family": fam, "n": len(exs),
                   "exact_match": float(np.mean([r["correct"] for r in rec])),
                   "reply_tokens": float(np.mean([r["tokens"] for r in rec])),
                   "answers_per_s": len(exs) / batched}
            if fam in TOOL_FAMILIES:
                tool_rec = posttrain.score(model, exs, tools=True)
                row["exact_match_tools"] = float(np.mean([r["correct"] for r in tool_rec]))
            lat = latency_ms(model, exs[:latency_n])
            row["latency_ms_p50"] = float(np.percentile(lat, 50))
            row["latency_ms_p90"] = float(np.percentile(lat, 90))
            rows.append(row)
    return rows


def sprint_models(preset: str = "cpu", device="cpu", cache_dir=None) -> tuple[dict, dict]:
    """({name: model}, splits) for the sprint's five models of `preset`, from the cache (trained if missing)."""
    from common.train import preference, rl

    base, sft = posttrain.models_for(preset, device, cache_dir)
    splits = posttrain.sft_splits(posttrain.recipes(preset)[1])
    dpo = preference.train_dpo(sft, preference.dpo_recipe(preset), splits, device, cache_dir=cache_dir)
    ppo = rl.train_rl(sft, rl.rl_recipe(preset, algo="ppo"), splits, device, cache_dir=cache_dir)
    grpo = rl.train_rl(sft, rl.rl_recipe(preset, algo="grpo"), splits, device, cache_dir=cache_dir)
    return {"base": base.model, "sft": sft.model, "dpo": dpo.model, "ppo": ppo.model, "grpo": grpo.model}, splits


def markdown(rows: list[dict]) -> str:
    """The battery's rows as a markdown table."""
    cols = ["model", "family", "n", "exact_match", "exact_match_tools", "reply_tokens", "latency_ms_p50",
            "latency_ms_p90", "answers_per_s"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "-"))
                                     for c in cols) + " |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    """`python -m common.eval.battery` (`make battery`): the battery over the sprint's cached models, written to
    results/eval/battery.json and battery.md."""
    from common import ROOT

    p = argparse.ArgumentParser(prog="python -m common.eval.battery", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", choices=list(posttrain.RECIPES))
    p.add_argument("--split", default="test", choices=list(instruct.SPLITS))
    p.add_argument("--latency-n", type=int, default=10)
    args = p.parse_args(argv)
    models, splits = sprint_models(args.preset, "cpu", ROOT / ".cache" / "posttrain")
    rows = run_battery(models, splits[args.split], args.latency_n)
    out = ROOT / "results" / "eval"
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "battery.json", json.dumps({"preset": args.preset, "split": args.split, "rows": rows},
                                                        indent=2) + "\n")
    atomic.write_text(out / "battery.md", markdown(rows))
    print(markdown(rows))
    print(f"written: {out / 'battery.json'} and battery.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
