"""Day 48: eval battery v1 — one command that scores every model of the sprint the same way.

`common/eval/battery.py` runs each model over each task family of the test split (held-out phrasings):
greedy exact match answering directly, exact match with the calculator offered (where the answer comes from
an expression), mean reply length in tokens, the latency of one prompt answered alone (median and 90th
percentile) and the batched throughput. The same battery is `make battery` for the learner and is what day 49
scores its sweep with. This run applies it to all five models of the sprint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.data import instruct
from common.eval import battery
from common.run import plotting, runner
from common.train import posttrain

DAY = 48
KEY_METRICS = ["exact_match_sft", "exact_match_dpo", "exact_match_ppo", "exact_match_grpo", "exact_match_tools_sft"]
METRIC_KINDS = {"latency_*": "timing", "answers_per_s*": "timing"}
MODELS = ("base", "sft", "dpo", "ppo", "grpo")


@dataclass
class Config:
    latency_n: int = 10      # prompts per family answered alone for the latency percentiles
    per_family: int = 0      # test examples per family (0 = all)


PRESETS = {"nano": dict(latency_n=2, per_family=6), "cpu": {}, "gpu": {}}


def summarise(rows: list[dict], model: str, key: str = "exact_match") -> float:
    """A model's score over all families, weighting each family by its number of examples (the micro average)."""
    # >>> exercise day48.summarise: sum of n x score over the model's rows, divided by the sum of n
    mine = [r for r in rows if r["model"] == model and key in r]
    return sum(r["n"] * r[key] for r in mine) / sum(r["n"] for r in mine)
    # <<< exercise day48.summarise


def macro(rows: list[dict], model: str, key: str = "exact_match") -> float:
    """The unweighted mean over the model's families (each family counts once, whatever its size)."""
    # >>> exercise day48.macro: the plain mean of the model's per-family scores
    return float(np.mean([r[key] for r in rows if r["model"] == model and key in r]))
    # <<< exercise day48.macro


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    models, splits = battery.sprint_models(ctx.preset, ctx.device, posttrain.cache_dir_for(ctx))
    test = splits["test"]
    if cfg.per_family:
        test = instruct.first_per_family(test, cfg.per_family)
    rows = battery.run_battery(models, test, cfg.latency_n)

    d.section("The battery")
    d.text(f"{len(test):,} test prompts (each family's held-out phrasing), five models: the base model (never "
           "fine-tuned), SFT (day 42), DPO (day 43), PPO and GRPO (day 45). One command reproduces this table for "
           "your own models: `make battery` (writes `results/eval/battery.json`).")
    d.table([{k: v for k, v in r.items()} for r in rows])
    summary = [{"model": m, "exact match (micro)": summarise(rows, m), "exact match (macro)": macro(rows, m),
                "with calculator (micro, its families)": summarise(rows, m, "exact_match_tools"),
                "reply tokens (mean)": summarise(rows, m, "reply_tokens"),
                "latency p50 ms (median of families)": float(np.median([r["latency_ms_p50"] for r in rows
                                                                          if r["model"] == m]))}
               for m in models]
    d.section("Summary per model")
    d.table(summary)
    fams = list(instruct.FAMILIES)
    p = plotting.lines(ctx.plot_path("exact_match"),
                       {m: (list(range(len(fams))), [next(r["exact_match"] for r in rows if r["model"] == m
                                                          and r["family"] == f) for f in fams]) for m in models},
                       "family: " + ", ".join(f"{i} {f}" for i, f in enumerate(fams)), "greedy exact match (test)",
                       "Exact match per family and model", markers=True)
    d.image(p, "Exact match on the held-out phrasings, answered directly")
    s = {r["model"]: r for r in summary}
    best = max(models, key=lambda m: s[m]["exact match (micro)"])
    d.text(f"What to look at: the base model scores {s['base']['exact match (micro)']:.1%}: it writes stories, not "
           f"answers. SFT reaches {s['sft']['exact match (micro)']:.1%}; the best model here is {best} "
           f"({s[best]['exact match (micro)']:.1%}). Micro and macro averages differ when families differ in size "
           "and in difficulty; the macro one gives the small families an equal say. With the calculator, the "
           "arithmetic-type families are limited by reading the numbers, not by computing them. Latency is per "
           "prompt answered alone and grows with the reply's length (one forward pass per token, recomputing the "
           "prompt); throughput batches many prompts and is what a server would quote.")
    out = {f"exact_match_{m}": round(s[m]["exact match (micro)"], 4) for m in models}
    out.update({f"exact_match_macro_{m}": round(s[m]["exact match (macro)"], 4) for m in models})
    out.update({f"exact_match_tools_{m}": round(s[m]["with calculator (micro, its families)"], 4) for m in models})
    out.update({f"reply_tokens_{m}": round(s[m]["reply tokens (mean)"], 3) for m in models})
    out.update({f"latency_ms_{m}": round(s[m]["latency p50 ms (median of families)"], 2) for m in models})
    out["answers_per_s_sft"] = round(float(np.mean([r["answers_per_s"] for r in rows if r["model"] == "sft"])), 1)
    out["n_test"] = len(test)
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
