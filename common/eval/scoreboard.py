"""The scoreboard: every results file of `make eval` in one pandas table, with intervals and paired tests.

    python -m common.eval.scoreboard                       # results/eval/*/ -> results/eval/scoreboard.md
    board = table(load_latest("results/eval"))             # one row per (model, task, metric)
    paired(a_values, b_values)                             # difference, its 95% interval, exact p

A row's interval is a percentile bootstrap over the task's documents (the per-document samples written
beside every results file): resample documents with replacement, recompute the metric, take the 2.5th and
97.5th percentiles. For bits per byte the resampled statistic is the ratio of summed log-likelihood to
summed bytes, as the metric itself is. Two models scored on the same documents are compared pairwise:
the bootstrap resamples documents, keeping each document's pair of scores together, and for 0/1 scores
the exact sign test (McNemar's test without the normal approximation) counts the documents where exactly
one of the two was right.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from common.eval import harness

PRIMARY = {"multiple_choice": "acc_norm", "generate_until": None, "loglikelihood_rolling": "bits_per_byte"}


def primary_metric(task_name: str) -> str:
    """The metric a task is ranked by: acc_norm, the first listed generation metric, or bits per byte."""
    t = harness.load_task(task_name)
    return PRIMARY[t.output_type] or t.metrics[0]


def load_latest(folder) -> dict:
    """{model: (record, {task: [sample dicts]})} from the newest results file of each model under `folder`."""
    out = {}
    for model_dir in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        files = sorted(model_dir.glob("*.json"))
        if not files:
            continue
        rec = json.loads(files[-1].read_text())
        samples = {}
        for task in rec["tasks"]:
            f = files[-1].with_suffix("") / f"{task}.jsonl"
            samples[task] = [json.loads(line) for line in f.read_text().splitlines()] if f.is_file() else []
        out[rec["model"]] = (rec, samples)
    return out


def _stat(samples: list[dict], metric: str, idx=None) -> float:
    s = samples if idx is None else [samples[i] for i in idx]
    if metric == "bits_per_byte":
        return -sum(x["loglikelihood"] for x in s) / math.log(2) / sum(x["bytes"] for x in s)
    return float(np.mean([x[metric] for x in s]))


def interval(samples: list[dict], metric: str, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of a metric over the documents (nan, nan without samples)."""
    if metric not in ("bits_per_byte",) and (not samples or metric not in samples[0]):
        return float("nan"), float("nan")
    if metric == "bits_per_byte":
        ll = np.array([x["loglikelihood"] for x in samples])
        nb = np.array([x["bytes"] for x in samples], dtype=float)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(samples), (n_boot, len(samples)))
        stats = -ll[idx].sum(1) / math.log(2) / nb[idx].sum(1)
    else:
        v = np.array([x[metric] for x in samples], dtype=float)
        rng = np.random.default_rng(seed)
        stats = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def with_groups(runs: dict) -> dict:
    """The runs plus one pseudo-task per complete task group (e.g. `instruct`): its samples are the members'
    samples concatenated, so its score is the micro average over all their documents."""
    out = {}
    for model, (rec, samples) in runs.items():
        tasks, samples = dict(rec["tasks"]), dict(samples)
        groups: dict = {}
        for t in rec["tasks"]:
            g = harness.load_task(t).group
            if g:
                groups.setdefault(g, []).append(t)
        for g, members in groups.items():
            if sorted(members) != sorted(harness.task_names(g)):
                continue
            merged = [x for t in members for x in samples.get(t, [])]
            metric = primary_metric(members[0])
            n = sum(rec["tasks"][t]["n"] for t in members)
            value = sum(rec["tasks"][t]["metrics"][metric] * rec["tasks"][t]["n"] for t in members) / n
            tasks[g] = {**rec["tasks"][members[0]], "n": n, "metrics": {metric: value}, "group_of": members}
            samples[g] = merged
        out[model] = ({**rec, "tasks": tasks}, samples)
    return out


def primary_of(task: str, entry: dict) -> str:
    return primary_metric(entry["group_of"][0]) if "group_of" in entry else primary_metric(task)


def table(runs: dict, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Long table: model, task, metric, value, lo, hi, n, primary, higher_is_better, version, commit, group
    (task groups appear as pseudo-tasks whose `group` is True, see `with_groups`)."""
    rows = []
    for model, (rec, samples) in with_groups(runs).items():
        for task, t in rec["tasks"].items():
            prim = primary_of(task, t)
            for metric, value in t["metrics"].items():
                if metric in ("byte_perplexity", "word_perplexity"):
                    continue
                lo, hi = interval(samples.get(task, []), metric, n_boot, seed)
                rows.append({"model": model, "task": task, "metric": metric, "value": value, "lo": lo, "hi": hi,
                             "n": t["n"], "primary": metric == prim,
                             "higher_is_better": metric not in harness.LOWER_IS_BETTER,
                             "version": t["version"], "commit": rec.get("commit", ""), "group": "group_of" in t})
    return pd.DataFrame(rows)


def ranked(board: pd.DataFrame) -> pd.DataFrame:
    """Primary metrics only, with each model's rank per task (1 = best; ties share the better rank)."""
    p = board[board["primary"]].copy()
    p["rank"] = 0
    for _, g in p.groupby("task"):
        asc = not bool(g["higher_is_better"].iloc[0])
        p.loc[g.index, "rank"] = g["value"].rank(ascending=asc, method="min").astype(int)
    return p


def collapsed(board: pd.DataFrame) -> pd.DataFrame:
    """The board with each complete group in place of its member tasks."""
    members = set()
    for task in board.loc[board["group"], "task"].unique():
        members |= set(harness.task_names(task))
    return board[~board["task"].isin(members)]


def markdown(board: pd.DataFrame, digits: int = 3) -> str:
    """Models as rows, tasks (primary metric; groups instead of their members) as columns, each cell
    'value [lo, hi]'; the mean rank over those columns last."""
    p = ranked(collapsed(board))
    p["cell"] = [f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if not math.isnan(lo) else f"{v:.{digits}f}"
                 for v, lo, hi in zip(p["value"], p["lo"], p["hi"])]
    p["column"] = p["task"] + " (" + p["metric"] + ")"
    wide = p.pivot(index="model", columns="column", values="cell")
    wide["mean rank"] = p.groupby("model")["rank"].mean().round(2)
    wide = wide.sort_values("mean rank")
    return wide.reset_index().to_markdown(index=False)


def sign_test_p(k: int, n: int) -> float:
    """Exact two-sided sign test of k successes in n discordant pairs (1.0 when n = 0)."""
    if n == 0:
        return 1.0
    lo = min(k, n - k)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(lo + 1)) / 2 ** n)


def paired(a, b, n_boot: int = 2000, seed: int = 0) -> dict:
    """A - B on the same documents: mean difference, its 95% paired bootstrap interval, and (for 0/1 scores)
    the discordant counts and the exact sign-test p-value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired scores need the same non-empty documents, got {a.size} and {b.size}")
    diff = a - b
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, diff.size, (n_boot, diff.size))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    out = {"n": int(a.size), "a": float(a.mean()), "b": float(b.mean()), "diff": float(diff.mean()),
           "lo": float(lo), "hi": float(hi)}
    if set(np.unique(np.concatenate([a, b]))) <= {0.0, 1.0}:
        a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        out.update(a_only=a_only, b_only=b_only, p=sign_test_p(a_only, a_only + b_only))
    return out


def main(argv=None) -> int:
    """`python -m common.eval.scoreboard`: the newest results file of every model -> a markdown scoreboard."""
    from common import ROOT
    from common.run import atomic

    p = argparse.ArgumentParser(prog="python -m common.eval.scoreboard", description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT / "results" / "eval"))
    args = p.parse_args(argv)
    folder = Path(args.results)
    runs = load_latest(folder) if folder.is_dir() else {}
    if not runs:
        print(f"error: no results files under {folder}; run `make eval MODEL=...` first")
        return 2
    md = markdown(table(runs))
    atomic.write_text(folder / "scoreboard.md", md + "\n")
    print(md)
    print(f"\nwritten: {folder / 'scoreboard.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
