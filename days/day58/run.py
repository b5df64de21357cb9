"""Day 58: the sprint's results as figures — every score with its confidence interval, differences as a forest
plot, and the best and worst cases of each task.

The figures read the same results as day 57's scoreboard (`suite.sprint_results`, cached) and go to
`plots/day58_*.png`. Interval methods are compared on the way: for a proportion (exact match, accuracy) the
normal approximation, Wilson's score interval and the percentile bootstrap, at the sample sizes our tasks have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.eval import harness, scoreboard, suite
from common.run import plotting, runner

DAY = 58
KEY_METRICS = ["n_figures", "wilson_width_cloze_base", "normal_width_cloze_base", "ci_width_instruct_sft"]
METRIC_KINDS = {}
MODELS = suite.SPRINT_MODELS
PROPORTIONS = ("instruct", "instruct_mc", "story_endings", "story_cloze_mc")


@dataclass
class Config:
    tasks: str = suite.SCOREBOARD_TASKS
    limit: int = 0
    n_boot: int = 2000


PRESETS = {"nano": dict(limit=8, n_boot=200), "cpu": {}, "gpu": {}}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval for a proportion k/n: the p whose score test |p_hat - p| / sqrt(p(1-p)/n) <= z.
    Unlike p_hat +- z sqrt(p_hat(1 - p_hat)/n) it never leaves [0, 1] and is not empty at k = 0 or k = n."""
    # >>> exercise day58.wilson: centre (p + z^2/2n)/(1 + z^2/n), half z sqrt(p(1-p)/n + z^2/4n^2)/(1 + z^2/n), clip
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
    # <<< exercise day58.wilson


def cell(text: str) -> str:
    """Text safe inside a markdown table cell: no newlines, pipes escaped (the chat markers contain pipes)."""
    return text.replace("\n", " ").replace("|", "\\|")


def normal_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    half = z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, out = ctx.deliverable, {}
    results, lms, _, runs = suite.sprint_runs(ctx, cfg.tasks, cfg.limit or None)
    board = scoreboard.table(runs, cfg.n_boot, ctx.seed)
    grouped = scoreboard.with_groups(runs)
    prim = scoreboard.ranked(scoreboard.collapsed(board)).set_index(["model", "task"])
    figures = []

    # 1. scores with intervals
    tasks = [t for t in PROPORTIONS if t in board["task"].unique()]
    series = {m: ([prim.loc[(m, t), "value"] for t in tasks], [prim.loc[(m, t), "lo"] for t in tasks],
                  [prim.loc[(m, t), "hi"] for t in tasks]) for m in MODELS}
    labels = [f"{t}\n({prim.loc[('sft', t), 'metric']})" for t in tasks]
    figures.append(plotting.grouped_bars(ctx.plot_path("scores"), labels, series, "score (95% bootstrap interval)",
                                         "Every model on every accuracy-type task", hline=(0.25, "chance (4 choices)")))
    d.section("Scores with their intervals")
    d.image(figures[-1], "Primary metric per task and model, with 95% bootstrap intervals over documents")
    d.text("The dashed line is chance for the three four-way multiple-choice tasks (the `instruct` bars are "
           "written answers, whose chance level is near 0).")

    # 2. bits per byte
    bpb = [(m, prim.loc[(m, "tinystories_ppl"), "value"], prim.loc[(m, "tinystories_ppl"), "lo"],
            prim.loc[(m, "tinystories_ppl"), "hi"]) for m in MODELS]
    figures.append(plotting.forest(ctx.plot_path("bpb"), bpb, "bits per byte on held-out stories (lower is better)",
                                   "Story modelling after each stage of post-training", ref=bpb[0][1]))
    d.image(figures[-1], "Bits per byte on the held-out stories, per model (dashed: the base model)")

    # 3. paired differences against SFT
    rows = []
    for t in ("instruct", "instruct_mc", "story_endings"):
        metric = prim.loc[("sft", t), "metric"]
        for m in MODELS:
            if m == "sft":
                continue
            r = scoreboard.paired([s[metric] for s in grouped[m][1][t]], [s[metric] for s in grouped["sft"][1][t]],
                                  cfg.n_boot, ctx.seed)
            rows.append((f"{t}: {m} - sft", r["diff"], r["lo"], r["hi"]))
    figures.append(plotting.forest(ctx.plot_path("differences"), rows, "difference from SFT (95% paired bootstrap)",
                                   "Each model minus SFT, on the same documents"))
    d.section("Differences from SFT")
    d.image(figures[-1], "Paired differences from SFT with 95% intervals; blue: the interval excludes 0")
    excl = sum(lo > 0 or hi < 0 for _, _, lo, hi in rows)
    d.text(f"{excl} of {len(rows)} differences have an interval that excludes zero. Paired intervals are narrower "
           "than the gap between two unpaired intervals suggests: both models answer the same documents, so the "
           "documents' own difficulty cancels in the difference.")
    out["differences_excluding_zero"] = excl

    # 4. per-family exact match with Wilson intervals
    fams = list(harness.resolve("instruct"))
    fam_series = {}
    for m in ("sft", "dpo", "ppo", "grpo"):
        ks = [sum(s["exact_match"] for s in results[m][t]["samples"]) for t in fams]
        ns = [results[m][t]["n"] for t in fams]
        w = [wilson(int(k), n) for k, n in zip(ks, ns)]
        vals = [k / n for k, n in zip(ks, ns)]
        fam_series[m] = (list(range(len(fams))), vals, np.array([[v - a for v, (a, _) in zip(vals, w)],
                                                                 [b - v for v, (_, b) in zip(vals, w)]]))
    xlabel = "family: " + ", ".join(f"{i} {t.removeprefix('instruct_')}" for i, t in enumerate(fams))
    figures.append(plotting.lines(ctx.plot_path("families"), fam_series, xlabel, "exact match (95% Wilson interval)",
                                  "Exact match per family", markers=True))
    d.section("Per family")
    d.image(figures[-1], "Exact match per instruction family with Wilson intervals")

    # 5. interval methods at our sample sizes
    d.section("Three intervals for one proportion")
    rows = []
    for m, t in (("base", "story_cloze_mc"), ("sft", "instruct_copy"), ("sft", "instruct_arithmetic"),
                 ("sft", "instruct_lookup"), ("base", "story_cloze")):
        s = results[m][t]["samples"]
        metric = "acc_norm" if t.endswith("_mc") else "exact_match"
        k, n = int(sum(x[metric] for x in s)), len(s)
        nl, nh = normal_interval(k, n)
        wl, wh = wilson(k, n)
        bl, bh = scoreboard.interval(s, metric, cfg.n_boot, ctx.seed)
        rows.append({"model": m, "task": t, "k / n": f"{k} / {n}", "normal": f"[{nl:.3f}, {nh:.3f}]",
                     "Wilson": f"[{wl:.3f}, {wh:.3f}]", "bootstrap": f"[{bl:.3f}, {bh:.3f}]",
                     "width normal": nh - nl, "width Wilson": wh - wl, "width bootstrap": bh - bl})
    d.table(rows)
    cl = rows[-1]
    out.update(wilson_width_cloze_base=round(cl["width Wilson"], 4),
               normal_width_cloze_base=round(cl["width normal"], 4))
    mid = [r for r in rows if 0.2 <= int(r["k / n"].split(" / ")[0]) / int(r["k / n"].split(" / ")[1]) <= 0.8
           and int(r["k / n"].split(" / ")[1]) >= 200]
    gap = max((max(r["width normal"], r["width Wilson"], r["width bootstrap"]) -
               min(r["width normal"], r["width Wilson"], r["width bootstrap"]) for r in mid), default=float("nan"))
    d.text("Near 0 or 1 the normal approximation goes wrong: it reaches below 0 for small k and has zero width at "
           "k = 0, where the percentile bootstrap collapses too (every resample of all-zeros is zero); Wilson's "
           "interval stays inside [0, 1] and, at k = 0, still allows a true rate up to about 3.8/n (for instance "
           f"[0, {wilson(0, 100)[1]:.3f}] for 0 right out of 100)."
           + (f" For the rows with at least 200 documents and a rate between 0.2 and 0.8, the three widths differ by "
              f"at most {gap:.4f}." if mid else ""))
    inst = prim.loc[("sft", "instruct")]
    out["ci_width_instruct_sft"] = round(float(inst["hi"] - inst["lo"]), 4)

    # 6. best and worst cases
    d.section("Best and worst cases per task")
    cases = []
    for t in ("instruct_mc", "story_endings", "story_cloze_mc"):
        s = results["sft" if t == "instruct_mc" else "base"][t]["samples"]
        per_byte = [[ll / max(1, len(c.encode())) for ll, c in zip(x["loglikelihoods"], x["choices"])] for x in s]
        margin = [v[x["gold"]] - max(u for j, u in enumerate(v) if j != x["gold"]) for v, x in zip(per_byte, s)]
        best, worst = int(np.argmax(margin)), int(np.argmin(margin))
        for tag, i in (("best", best), ("worst", worst)):
            x = s[i]
            cases.append({"task": t, "model": "sft" if t == "instruct_mc" else "base", "case": tag,
                          "prompt (end)": cell(x["prompt"][-60:]), "gold": cell(x["choices"][x["gold"]][:40]),
                          "chosen": cell(x["choices"][int(np.argmax(per_byte[i]))][:40]),
                          "margin (nats per byte) or ROUGE-L": margin[i]})
    xs = results["base"]["story_xsum"]["samples"]
    rl = [x["rougeL"] for x in xs]
    for tag, i in (("best", int(np.argmax(rl))), ("worst", int(np.argmin(rl)))):
        cases.append({"task": "story_xsum", "model": "base", "case": tag, "prompt (end)": cell(xs[i]["prompt"][-60:]),
                      "gold": cell(xs[i]["target"][:40]), "chosen": cell(xs[i]["answer"][:40]),
                      "margin (nats per byte) or ROUGE-L": xs[i]["rougeL"]})
    d.table(cases)
    d.text("For multiple choice the margin is the gold choice's log-likelihood per byte minus the best wrong "
           "choice's (the acc_norm rule): the best case is the most confident right answer, the worst the most "
           "confident wrong one. For the summary task the column holds ROUGE-L instead, and 'chosen' is the summary "
           "the model wrote.")
    out["n_figures"] = len(figures)
    d.text(f"{len(figures)} figures in `plots/`: " + ", ".join(f"`{f.name}`" for f in figures) + ".")
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
