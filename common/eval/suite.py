"""One-click evaluation: run tasks on a model, write a versioned results file, compare with the previous run.

    make eval                                   # MODEL=sft TASKS=all
    make eval MODEL=grpo TASKS=instruct,story_endings THRESHOLD=0.02
    python -m common.eval.suite --model hf:/path/to/local/model --tasks wikitext2

Models: the Sprint 5 models by name (`base`, `sft`, `dpo`, `ppo`, `grpo`; trained into `.cache/posttrain` on
first use), a `.pt` file written by `export` (our GPT: weights plus its GPTConfig), or `hf:<folder>` (a
transformers causal LM saved with `save_pretrained`, loaded from disk only). Tasks: names, groups or `all`
(`python -m common.eval.harness --list`).

Each run writes `results/eval/<model>/<UTC time>.json`: the model (name, weights hash), the commit, every
task's version, config hash, seeds, n and metrics with a bootstrap standard error, plus the per-document
samples as JSON Lines beside it. Then it compares with the latest earlier file of the same model:

- a metric **regresses** when it is worse than before by more than the threshold: an absolute drop for
  scores in [0, 1] (accuracy, exact match, ROUGE), a relative rise for bits per byte;
- a task whose version or config changed is **not comparable** (its definition moved, not the model);
- byte and word perplexity are shown but not judged: they are exponentials of bits per byte, which is;
- the command exits 1 when anything regressed (a CI step can run it), else prints "no regression".

The harness is deterministic (greedy decoding, seeded few-shot and distractors), so the same commit and
weights give identical numbers; a difference at all means the code, the data or the weights changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from common.eval import datasets, harness

SCHEMA = 1
SPRINT_MODELS = ("base", "sft", "dpo", "ppo", "grpo")
DEFAULT_THRESHOLD = 0.01


# ---------------------------------------------------------------------------------------------- models


def sprint_lms(names=SPRINT_MODELS, preset: str = "cpu", cache_dir=None, device="cpu") -> dict:
    """{name: (LM, weights hash)} for Sprint 5 models, trained into the cache on first use."""
    from common import ROOT
    from common.eval.lm import GPTLM
    from common.train import posttrain, preference, rl

    cache_dir = cache_dir or ROOT / ".cache" / "posttrain"
    base, sft = posttrain.models_for(preset, device, cache_dir)
    out = {"base": (GPTLM(base.model, "base"), base.key), "sft": (GPTLM(sft.model, "sft", chat=True), sft.key)}
    if any(n in names for n in ("dpo", "ppo", "grpo")):
        splits = posttrain.sft_splits(posttrain.recipes(preset)[1])
        if "dpo" in names:
            t = preference.train_dpo(sft, preference.dpo_recipe(preset), splits, device, cache_dir=cache_dir)
            out["dpo"] = (GPTLM(t.model, "dpo", chat=True), t.key)
        for algo in ("ppo", "grpo"):
            if algo in names:
                t = rl.train_rl(sft, rl.rl_recipe(preset, algo=algo), splits, device, cache_dir=cache_dir)
                out[algo] = (GPTLM(t.model, algo, chat=True), t.key)
    return {n: out[n] for n in names}


def export(model, path, chat: bool = False) -> Path:
    """Save one of our GPTs so `--model <path>` can evaluate it: weights, GPTConfig and the chat flag."""
    from dataclasses import asdict

    from common.run import atomic

    atomic.torch_save({"model": model.state_dict(), "model_config": asdict(model.cfg), "chat": chat}, path)
    return Path(path)


def weights_hash(model) -> str:
    """A short hash of every tensor in the model's state dict (names and bytes): which weights a result is for."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def load_model(spec: str, preset: str = "cpu", cache_dir=None, device="cpu"):
    """(LM, weights hash) for a model spec: a Sprint 5 name, an exported .pt file, or hf:<folder>."""
    from common.eval.lm import GPTLM, HFLM
    from common.nn.model import GPT, GPTConfig
    from common.run.errors import UserError

    if spec in SPRINT_MODELS:
        return sprint_lms((spec,), preset, cache_dir, device)[spec]
    if spec.startswith("hf:"):
        folder = Path(spec[3:])
        if not (folder / "config.json").is_file():
            raise UserError(f"{folder} is not a saved transformers model (no config.json); use save_pretrained().")
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).to(device)
        tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return HFLM(model, tok, name=folder.name), weights_hash(model)
    path = Path(spec)
    if path.suffix == ".pt":
        if not path.is_file():
            raise UserError(f"no model file {path}.")
        saved = torch.load(path, map_location=device, weights_only=True)
        if "model_config" not in saved:
            raise UserError(f"{path} holds no model_config; write it with common.eval.suite.export(model, path).")
        model = GPT(GPTConfig(**saved["model_config"])).to(device)
        model.load_state_dict(saved["model"])
        return GPTLM(model, path.stem, chat=bool(saved.get("chat"))), weights_hash(model)
    raise UserError(f"unknown model {spec!r}: use one of {', '.join(SPRINT_MODELS)}, a .pt file from "
                    "common.eval.suite.export, or hf:<folder of a saved transformers model>.")


# ---------------------------------------------------------------------------------------------- running


def bootstrap_se(values, n_boot: int = 1000, seed: int = 0) -> float:
    """Standard error of the mean of per-document values, by the bootstrap (0 for fewer than two)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    return float(np.std(v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)))


def config_hash(task: harness.Task) -> str:
    return hashlib.sha256(json.dumps(task.config(), sort_keys=True).encode()).hexdigest()[:12]


def run_tasks(lm, tasks, limit: int | None = None, log=print, cache_dir=None, weights: str = "") -> dict:
    """{task name: harness result} for each task name.

    With `cache_dir` and the model's `weights` hash, each result is stored as JSON under a key made of the
    weights, the task's config hash, a hash of its documents and a hash of the scoring code (`CODE`), and read
    back on the next call: the harness is deterministic, so the same weights, task and code give the same
    result (`make reproduce` checks that this stays true). Days 57-59 aggregate what days 51-52 computed this
    way instead of scoring again. A cached result keeps the `seconds` of the run that computed it."""
    out = {}
    for name in tasks:
        task = harness.load_task(name)
        docs = datasets.build(task.dataset)
        docs = docs[:limit or task.limit or None]
        path = None
        if cache_dir is not None and weights:
            data = hashlib.sha256(json.dumps(docs, sort_keys=True).encode() + code_hash().encode()).hexdigest()[:10]
            path = Path(cache_dir) / f"{name}_{weights}_{config_hash(task)}_{data}.json"
        if path is not None and path.is_file():
            res = json.loads(path.read_text())
        else:
            t0 = time.perf_counter()
            res = harness.evaluate(task, lm, docs)
            res["seconds"] = round(time.perf_counter() - t0, 2)
            if path is not None:
                from common.run import atomic

                path.parent.mkdir(parents=True, exist_ok=True)
                atomic.write_text(path, json.dumps(res))
        out[name] = res
        log(f"  {name:22s} n={res['n']:5d}  " + "  ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items())
            + f"  ({res['seconds']:.1f} s)")
    return out


# the files whose edits can change a cached result (the model code is covered by the weights hash)
CODE = ("harness.py", "lm.py", "datasets.py", "metrics.py", "tool_use.py", "../data/chat.py", "../data/instruct.py")


def code_hash() -> str:
    """A hash of the scoring code (`CODE`, paths relative to common/eval/): part of every cached result's key."""
    h = hashlib.sha256()
    for name in CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:10]


def cache_dir_for(ctx) -> Path:
    """Where a day's run keeps harness results: `.cache/eval` beside the post-training models (a scratch folder
    for --quick)."""
    from common.train import posttrain

    return posttrain.cache_dir_for(ctx).parent / "eval"


def sprint_results(ctx, tasks, limit: int | None = None, models=SPRINT_MODELS) -> tuple[dict, dict]:
    """({model: {task: result}}, {model: (LM, weights hash)}) for the Sprint 5 models on `tasks`, cached."""
    from common.train import posttrain

    lms = sprint_lms(models, ctx.preset, posttrain.cache_dir_for(ctx), ctx.device)
    names = harness.resolve(tasks)
    res = {m: run_tasks(lm, names, limit, lambda *_: None, cache_dir_for(ctx), w) for m, (lm, w) in lms.items()}
    return res, lms


# the tasks days 57-59 aggregate (WikiText-2 is left out: it costs ~50 s per model and day 52 reports it)
SCOREBOARD_TASKS = "instruct,instruct_mc,story_endings,story_cloze,story_cloze_mc,story_xsum,tinystories_ppl"


def sprint_runs(ctx, tasks=SCOREBOARD_TASKS, limit: int | None = None, folder=None):
    """The Sprint 5 models' results written as `make eval` writes them (into `folder`, default
    <run dir>/results) and read back: (results, lms, {model: results-file path}, runs as
    `scoreboard.load_latest` returns them)."""
    from common.eval import scoreboard

    results, lms = sprint_results(ctx, tasks, limit)
    folder = folder or ctx.run_dir / "results"
    paths = {m: write(summarise(m, lms[m][1], results[m], limit), results[m], folder) for m in results}
    return results, lms, paths, scoreboard.load_latest(folder)


def summarise(model: str, weights: str, results: dict, limit: int | None = None) -> dict:
    """The versioned record of one run: model, commit, environment, and per task version/config/seeds/metrics."""
    from common.run.gitinfo import git_commit

    tasks = {}
    for name, res in results.items():
        task = harness.load_task(name)
        se = {}
        if task.output_type != "loglikelihood_rolling":
            se = {k: round(bootstrap_se(harness.per_sample(res, k)), 6) for k in res["metrics"]}
        tasks[name] = {"version": task.version, "config_hash": config_hash(task), "dataset": task.dataset,
                       "n": res["n"], "seeds": {"fewshot_seed": task.fewshot_seed, "bootstrap_seed": 0},
                       "metrics": {k: round(v, 6) for k, v in res["metrics"].items()}, "stderr": se,
                       "higher_is_better": {k: k not in harness.LOWER_IS_BETTER for k in res["metrics"]},
                       "seconds": res.get("seconds")}
    return {"schema": SCHEMA, "model": model, "weights": weights, "commit": git_commit(),
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "limit": limit or 0,
            "torch": torch.__version__, "tasks": tasks}


def write(record: dict, results: dict, out_dir) -> Path:
    """results/eval/<model>/<created>.json plus <created>/<task>.jsonl samples; returns the JSON's path."""
    from common.run import atomic

    folder = Path(out_dir) / record["model"]
    stamp = record["created"].replace(":", "").replace("-", "")
    path = folder / f"{stamp}.json"
    k = 1
    while path.exists():                       # two runs within one second keep both files
        path, k = folder / f"{stamp}_{k}.json", k + 1
    folder.mkdir(parents=True, exist_ok=True)
    for name, res in results.items():
        harness.save_samples(res, folder / path.stem / f"{name}.jsonl")
    atomic.write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def history(out_dir, model: str) -> list[Path]:
    """The model's results files, oldest first."""
    folder = Path(out_dir) / model
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


# ---------------------------------------------------------------------------------------------- comparing


DERIVED = ("byte_perplexity", "word_perplexity")   # exponentials of bits per byte: reported, never judged


def compare(prev: dict, cur: dict, threshold: float = DEFAULT_THRESHOLD) -> list[dict]:
    """One row per (task, metric) in `cur`: previous and current value, change (positive = better) and status:
    ok, regression, improved, new (no earlier number), not comparable (task version or config changed) or
    derived (a perplexity: 2^(bits per byte x bytes per unit), so a 1% rise in bits per byte at 16 bits per
    byte is a 12% rise in byte perplexity (2^0.16); only bits per byte is judged)."""
    rows = []
    for name, t in cur["tasks"].items():
        p = prev["tasks"].get(name)
        for metric, value in t["metrics"].items():
            row = {"task": name, "metric": metric, "previous": None, "current": value, "change": None}
            if p is None or metric not in p["metrics"]:
                row["status"] = "new"
            elif (p["version"], p["config_hash"]) != (t["version"], t["config_hash"]):
                row["status"], row["previous"] = "not comparable", p["metrics"][metric]
            else:
                before = p["metrics"][metric]
                higher = t["higher_is_better"][metric]
                change = (value - before) if higher else (before - value) / max(abs(before), 1e-12)
                row.update(previous=before, change=round(change, 6))
                row["status"] = "derived" if metric in DERIVED else (
                    "regression" if change < -threshold else ("improved" if change > threshold else "ok"))
            rows.append(row)
    return rows


def verdict(rows: list[dict]) -> str:
    """'no regression', or 'REGRESSION: ' followed by every regressed task/metric with its old and new value."""
    bad = [r for r in rows if r["status"] == "regression"]
    if bad:
        return "REGRESSION: " + ", ".join(f"{r['task']}/{r['metric']} {r['previous']:.4g} -> {r['current']:.4g}"
                                         for r in bad)
    return "no regression"


def table(rows: list[dict]) -> str:
    """The comparison rows as a GitHub markdown table."""
    from tabulate import tabulate

    return tabulate([[r["task"], r["metric"], "-" if r["previous"] is None else f"{r['previous']:.4f}",
                      f"{r['current']:.4f}", "-" if r["change"] is None else f"{r['change']:+.4f}", r["status"]]
                     for r in rows], headers=["task", "metric", "previous", "current", "change", "status"],
                    tablefmt="github")


def evaluate_model(spec: str, tasks, out_dir, threshold: float = DEFAULT_THRESHOLD, limit: int | None = None,
                   preset: str = "cpu", cache_dir=None, log=print) -> dict:
    """Run, write, compare: {"path", "record", "previous", "rows", "verdict"}."""
    names = harness.resolve(tasks)
    lm, weights = load_model(spec, preset, cache_dir)
    name = getattr(lm, "name", spec)
    log(f"eval: model {name} (weights {weights}), {len(names)} task(s)")
    results = run_tasks(lm, names, limit, log)
    record = summarise(name, weights, results, limit)
    earlier = history(out_dir, name)
    path = write(record, results, out_dir)
    prev = json.loads(earlier[-1].read_text()) if earlier else None
    rows = compare(prev, record, threshold) if prev else []
    return {"path": path, "record": record, "previous": earlier[-1] if earlier else None, "rows": rows,
            "verdict": verdict(rows) if prev else "first run: nothing to compare with", "results": results}


def main(argv=None) -> int:
    """`python -m common.eval.suite` (`make eval`): evaluate, write the results file, compare; exit 1 on a
    regression, 2 on bad input."""
    from common import ROOT
    from common.run.errors import UserError

    p = argparse.ArgumentParser(prog="python -m common.eval.suite", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sft", help="base|sft|dpo|ppo|grpo, a .pt from export(), or hf:<folder>")
    p.add_argument("--tasks", default="all", help="task names or groups, comma-separated, or all")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="allowed drop: absolute for scores in [0,1], relative for bits per byte")
    p.add_argument("--limit", type=int, default=0, help="score only the first N documents of each task")
    p.add_argument("--preset", default="cpu", choices=["nano", "cpu", "gpu"], help="which Sprint 5 models")
    p.add_argument("--out", default=str(ROOT / "results" / "eval"))
    args = p.parse_args(argv)
    try:
        out = evaluate_model(args.model, args.tasks, args.out, args.threshold, args.limit or None, args.preset)
    except (UserError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"\nwritten: {out['path']} (samples in {out['path'].with_suffix('')}/)")
    if out["previous"] is not None:
        print(f"compared with {out['previous'].name} (threshold {args.threshold}):\n")
        print(table(out["rows"]))
    print(f"\n{out['verdict']}")
    return 1 if out["verdict"].startswith("REGRESSION") else 0


if __name__ == "__main__":
    raise SystemExit(main())
