"""Day 59: eval cards — a template, and one card per model generated from its versioned results file.

`common/eval/templates/eval_card.md` is the template (model, intended use, evaluation data, metric
definitions, results with intervals, limitations, a reporting checklist); `common/eval/card.py` fills it
from a results file, so every number on a card has a source. This run writes each Sprint 5 model's results
file (as `make eval` does), renders its card into `days/day59/cards/<model>.md`, adds the day's own
measurements (bias pairs and calibration of the next-character predictions) as extra sections, and checks
every card against its file: each result row on the card must equal the number in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from common.eval import calibration, card, probes, scoreboard, suite
from common.run import atomic, runner
from common.train import posttrain

DAY = 59
KEY_METRICS = ["cards_written", "numbers_checked", "numbers_mismatched", "checklist_passed_sft"]
METRIC_KINDS = {}
MODELS = suite.SPRINT_MODELS


@dataclass
class Config:
    tasks: str = suite.SCOREBOARD_TASKS
    limit: int = 0
    lm_tokens: int = 20_000   # held-out story characters for each model's calibration section


PRESETS = {"nano": dict(limit=8, lm_tokens=1000), "cpu": {}, "gpu": {}}


def card_numbers(text: str) -> dict:
    """{(task, metric): value} from the Results table of a card: rows '| task | metric | value | ...'."""
    # >>> exercise day59.card_numbers: find the Results section, parse each table row's first three cells
    section = text.split("## Results", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"-?\d+(\.\d+)?", cells[2]):
            out[(cells[0], cells[1])] = float(cells[2])
    return out
    # <<< exercise day59.card_numbers


def extra_sections(lm, pairs, ids) -> tuple[str, dict]:
    """Markdown for the bias-pair and calibration sections of one model's card, and the numbers in them."""
    lls = lm.loglikelihood([("\n", " " + p[k]) for p in pairs for k in ("stereo", "anti")])
    v = np.array([x for x, _ in lls])
    share = float((v[0::2] > v[1::2]).mean())
    block = lm.model.cfg.block_size
    n = (len(ids) - 1) // block * block
    x, y = ids[:n].view(-1, block), ids[1:n + 1].view(-1, block)
    with torch.no_grad():
        logits = torch.cat([lm.model(x[i:i + 64])[0] for i in range(0, len(x), 64)])
    logits = logits.reshape(-1, lm.model.cfg.vocab_size)
    s = calibration.summary(logits, y.reshape(-1))
    text = (f"## Probes and calibration (measured by day 59)\n\n"
            f"- Bias pairs ({len(pairs)} his/her swaps next to stereotyped jobs, day 54's set): the stereotyped "
            f"sentence is the more likely one in {share:.1%} of pairs (50% = no preference).\n"
            f"- Next-character calibration on {n:,} held-out story characters: accuracy {s['accuracy']:.3f}, mean "
            f"confidence {s['confidence']:.3f}, ECE {s['ece']:.4f} (15 bins), NLL {s['nll']:.3f} nats.\n\n")
    return text, {"stereo_share": share, "ece": s["ece"]}


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, out = ctx.deliverable, {}
    results, lms, paths, runs = suite.sprint_runs(ctx, cfg.tasks, cfg.limit or None)
    pairs = probes.bias_pairs()
    _, val_ids = posttrain.pretraining_text(posttrain.recipes(ctx.preset)[0].corpus_chars)
    ids = val_ids[:cfg.lm_tokens + 1]
    cards_dir = ctx.day_dir / "cards"
    checked = mismatched = 0
    rows = []
    for m in MODELS:
        lm = lms[m][0]
        extra, nums = extra_sections(lm, pairs, ids)
        text, checks = card.render(runs[m], card.model_info(lm, m), extra, generator="make day 59",
                                   results_file=f"logs/day59/<run>/results/{m}/{paths[m].name}")
        atomic.write_text(cards_dir / f"{m}.md", text)
        on_card = card_numbers(text)
        truth = {(r["task"], r["metric"]): r["value"] for _, r in
                 scoreboard.ranked(scoreboard.collapsed(scoreboard.table({m: runs[m]}))).iterrows()}
        for key, v in on_card.items():
            checked += 1
            mismatched += int(abs(v - truth[key]) > 5e-5)          # the card prints 4 decimals
        passed = sum(ok for _, ok in checks)
        rows.append({"model": m, "card": f"`cards/{m}.md`", "result rows": len(on_card),
                     "checklist passed": f"{passed} / {len(checks)}", "stereotyped preferred": nums["stereo_share"],
                     "next-char ECE": nums["ece"]})
        out[f"checklist_passed_{m}"] = passed
        out[f"card_ece_{m}"] = round(nums["ece"], 5)
    out.update(cards_written=len(MODELS), numbers_checked=checked, numbers_mismatched=mismatched)

    d.section("The cards")
    d.text("Template: `common/eval/templates/eval_card.md`. Generator: `common/eval/card.py` (`python -m "
           "common.eval.card` makes the same cards from your own `make eval` results). This run's cards:")
    d.table(rows)
    d.text(f"Every result row on every card was parsed back (`card_numbers`, this day's exercise) and compared with "
           f"the results file it came from: {checked} numbers checked, {mismatched} mismatched.")
    failed = [item for item, ok in card.checklist(runs["sft"][0], [{"n": 1, "lo": 0.0}]) if not ok]
    d.section("What the checklist says is missing")
    d.text("Items every card fails, and why: " + "; ".join(failed) + ". No card claims what nobody measured.")
    d.section("One card in full (SFT)")
    d.text((cards_dir / "sft.md").read_text().replace("\n# ", "\n### ").replace("\n## ", "\n#### ", )
           .replace("# Eval card", "### Eval card", 1))
    out["sft_instruct_em"] = round(next(v for (t, k), v in card_numbers((cards_dir / "sft.md").read_text()).items()
                                        if t == "instruct"), 4)
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
