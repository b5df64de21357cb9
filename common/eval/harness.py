"""An evaluation harness in the spirit of EleutherAI's lm-evaluation-harness: tasks are YAML, models are an interface.

    task = Task.from_yaml("tasks/arith_mc.yaml")       # or Task(**fields)
    result = evaluate(task, GPTChatModel(model), docs)   # {"metrics": {...}, "samples": [...]}

A task names how a document becomes a prompt (`doc_to_text`, a `str.format` template over the document's
fields), what the answer is (`doc_to_target`), the answer choices for multiple choice (`doc_to_choice`: a
field holding a list), how many solved examples go in front (`num_fewshot`, drawn with `fewshot_seed` from
the documents that are not being scored) and its output type:

- `multiple_choice`: each choice is scored by the log-probability of " choice" after the prompt; `acc` takes
  the best total, `acc_norm` the best per character (removing the bias towards short choices);
- `generate_until`: the model writes greedily until a stop string; `exact_match` compares after stripping.

A model is anything with `loglikelihood(pairs) -> [float]` (log p(continuation | context)) and
`generate(prompts, until, max_new) -> [str]`. Every scored document is kept as a sample record, so a score
can always be traced to the prompts and outputs behind it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

OUTPUT_TYPES = ("multiple_choice", "generate_until")


class Model(Protocol):
    """What the harness needs from a model: log-likelihoods of continuations, and greedy generation."""

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[float]: ...

    def generate(self, prompts: list[str], until: list[str], max_new: int) -> list[str]: ...


@dataclass
class Task:
    """One evaluation task: prompt template, target, choices, few-shot setup and output type."""

    task: str
    output_type: str = "generate_until"
    doc_to_text: str = "{question}"
    doc_to_target: str = "{answer}"
    doc_to_choice: str | None = None     # name of the document field holding the list of choices
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    fewshot_seed: int = 1234
    until: list = field(default_factory=lambda: ["\n"])
    max_new: int = 16
    version: int = 1

    def __post_init__(self):
        if self.output_type not in OUTPUT_TYPES:
            raise ValueError(f"task {self.task!r}: output_type must be one of {OUTPUT_TYPES}, got {self.output_type!r}")
        if self.output_type == "multiple_choice" and not self.doc_to_choice:
            raise ValueError(f"task {self.task!r}: a multiple_choice task needs doc_to_choice (the choices' field)")

    @classmethod
    def from_yaml(cls, path) -> Task:
        """Read a task from a YAML file; unknown keys are an error naming the valid ones."""
        from omegaconf import OmegaConf

        raw = OmegaConf.to_container(OmegaConf.load(Path(path)))
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


def evaluate(task: Task, model: Model, docs: list[dict], limit: int | None = None) -> dict:
    """Score `docs` (the first `limit`) on `task`: {"metrics": {...}, "samples": [one record per document]}."""
    docs = docs[:limit] if limit else docs
    samples = []
    if task.output_type == "multiple_choice":
        pairs, spans = [], []
        for i, doc in enumerate(docs):
            ctx = task.fewshot_prefix(docs, i) + task.text(doc)
            ch = task.choices(doc)
            spans.append((len(pairs), len(ch)))
            pairs += [(ctx, task.target_delimiter + c) for c in ch]
        lls = model.loglikelihood(pairs)
        for doc, (start, n) in zip(docs, spans):
            ch, ll = task.choices(doc), lls[start:start + n]
            gold = ch.index(task.target(doc))
            pred = max(range(n), key=lambda j: ll[j])
            pred_norm = max(range(n), key=lambda j: ll[j] / max(1, len(ch[j])))
            samples.append({"choices": ch, "loglikelihoods": ll, "gold": gold, "pred": pred,
                            "acc": float(pred == gold), "acc_norm": float(pred_norm == gold)})
        keys = ("acc", "acc_norm")
    else:
        prompts = [task.fewshot_prefix(docs, i) + task.text(doc) for i, doc in enumerate(docs)]
        outs = model.generate(prompts, task.until, task.max_new)
        for doc, p, o in zip(docs, prompts, outs):
            samples.append({"prompt": p, "output": o, "target": task.target(doc),
                            "exact_match": float(o.strip() == task.target(doc).strip())})
        keys = ("exact_match",)
    metrics = {k: sum(s[k] for s in samples) / max(1, len(samples)) for k in keys}
    return {"task": task.task, "version": task.version, "n": len(samples), "metrics": metrics, "samples": samples}
