"""Day 50: Sprint 5 wrap — the post-training results in one table, the README block, and the recipe decision.

The shared wrap (`common/course/wrap.py`, as on days 10, 20, 30 and 40) exports every Sprint 5 config, audits
the docstrings of `common/` and rewrites the README block between `<!-- sprint5-results:begin -->` and
`<!-- sprint5-results:end -->`. Then the day reads the sprint's committed reference runs (nothing is trained
or measured again) into the scoreboard the issue asked for, and turns them into `posttraining.yaml`: which
preference method and strength to carry into Sprint 6, by a rule written before looking at the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.course import wrap
from common.course.wrap import reference_metrics
from common.run import runner

DAY = 50
SPRINT = 5
HERE = Path(__file__).resolve().parent
KEY_METRICS = ["days_with_reference", "chosen_method", "missing_docstrings"]
METRIC_KINDS = {}


@dataclass
class Config:
    days: str = "41-49"
    update_readme: bool = True
    max_tax: float = 0.1       # a method is eligible only if its alignment tax is at most this ...
    min_low: float = 0.5       # ... and the low end of its win-rate interval is at least this (not worse than SFT)


PRESETS = {"nano": {}, "cpu": {}, "gpu": {}}


def choose(candidates: list[dict], max_tax: float, min_low: float) -> dict:
    """The rule: among candidates whose alignment tax <= max_tax and whose win-rate interval's low end >= min_low,
    the highest win rate (ties: the smaller KL); none eligible -> {"method": "sft"} (keep the SFT model)."""
    # >>> exercise day50.choose: filter by tax and interval, then the best win rate, the smaller KL breaking ties
    ok = [c for c in candidates if c["tax"] <= max_tax and c["low"] >= min_low]
    if not ok:
        return {"method": "sft", "strength": None, "reason": "no preference-tuned model beat SFT within the tax"}
    best = max(ok, key=lambda c: (c["win_rate"], -c["kl"]))
    return {"method": best["method"], "strength": best["strength"],
            "reason": f"highest win rate ({best['win_rate']:.3f}) among {len(ok)} eligible"}
    # <<< exercise day50.choose


def candidates(m49: dict) -> list[dict]:
    """Every (method, strength) of day 49's reference run with its win rate, interval low end, KL and tax (a point
    without a `win_low_` metric, from an older reference, uses its win rate as the low end)."""
    out = []
    for key, wr in m49.items():
        if not key.startswith("win_rate_") or key.count("_") != 3:
            continue
        _, _, method, strength = key.split("_")
        low = m49.get(f"win_low_{method}_{strength}", wr)
        out.append({"method": method, "strength": float(strength), "win_rate": wr, "low": low,
                    "kl": m49.get(f"kl_{method}_{strength}", 0.0), "tax": m49.get(f"tax_{method}_{strength}", 0.0)})
    return out


def scoreboard(root: Path) -> list[dict]:
    """The numbers the sprint's issue asks the closing note for, read from the committed reference runs."""
    m = {n: reference_metrics(root, n) for n in range(41, 50)}
    g = lambda n, k: m[n].get(k, "—")  # noqa: E731
    return [
        {"what": "SFT exact match, test (held-out phrasings) / val", "value": f"{g(42, 'exact_match_test')} / "
         f"{g(42, 'exact_match_val')}", "day": 42},
        {"what": "memorise 200: final loss", "value": g(42, "overfit_loss"), "day": 42},
        {"what": "DPO preference accuracy, held-out pairs", "value": g(43, "dpo_heldout_accuracy"), "day": 43},
        {"what": "DPO win rate vs SFT, test [95% interval]", "value": f"{g(44, 'win_rate_test')} "
         f"[{g(44, 'win_rate_test_low')}, {g(44, 'win_rate_test_high')}]", "day": 44},
        {"what": "KL(DPO || SFT) per reply", "value": g(44, "kl_per_reply"), "day": 44},
        {"what": "PPO: held-out reward gain at KL", "value": f"{g(45, 'reward_gain_ppo')} at {g(45, 'kl_ppo')}",
         "day": 45},
        {"what": "GRPO: held-out reward gain at KL", "value": f"{g(45, 'reward_gain_grpo')} at {g(45, 'kl_grpo')}",
         "day": 45},
        {"what": "tool use: held-out word problems, with / without calculator",
         "value": f"{g(42, 'tool_use_accuracy')} / {g(42, 'no_tool_accuracy')}", "day": 42},
        {"what": "tool use, new phrasing: with / without", "value": f"{g(42, 'tool_use_accuracy_new_phrasing')} / "
         f"{g(42, 'no_tool_accuracy_new_phrasing')}", "day": 42},
        {"what": "hostile calculator inputs: refused / escapes", "value": f"{g(42, 'hostile_inputs')} / "
         f"{g(42, 'hostile_escapes')}", "day": 42},
        {"what": "safety rules: refusal / over-refusal (held-out probes)",
         "value": f"{g(46, 'refusal_rate_heldout')} / {g(46, 'over_refusal_rate_heldout')}", "day": 46},
        {"what": "decoding: greedy / T=1 / best of 8 at T=1", "value": f"{g(47, 'accuracy_greedy')} / "
         f"{g(47, 'accuracy_t1')} / {g(47, 'best_of_k_t1')}", "day": 47},
        {"what": "KL ablation at the default beta: win rate / alignment tax",
         "value": f"{g(49, 'win_rate')} / {g(49, 'alignment_tax')}", "day": 49},
    ]


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    metrics = wrap.run_wrap(ctx, SPRINT, wrap.sprint_days(cfg.days), cfg.update_readme)

    d.section("The sprint's scoreboard")
    d.text("Read from the committed reference runs of days 41-49 (`days/dayNN/reference.json`); '—' marks a day "
           "without one yet.")
    d.table(scoreboard(ctx.root))

    m49 = reference_metrics(ctx.root, 49)
    cands = candidates(m49)
    pick = choose(cands, cfg.max_tax, cfg.min_low)
    d.section("The decision: what Sprint 6 starts from")
    d.text(f"The rule, fixed before the sweep: a preference-tuned model is eligible when its alignment tax is at "
           f"most {cfg.max_tax:.0%} and the low end of its win-rate interval against SFT is at least {cfg.min_low} "
           "(evidence that it is better than SFT); "
           "the eligible one with the highest win rate is chosen (the smaller KL breaks ties), and if none is "
           "eligible the sprint keeps the SFT model. Every sweep point has its own bootstrap interval in day 49.")
    if cands:
        d.table([{**c, "eligible": c["tax"] <= cfg.max_tax and c["low"] >= cfg.min_low} for c in cands])
    choice = {"method": pick["method"], "strength": pick["strength"], "reason": pick["reason"],
              "tools": "calculator offered with <|tools|> (day 42)", "safety": "strict rules, threshold 1 (day 46)",
              "decoding": "greedy for evaluation; T=1 for sampling pairs and rollouts (day 47)"}
    path = ctx.day_dir / "posttraining.yaml"
    wrap.save_yaml(path, "# Sprint 5's decision, assembled by `make day 50` from day 49's reference run (evidence:\n"
                         "# days/day50/deliverable.md). method: sft | dpo | ppo | grpo; strength: its beta or KL "
                         "coefficient.\n", choice)
    d.text(f"Decision: **{pick['method']}**" + (f" at strength {pick['strength']:g}" if pick["strength"] is not None
                                                 else "") + f" ({pick['reason']}). Saved to `{path.name}`.")
    return {**metrics, "chosen_method": pick["method"],
            "chosen_strength": pick["strength"] if pick["strength"] is not None else -1,
            "n_candidates": len(cands)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
