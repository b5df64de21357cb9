"""Day 57: the scoreboard — every eval result in one pandas table, with intervals, ranks and paired tests.

Each Sprint 5 model is scored on the harness's tasks (`suite.sprint_results`, reusing what days 51-52
computed when the cache has it), each model's results are written as a versioned results file exactly as
`make eval` writes them, and `common/eval/scoreboard.py` aggregates the files: one row per (model, task,
metric) with a bootstrap interval over documents, ranks per task, and a markdown scoreboard. Then every pair
of models is compared on the same documents (paired bootstrap, exact sign test, Holm's correction for the
ten comparisons), and the best and worst cases of each task are pulled out of the per-document samples.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from common.eval import harness, scoreboard, suite
from common.run import atomic, runner

DAY = 57
KEY_METRICS = ["mean_rank_sft", "mean_rank_grpo", "significant_pairs_instruct", "instruct_em_diff_grpo_sft"]
METRIC_KINDS = {}
MODELS = suite.SPRINT_MODELS


@dataclass
class Config:
    tasks: str = suite.SCOREBOARD_TASKS
    limit: int = 0
    n_boot: int = 2000
    alpha: float = 0.05


PRESETS = {"nano": dict(limit=8, n_boot=200), "cpu": {}, "gpu": {}}


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order: sort ascending, multiply the i-th smallest
    (0-based) by (m - i), make the sequence non-decreasing, cap at 1."""
    # >>> exercise day57.holm: order, scale by (m - i), running maximum, cap at 1, back to the input order
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
    # <<< exercise day57.holm


def instruct_values(results: dict, model: str, metric: str = "exact_match") -> list[float]:
    """The per-document values of the six instruction tasks, concatenated in task order."""
    return [s[metric] for t in harness.resolve("instruct") if t in results[model] for s in results[model][t]["samples"]]


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, out = ctx.deliverable, {}
    results, lms, _, runs = suite.sprint_runs(ctx, cfg.tasks, cfg.limit or None)
    board = scoreboard.table(runs, cfg.n_boot, ctx.seed)
    atomic.write_text(ctx.run_dir / "scoreboard.csv", board.to_csv(index=False))

    d.section("Scoreboard")
    d.text(f"{len(runs)} results files (one per model, written as `make eval` writes them, then read back by "
           f"`common/eval/scoreboard.py`): {board['task'].nunique()} tasks, {len(board)} (model, task, metric) rows. "
           "Each cell: the task's primary metric and its 95% bootstrap interval over the task's documents; bits "
           "per byte is lower-is-better, everything else higher. The six instruction tasks appear as their group, "
           f"`instruct` (exact match over all {len(instruct_values(results, 'sft')):,} prompts). Mean rank averages "
           "each model's rank over the columns (1 = best; ties share the better rank).")
    d.text(scoreboard.markdown(board))
    ranks = scoreboard.ranked(scoreboard.collapsed(board))
    mean_rank = ranks.groupby("model")["rank"].mean()
    best = str(mean_rank.idxmin())
    out.update({f"mean_rank_{m}": round(float(mean_rank[m]), 3) for m in MODELS})

    # --- paired comparisons
    d.section("Paired comparisons on the instruction tasks")
    rows, pvals = [], []
    for a, b in itertools.combinations(MODELS, 2):
        r = scoreboard.paired(instruct_values(results, a), instruct_values(results, b), cfg.n_boot, ctx.seed)
        rows.append({"A": a, "B": b, "EM A": r["a"], "EM B": r["b"], "A - B": r["diff"],
                     "95% interval": f"[{r['lo']:+.4f}, {r['hi']:+.4f}]", "only A right": r["a_only"],
                     "only B right": r["b_only"], "sign test p": r["p"]})
        pvals.append(r["p"])
    for row, adj in zip(rows, holm(pvals)):
        row["Holm p"] = adj
        row["significant"] = adj < cfg.alpha
    d.table(rows)
    sig = sum(r["significant"] for r in rows)
    n_docs = len(instruct_values(results, "sft"))
    out["significant_pairs_instruct"] = sig
    gs = next(r for r in rows if {r["A"], r["B"]} == {"sft", "grpo"})
    out["instruct_em_diff_grpo_sft"] = round(gs["A - B"] * (1 if gs["A"] == "grpo" else -1), 4)
    out["instruct_p_grpo_sft"] = round(gs["sign test p"], 4)
    d.text(f"Exact match on the same {n_docs:,} prompts, model against model: only the documents where exactly one "
           f"model is right carry information, and the exact sign test asks whether they split evenly. With ten "
           f"comparisons, some p-values fall under {cfg.alpha} by chance alone; Holm's correction (this day's "
           f"exercise) controls the chance of any false alarm at {cfg.alpha}. {sig} of 10 pairs differ after the "
           f"correction.")

    # --- best and worst cases
    d.section("Best and worst cases per task")
    rows, grouped = [], scoreboard.with_groups(runs)
    for task, g in ranks.groupby("task"):
        top, bottom = g.sort_values("rank").iloc[0], g.sort_values("rank").iloc[-1]
        samples = {m: grouped[m][1][task] for m in MODELS}
        metric = top["metric"]
        row = {"task": task, "metric": metric, "best": f"{top['model']} {top['value']:.3f}",
               "worst": f"{bottom['model']} {bottom['value']:.3f}"}
        if metric in ("exact_match", "acc_norm", "acc"):
            right = np.array([[s[metric] for s in samples[m]] for m in MODELS])
            row.update({"documents": right.shape[1], "every model right": int((right.min(0) == 1).sum()),
                        "no model right": int((right.max(0) == 0).sum())})
            out[f"decided_share_{task}"] = round(float(((right.min(0) == 1) | (right.max(0) == 0)).mean()), 4)
        out[f"ci_width_{task}"] = round(float((g["hi"] - g["lo"]).max()), 4)
        out[f"spread_{task}"] = round(float(g["value"].max() - g["value"].min()), 4)
        rows.append(row)
    d.table(rows)
    d.text("A task where no model is ever right, or every model always is, cannot separate models: it is a "
           "property of the task, not of the models. Below, instruction prompts where the two models with the best "
           "mean rank disagree.")
    first, second = mean_rank.sort_values().index[:2]
    examples = []
    for t in harness.resolve("instruct"):
        for sa, sb in zip(results[first][t]["samples"], results[second][t]["samples"]):
            if sa["exact_match"] != sb["exact_match"] and len(examples) < 6:
                esc = lambda x: x.replace("\n", " ").replace("|", "\\|")  # noqa: E731  (pipes in chat markers)
                examples.append({"task": t, "prompt": esc(sa["prompt"][-70:]), "target": sa["target"],
                                 first: esc(sa["answer"][:30]), second: esc(sb["answer"][:30])})
    if examples:
        d.table(examples)
    else:
        d.text("(none: the two models agree on every instruction prompt)")
    overlap = []
    for _, g in ranks.groupby("task"):
        g = g.sort_values("rank")
        if len(g) > 1 and g.iloc[0]["model"] == best and not np.isnan(g.iloc[0]["lo"]):
            a, b = g.iloc[0], g.iloc[1]
            overlap.append(a["lo"] <= b["hi"] and b["lo"] <= a["hi"])
    d.text(f"The scoreboard's best model by mean rank is {best}. Of the {len(overlap)} columns it leads, its interval "
           f"overlaps the runner-up's in {sum(overlap)}: a rank is a point estimate too, and the paired tests above "
           "are the sharper instrument, because both models answer the same documents.")
    out["best_leads_overlapping"] = int(sum(overlap))
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
