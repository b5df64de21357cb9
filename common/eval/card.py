"""Eval cards: one markdown page per model, filled from its versioned results file (in the spirit of Model
Cards, Mitchell et al. 2019, narrowed to what an evaluation can vouch for).

    text, checks = render(run, model_info)          # run = scoreboard.load_latest(folder)[model]
    python -m common.eval.card                      # every model under results/eval/ -> results/eval/cards/

The template (`templates/eval_card.md`, `string.Template` placeholders) fixes the sections: model, intended
use, evaluation data, metric definitions, results with intervals, limitations, and a reporting checklist.
The checklist is computed, not ticked by hand: each item is a test on the results file (is every number
given with its n? with an interval? are the commit, every task version and the seeds recorded?). A commit
ending in `+dirty` means the results came from uncommitted code: the card shows it, the reader decides.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from string import Template

from common.eval import scoreboard
from common.eval.suite import bootstrap_se

TEMPLATE = Path(__file__).with_name("templates") / "eval_card.md"

METRIC_TEXT = {
    "exact_match": "exact match: the reply's first line, stripped, equals the answer (numbers compare by value)",
    "acc": "accuracy: the choice with the highest total log-likelihood is the gold one",
    "acc_norm": "normalised accuracy: the same with log-likelihood divided by the choice's length in bytes",
    "rouge1": "ROUGE-1 F1 (rouge-score, Porter stemming) against the reference sentence",
    "rouge2": "ROUGE-2 F1, bigram overlap",
    "rougeL": "ROUGE-L F1, longest common subsequence",
    "bits_per_byte": "bits per byte: minus the summed log-likelihood in bits over the summed UTF-8 bytes (lower is "
                     "better)",
}
HELD_OUT = {"instruct": "yes: test split, phrasings never trained on", "story": "yes: last 5% of the TinyStories slice",
            "tinystories": "yes: last 5% of the TinyStories slice", "wikitext2": "yes: never trained on"}


def model_info(lm, stage: str) -> dict:
    """Architecture, size and training description of one of our GPTs (`stage`: base, sft, dpo, ppo or grpo)."""
    cfg = lm.model.cfg
    n = sum(p.numel() for p in lm.model.parameters())
    training = {
        "base": "pretrained on the characters of a 2 MiB TinyStories slice (the last 5% held out), Sprint 3's recipe",
        "sft": "the base model fine-tuned on generated instructions (six verifiable families, Sprint 5 day 42)",
        "dpo": "SFT, then DPO on verifier-labelled preference pairs (day 43)",
        "ppo": "SFT, then PPO-lite with the verifier as reward (day 45)",
        "grpo": "SFT, then GRPO with the verifier as reward (day 45)",
    }.get(stage, "not recorded")
    return {"architecture": f"GPT, {cfg.n_layer} layers x {cfg.n_embd} wide, {cfg.n_head} heads, {cfg.pos} positions, "
                            f"{cfg.norm} norm, {cfg.mlp} MLP, {cfg.block_size}-token window, characters "
                            f"({cfg.vocab_size} ids)",
            "parameters": f"{n:,}", "training": training, "chat": "yes" if lm.chat else "no"}


def checklist(rec: dict, rows: list[dict]) -> list[tuple[str, bool]]:
    """Reporting checks computed from the results file and the card's result rows."""
    return [
        ("every score has its number of documents", all(r["n"] for r in rows)),
        ("every accuracy-type score has a 95% interval", all(not math.isnan(r["lo"]) for r in rows)),
        ("every task's version and config hash recorded", all("version" in t and "config_hash" in t
                                                               for t in rec["tasks"].values())),
        ("commit recorded", bool(rec.get("commit")) and rec.get("commit") != "unknown"),
        ("seeds recorded", all("seeds" in t for t in rec["tasks"].values())),
        ("weights identified by hash", bool(rec.get("weights"))),
        ("contamination checked (n-gram overlap with training data)", False),
        ("human evaluation", False),
    ]


def render(run: tuple, info: dict, extra: str = "", generator: str = "python -m common.eval.card",
           results_file: str = "results/eval/<model>/<time>.json") -> tuple[str, list[tuple[str, bool]]]:
    """(markdown, checklist) of one model's card from (record, samples) as `scoreboard.load_latest` returns them."""
    rec, _ = run
    grouped = scoreboard.with_groups({rec["model"]: run})[rec["model"]]
    board = scoreboard.table({rec["model"]: run})
    prim = scoreboard.ranked(scoreboard.collapsed(board))
    se = {t: rec["tasks"][t].get("stderr", {}) for t in rec["tasks"]}
    rows = []
    for _, r in prim.sort_values("task").iterrows():
        err = se.get(r["task"], {}).get(r["metric"])
        if err is None and r["metric"] != "bits_per_byte":        # a group: the SE of its concatenated samples
            err = bootstrap_se([x[r["metric"]] for x in grouped[1].get(r["task"], [])])
        rows.append({"task": r["task"], "metric": r["metric"], "value": r["value"], "lo": r["lo"], "hi": r["hi"],
                     "se": err, "n": int(r["n"])})
    result_rows = "\n".join(
        f"| {r['task']} | {r['metric']} | {r['value']:.4f} | "
        + ("—" if math.isnan(r["lo"]) else f"[{r['lo']:.4f}, {r['hi']:.4f}]") + " | "
        + ("—" if r["se"] is None else f"{r['se']:.4f}") + f" | {r['n']:,} |" for r in rows)
    data_rows = "\n".join(
        f"| {t} | {v['version']} | `{v['dataset']}` | {v['n']:,} | "
        f"{next((h for k, h in HELD_OUT.items() if t.startswith(k)), 'see the task file')} |"
        for t, v in sorted(rec["tasks"].items()))
    used = sorted({m for t in rec["tasks"].values() for m in t["metrics"]} & set(METRIC_TEXT))
    checks = checklist(rec, [r for r in rows if r["metric"] != "bits_per_byte"] or rows)
    text = Template(TEMPLATE.read_text()).substitute(
        model=rec["model"], generator=generator, results_file=results_file, commit=rec.get("commit", "?"),
        created=rec.get("created", "?"), weights=rec.get("weights", "?"), **info,
        intended_use="Teaching: a character-level model of a few hundred thousand to a few million parameters, "
                     "used to study evaluation. Its scores compare training methods on the course's own tasks.",
        out_of_scope="any use by people outside the course; any claim about general language ability; English "
                     "beyond children's stories and the six instruction families; safety-relevant decisions.",
        data_rows=data_rows, metric_definitions="\n".join(f"- **{m}**: {METRIC_TEXT[m]}" for m in used),
        result_rows=result_rows, extra_sections=extra,
        limitations="- 128-character context: long documents are cut from the left.\n"
                    "- Scores on the course's generated tasks do not transfer to other tasks or wordings.\n"
                    "- Task sets are small (67-2,293 documents): see the intervals before comparing models.\n"
                    "- WikiText-2 is the tokenised release, not comparable with published raw-text numbers.",
        checklist_rows="\n".join(f"| {item} | {'yes' if ok else 'no'} |" for item, ok in checks))
    return text, checks


def main(argv=None) -> int:
    """`python -m common.eval.card`: a card for each model with a results file, written to results/eval/cards/."""
    from common import ROOT
    from common.run import atomic

    p = argparse.ArgumentParser(prog="python -m common.eval.card", description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT / "results" / "eval"))
    args = p.parse_args(argv)
    folder = Path(args.results)
    runs = scoreboard.load_latest(folder) if folder.is_dir() else {}
    if not runs:
        print(f"error: no results files under {folder}; run `make eval MODEL=...` first")
        return 2
    for model, run in runs.items():
        info = {"architecture": "see the model's training code", "parameters": "?", "training": "not recorded",
                "chat": "?"}
        text, _ = render(run, info, results_file=str(sorted((folder / model).glob("*.json"))[-1]))
        atomic.write_text(folder / "cards" / f"{model}.md", text)
        print(f"written: {folder / 'cards' / f'{model}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
