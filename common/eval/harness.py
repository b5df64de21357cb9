"""An evaluation harness in the spirit of EleutherAI's lm-evaluation-harness: tasks are YAML, models an interface.

    task = load_task("arith_mc")                       # common/eval/tasks/arith_mc.yaml
    result = evaluate(task, GPTLM(model, chat=True))   # {"metrics": {...}, "samples": [...], ...}
    python -m common.eval.harness --list               # the tasks and what they measure

A task says where its documents come from (`dataset`, a builder in `common.eval.datasets`), how a document
becomes a prompt (`doc_to_text`, a `str.format` template over the document's fields), what the answer is
(`doc_to_target`), the answer choices for multiple choice (`doc_to_choice`: the field holding the list), how
many solved examples go in front (`num_fewshot`, drawn with `fewshot_seed` from the other documents) and
its output type, which decides the request sent to the model (`common.eval.lm`):

- `multiple_choice` (loglikelihood requests): each choice is scored by log p(delimiter + choice | prompt);
  `acc` takes the best total, `acc_norm` the best per byte of the choice (longer choices collect more
  negative log-probability, so the raw total favours short ones);
- `generate_until`: greedy generation until a stop string, the output passed through the task's `filters`
  (answer extraction: `strip`, `lower`, `first_line`, `{regex: pattern}` keeping the first match) and
  scored by the task's `metrics` (`exact_match`, numbers by value; `rouge1`, `rouge2`, `rougeL` F1);
- `loglikelihood_rolling`: the log-probability of each whole document, summed into `bits_per_byte`,
  `byte_perplexity` and `word_perplexity` (totals over all documents, not means of per-document ratios).

A task file may start with `include: _base.yaml` to take shared fields from a base file, and name a `group`;
`resolve("instruct,story_endings")` expands groups into their tasks. `chat: true` marks a task posed as an
instruction; a chat model sees it inside its chat template. Every scored document is kept as a sample record
(`save_samples` writes them as JSON Lines), so each score can be traced to the prompts and outputs behind it;
`version` changes whenever a task's scoring changes, so results files say which definition produced a number.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.eval import metrics as M

OUTPUT_TYPES = ("multiple_choice", "generate_until", "loglikelihood_rolling")
GEN_METRICS = ("exact_match", "rouge1", "rouge2", "rougeL")
TASK_DIR = Path(__file__).with_name("tasks")
LOWER_IS_BETTER = {"bits_per_byte", "byte_perplexity", "word_perplexity"}


@dataclass
class Task:
    """One evaluation task: data, prompt template, target, choices, few-shot setup, output type, scoring."""

    task: str
    group: str = ""                      # tasks of one group are reported together (and averaged)
    dataset: str = ""                    # "builder" or "builder:arg", see common.eval.datasets
    output_type: str = "generate_until"
    description: str = ""
    doc_to_text: str = "{question}"
    doc_to_target: str = "{answer}"
    doc_to_choice: str | None = None     # name of the document field holding the list of choices
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    fewshot_seed: int = 1234
    chat: bool = False
    until: list = field(default_factory=lambda: ["\n"])
    max_new: int = 16
    filters: list = field(default_factory=lambda: ["strip"])
    metrics: list = field(default_factory=list)
    limit: int = 0                       # 0: every document
    stride: int = 0                      # loglikelihood_rolling: window advance in tokens (0: half the window)
    version: int = 1

    def __post_init__(self):
        if self.output_type not in OUTPUT_TYPES:
            raise ValueError(f"task {self.task!r}: output_type must be one of {OUTPUT_TYPES}, got {self.output_type!r}")
        if self.output_type == "multiple_choice" and not self.doc_to_choice:
            raise ValueError(f"task {self.task!r}: a multiple_choice task needs doc_to_choice (the choices' field)")
        if self.output_type == "generate_until":
            self.metrics = list(self.metrics or ["exact_match"])
            bad = [m for m in self.metrics if m not in GEN_METRICS]
            if bad:
                raise ValueError(f"task {self.task!r}: unknown metric(s) {bad}; valid: {list(GEN_METRICS)}")
            for f in self.filters:
                make_filter(f)               # fail at load time, not mid-run

    @classmethod
    def from_yaml(cls, path) -> Task:
        """Read a task from a YAML file; unknown keys are an error naming the valid ones."""
        from omegaconf import OmegaConf

        raw = OmegaConf.to_container(OmegaConf.load(Path(path)))
        if isinstance(raw, dict) and "include" in raw:          # shared fields from a base file beside it
            base = OmegaConf.to_container(OmegaConf.load(Path(path).parent / raw.pop("include")))
            raw = {**base, **raw}
        if not isinstance(raw, dict) or "task" not in raw:
            raise ValueError(f"{path}: a task file is a mapping with at least a 'task' name")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown task field(s) {unknown}; valid: {sorted(known)}")
        return cls(**raw)

    def text(self, doc: dict) -> str:
        """The prompt of one document."""
        return self.doc_to_text.format(**doc)

    def target(self, doc: dict) -> str:
        return self.doc_to_target.format(**doc)

    def choices(self, doc: dict) -> list[str]:
        return list(doc[self.doc_to_choice])

    def fewshot_prefix(self, pool: list[dict], exclude: int) -> str:
        """`num_fewshot` solved examples from `pool` (never document `exclude`), seeded per document."""
        if not self.num_fewshot:
            return ""
        rng = random.Random(self.fewshot_seed * 1_000_003 + exclude)
        idx = [i for i in range(len(pool)) if i != exclude]
        shots = [pool[i] for i in rng.sample(idx, min(self.num_fewshot, len(idx)))]
        return "".join(self.text(d) + self.target_delimiter + self.target(d) + self.fewshot_delimiter for d in shots)

    def config(self) -> dict:
        return asdict(self)


def task_names(group: str | None = None) -> list[str]:
    """The tasks in common/eval/tasks/ (files starting with "_" are shared bases, not tasks), or one group's."""
    names = sorted(p.stem for p in TASK_DIR.glob("*.yaml") if not p.stem.startswith("_"))
    return [n for n in names if load_task(n).group == group] if group else names


def resolve(names) -> list[str]:
    """Task names from a list that may name groups or "all" (comma-separated string or list)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out = []
    for n in names:
        expanded = task_names() if n == "all" else (task_names(n) or [n])
        out += [e for e in expanded if e not in out]
    for n in out:
        load_task(n)                         # unknown names fail here, with the list of known ones
    return out


def load_task(name_or_path) -> Task:
    """A task by name (a YAML file in common/eval/tasks/) or by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise FileNotFoundError(f"no task file {p}")
        return Task.from_yaml(p)
    path = TASK_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ValueError(f"unknown task {name_or_path!r}; known: {', '.join(task_names())}")
    return Task.from_yaml(path)


# ---------------------------------------------------------------------------------------------- filters


def make_filter(spec):
    """A filter from its spec: "strip", "lower", "first_line", or {"regex": pattern} (first match, group 1 if
    the pattern has a group; the whole output when nothing matches, so a miss stays visible in the sample)."""
    if spec == "strip":
        return str.strip
    if spec == "lower":
        return str.lower
    if spec == "first_line":
        return lambda s: s.strip().split("\n", 1)[0]
    if isinstance(spec, dict) and set(spec) == {"regex"}:
        pat = re.compile(spec["regex"])

        def first_match(s: str) -> str:
            m = pat.search(s)
            return (m.group(1) if pat.groups else m.group(0)) if m else s
        return first_match
    raise ValueError(f"unknown filter {spec!r}: use strip, lower, first_line or {{regex: pattern}}")


def apply_filters(text: str, specs) -> str:
    """`text` passed through each filter of `specs` in order (see `make_filter`)."""
    for spec in specs:
        text = make_filter(spec)(text)
    return text


# ---------------------------------------------------------------------------------------------- scoring


def rouge(prediction: str, reference: str) -> dict:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 of one prediction against one reference (Google's rouge-score, with
    its default tokenizer: lower case, letters and digits only, Porter stemming)."""
    from rouge_score import rouge_scorer

    global _SCORER
    try:
        scorer = _SCORER
    except NameError:
        scorer = _SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    s = scorer.score(reference, prediction)
    return {k: s[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")}


def evaluate(task: Task, model, docs: list[dict] | None = None, limit: int | None = None) -> dict:
    """Score the task's documents (or `docs`; the first `limit`) with `model`:
    {"task", "version", "n", "metrics", "samples", "config", "model"}."""
    if docs is None:
        from common.eval import datasets

        docs = datasets.build(task.dataset)
    limit = task.limit if limit is None else limit
    docs = docs[:limit] if limit else docs
    if not docs:
        raise ValueError(f"task {task.task!r}: no documents to score")
    wrap = model.apply_chat if task.chat else (lambda s: s)
    samples = []
    if task.output_type == "multiple_choice":
        pairs, spans = [], []
        for i, doc in enumerate(docs):
            ctx = wrap(task.fewshot_prefix(docs, i) + task.text(doc))
            ch = task.choices(doc)
            spans.append((len(pairs), len(ch)))
            pairs += [(ctx, task.target_delimiter + c) for c in ch]
        lls = [ll for ll, _ in model.loglikelihood(pairs)]
        for doc, (start, n) in zip(docs, spans):
            ch, ll = task.choices(doc), lls[start:start + n]
            gold = ch.index(task.target(doc))
            pred = max(range(n), key=lambda j: ll[j])
            pred_norm = max(range(n), key=lambda j: ll[j] / max(1, len(ch[j].encode())))
            samples.append({"prompt": pairs[start][0], "choices": ch, "loglikelihoods": ll, "gold": gold,
                            "pred": pred, "acc": float(pred == gold), "acc_norm": float(pred_norm == gold)})
        metrics = {k: _mean(samples, k) for k in ("acc", "acc_norm")}
    elif task.output_type == "generate_until":
        prompts = [wrap(task.fewshot_prefix(docs, i) + task.text(doc)) for i, doc in enumerate(docs)]
        outs = model.generate(prompts, task.until, task.max_new)
        for doc, p, o in zip(docs, prompts, outs):
            target, answer = task.target(doc), apply_filters(o, task.filters)
            rec = {"prompt": p, "output": o, "answer": answer, "target": target}
            if "exact_match" in task.metrics:
                rec["exact_match"] = float(M.exact_match(answer, target))
            if any(m.startswith("rouge") for m in task.metrics):
                rec.update(rouge(answer, target))
            samples.append(rec)
        metrics = {k: _mean(samples, k) for k in task.metrics}
    else:
        texts = [task.target(doc) for doc in docs]
        lls = model.loglikelihood_rolling(texts, stride=task.stride or None)
        for t, ll in zip(texts, lls):
            samples.append({"chars": len(t), "bytes": len(t.encode()), "words": len(t.split()),
                            "loglikelihood": ll, "bits_per_byte": -ll / math.log(2) / max(1, len(t.encode()))})
        total = sum(s["loglikelihood"] for s in samples)
        nbytes, nwords = sum(s["bytes"] for s in samples), sum(s["words"] for s in samples)
        metrics = {"bits_per_byte": -total / math.log(2) / nbytes, "byte_perplexity": math.exp(-total / nbytes),
                   "word_perplexity": math.exp(-total / nwords)}
    return {"task": task.task, "version": task.version, "n": len(samples), "metrics": metrics, "samples": samples,
            "config": task.config(), "model": model.describe() if hasattr(model, "describe") else {}}


def _mean(samples, key) -> float:
    return sum(s[key] for s in samples) / len(samples)


def per_sample(result: dict, metric: str) -> list[float]:
    """The per-document values behind one of a result's metrics (for bootstrap intervals and paired tests)."""
    return [s[metric] for s in result["samples"]]


def save_samples(result: dict, path) -> Path:
    """The result's sample records as JSON Lines (one document per line), written atomically."""
    from common.run import atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, "".join(json.dumps(s) + "\n" for s in result["samples"]))
    return path


def main(argv=None) -> int:
    """`python -m common.eval.harness --list`: the tasks, their output type, data and metrics."""
    p = argparse.ArgumentParser(prog="python -m common.eval.harness", description=__doc__.splitlines()[0])
    p.add_argument("--list", action="store_true", help="list the tasks")
    args = p.parse_args(argv)
    for name in task_names():
        t = load_task(name)
        mets = t.metrics if t.output_type == "generate_until" else (
            ["acc", "acc_norm"] if t.output_type == "multiple_choice" else ["bits_per_byte", "word_perplexity"])
        print(f"{name:24s} v{t.version}  {t.output_type:22s} {t.dataset:28s} {', '.join(mets)}")
        if args.list and t.description:
            print(f"{'':26s}{t.description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
