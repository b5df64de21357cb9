"""Day 55: one-click eval — a versioned results file, a regression check that behaves like CI, and the noise
a threshold has to clear.

`make eval MODEL=... TASKS=...` (`common/eval/suite.py`) runs the harness on one model, writes
`results/eval/<model>/<time>.json` (model, weights hash, commit, every task's version, config hash, seeds, n,
metrics and bootstrap standard errors) with the per-document samples beside it, and compares with that
model's previous file: exit 0 and "no regression", or exit 1 naming what got worse by more than the
threshold. This run drives the real command three times on one exported model file, the way a CI job
would: the first run has nothing to compare with, the second must report no regression, and the third,
after the weights are damaged on purpose, must fail. Then it measures two kinds of variance: over the
documents (bootstrap) and over decoding seeds (sampling at T = 1).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from dataclasses import dataclass

import numpy as np
import torch

from common.data import instruct
from common.eval import suite
from common.nn import sampling
from common.run import plotting, runner
from common.train import posttrain

DAY = 55
KEY_METRICS = ["exit_first", "exit_second", "exit_damaged", "regressions_damaged", "identical_reruns"]
METRIC_KINDS = {"seconds_*": "timing"}


@dataclass
class Config:
    tasks: str = "instruct,instruct_mc,story_endings,story_cloze_mc,tinystories_ppl"
    threshold: float = 0.01
    damage: float = 0.05      # weight noise for the third run: this fraction of each tensor's std, Gaussian
    seeds: int = 5            # decoding seeds for the sampled-EM spread
    limit: int = 0


PRESETS = {"nano": dict(limit=8, seeds=2), "cpu": {}, "gpu": {}}


def regressed(before: float, after: float, higher_is_better: bool, threshold: float) -> bool:
    """Is `after` worse than `before` by more than `threshold`? Absolute for scores where higher is better,
    relative (a fraction of `before`) for losses such as bits per byte."""
    # >>> exercise day55.regressed: higher_is_better -> before - after > threshold; else (after - before) / |before|
    if higher_is_better:
        return before - after > threshold
    return (after - before) / max(abs(before), 1e-12) > threshold
    # <<< exercise day55.regressed


def cli(args: list[str]) -> tuple[int, str]:
    """`python -m common.eval.suite` in-process: (exit code, what it printed)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = suite.main(args)
    return rc, buf.getvalue()


def damaged(model, frac: float, seed: int):
    """A copy of `model` with Gaussian noise of `frac` times each tensor's std added to every weight."""
    bad = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bad.parameters():
            p.add_(frac * p.std() * torch.randn(p.shape, generator=g))
    return bad


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, out = ctx.deliverable, {}
    _, sft = posttrain.models_for(ctx.preset, ctx.device, posttrain.cache_dir_for(ctx))
    folder = ctx.run_dir / "ci"
    model_file, results = folder / "sft_ci.pt", folder / "results"
    suite.export(sft.model, model_file, chat=True)
    args = ["--model", str(model_file), "--tasks", cfg.tasks, "--threshold", str(cfg.threshold), "--out", str(results),
            "--preset", ctx.preset] + (["--limit", str(cfg.limit)] if cfg.limit else [])

    d.section("Three runs of the command, as a CI job would make them")
    runs = []
    for label in ("first", "second"):
        rc, text = cli(args)
        runs.append({"run": label, "exit code": rc, "verdict": text.strip().splitlines()[-1]})
        out[f"exit_{label}"] = rc
    suite.export(damaged(sft.model, cfg.damage, ctx.seed), model_file, chat=True)
    rc, text = cli(args)
    runs.append({"run": f"third (weights + {cfg.damage:g} std noise)", "exit code": rc,
                 "verdict": text.strip().splitlines()[-1]})
    out["exit_damaged"] = rc
    d.table(runs)
    files = suite.history(results, "sft_ci")
    recs = [json.loads(f.read_text()) for f in files]
    identical = all(recs[0]["tasks"][t]["metrics"] == recs[1]["tasks"][t]["metrics"] for t in recs[0]["tasks"])
    out["identical_reruns"] = float(identical)
    d.text(f"Command: `python -m common.eval.suite --model <file> --tasks {cfg.tasks} --threshold {cfg.threshold}` "
           f"(what `make eval MODEL=<file> TASKS=...` runs). It wrote {len(files)} results files; the first two agree "
           f"on every metric: {identical} (greedy decoding, seeded few-shot and distractors, fixed documents). The "
           f"weights hash changes with the damage: {recs[1]['weights']} -> {recs[2]['weights']}.")
    rows = suite.compare(recs[1], recs[2], cfg.threshold)
    d.section("What the third run reported")
    d.table([{k: r[k] for k in ("task", "metric", "previous", "current", "change", "status")} for r in rows])
    judged = [r for r in rows if r["status"] != "derived"]
    mine = [regressed(r["previous"], r["current"], recs[2]["tasks"][r["task"]]["higher_is_better"][r["metric"]],
                      cfg.threshold) for r in judged]
    out["regressions_damaged"] = sum(r["status"] == "regression" for r in rows)
    out["regressed_agrees"] = float(mine == [r["status"] == "regression" for r in judged])
    d.text(f"{out['regressions_damaged']} of {len(judged)} judged metrics regressed beyond the threshold (the "
           "perplexities are shown as 'derived': they are exponentials of bits per byte, which is judged); this day's "
           f"`regressed` agrees with the suite on every judged row: {bool(out['regressed_agrees'])}. A change counts "
           "as better when it is positive: an absolute difference for scores in [0, 1], a relative one for bits per "
           "byte.")
    task = next(iter(recs[0]["tasks"]))
    d.text("One task's entry in the results file (`results/eval/<model>/<time>.json`):")
    d.text("```json\n" + json.dumps({task: recs[0]["tasks"][task]}, indent=2) + "\n```")

    # --- variance
    d.section("Variance: over documents, and over decoding seeds")
    se_rows = [{"task": t, "metric": k, "value": v, "bootstrap SE": recs[0]["tasks"][t]["stderr"].get(k),
                "documents": recs[0]["tasks"][t]["n"]}
               for t in recs[0]["tasks"] for k, v in recs[0]["tasks"][t]["metrics"].items()
               if k in ("exact_match", "acc_norm")]
    d.table(se_rows)
    docs = posttrain.sft_splits(posttrain.recipes(ctx.preset)[1])["test"]
    if cfg.limit:
        docs = instruct.first_per_family(docs, cfg.limit)
    ems = []
    for s in range(cfg.seeds):
        g = torch.Generator().manual_seed(ctx.seed + s)
        rec = posttrain.score(sft.model, docs, processors=[sampling.temperature(1.0)], generator=g)
        ems.append(float(np.mean([r["correct"] for r in rec])))
    greedy = float(np.mean([r["correct"] for r in posttrain.score(sft.model, docs)]))
    spread = float(np.std(ems, ddof=1)) if len(ems) > 1 else 0.0
    p_hat = float(np.mean(ems))
    binom = float(np.sqrt(p_hat * (1 - p_hat) / len(docs)))
    d.table([{"decoding": "greedy", "exact match": greedy, "spread over seeds (std)": 0.0},
             *[{"decoding": f"T = 1, seed {ctx.seed + s}", "exact match": e, "spread over seeds (std)": ""}
               for s, e in enumerate(ems)],
             {"decoding": f"T = 1, {cfg.seeds} seeds", "exact match": p_hat, "spread over seeds (std)": spread}])
    p = plotting.lines(ctx.plot_path("seeds"), {"sampled (T = 1)": (list(range(cfg.seeds)), ems),
                                                "greedy": (list(range(cfg.seeds)), [greedy] * cfg.seeds)},
                       "decoding seed (offset)", "exact match, six instruction families",
                       "SFT exact match: greedy once, sampled with each seed", markers=True)
    d.image(p, "Exact match of SFT on the instruction tasks: greedy, and sampled at T = 1 with each seed")
    d.text(f"{len(docs):,} instruction prompts (the test split, answered directly). The seed-to-seed standard "
           f"deviation of sampled exact match is {spread:.4f}; a binomial model of {len(docs):,} independent "
           f"answers predicts {binom:.4f}. A regression "
           f"threshold must clear the noise of whatever it compares: with greedy decoding and fixed documents the "
           f"same weights give the same numbers, so the threshold ({cfg.threshold}) only has to absorb the model "
           f"changes you are willing to accept; with sampled decoding it would have to exceed about "
           f"{2 * spread:.3f} (two standard deviations) to avoid false alarms.")
    out.update(sampled_em_mean=round(p_hat, 4), sampled_em_std=round(spread, 5), binomial_se=round(binom, 5),
               greedy_em=round(greedy, 4))
    for i, f in enumerate(files):
        tasks = json.loads(f.read_text())["tasks"].values()
        out[f"seconds_run{i + 1}"] = round(sum(t["seconds"] or 0 for t in tasks), 1)
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
