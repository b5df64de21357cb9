"""Day 60: Sprint 6 wrap — the evaluation results in one table, the README block, and the eval gate decision.

The shared wrap (`common/course/wrap.py`, as on days 10-50) exports every Sprint 6 config, audits the
docstrings of `common/` and rewrites the README block between `<!-- sprint6-results:begin -->` and
`<!-- sprint6-results:end -->`. Then the day reads the sprint's committed reference runs (nothing is
measured again) into a summary, and decides which tasks form the regression gate that Sprint 7's models
must pass (`evaluation.yaml`), by a rule written before the numbers were read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.course import wrap
from common.course.wrap import reference_metrics
from common.run import runner

DAY = 60
SPRINT = 6
HERE = Path(__file__).resolve().parent
KEY_METRICS = ["days_with_reference", "gate_tasks", "missing_docstrings"]
METRIC_KINDS = {}
CANDIDATES = ("instruct", "instruct_mc", "story_endings", "story_cloze", "story_cloze_mc", "story_xsum",
              "tinystories_ppl")


@dataclass
class Config:
    days: str = "51-59"
    update_readme: bool = True
    max_decided: float = 0.9     # a task enters the gate if less than this share of documents is decided in advance
    max_ci_width: float = 0.15   # ... and its widest 95% interval (over models) is at most this wide
    min_spread: float = 0.02     # ... and the models' scores on it differ by at least this much


PRESETS = {"nano": {}, "cpu": {}, "gpu": {}}


def gate(tasks: list[dict], max_decided: float, max_ci_width: float, min_spread: float) -> list[str]:
    """The rule: a task is in the gate when it can tell models apart — its share of documents decided in advance
    (every model right, or every model wrong) is below max_decided, its widest interval is at most max_ci_width,
    and the best and worst model differ by at least min_spread. Tasks without 0/1 scores (bits per byte, ROUGE)
    have no decided share and are judged on the last two; a task with a missing number is left out."""
    # >>> exercise day60.gate: keep the names of the tasks that pass all three tests (skip a test whose value is None)
    keep = []
    for t in tasks:
        if t["ci_width"] is None or t["spread"] is None:
            continue
        if t["decided"] is not None and t["decided"] >= max_decided:
            continue
        if t["ci_width"] <= max_ci_width and t["spread"] >= min_spread:
            keep.append(t["task"])
    return keep
    # <<< exercise day60.gate


def task_facts(m57: dict) -> list[dict]:
    """Per candidate task: decided share, widest interval and spread, read from day 57's reference metrics."""
    return [{"task": t, "decided": m57.get(f"decided_share_{t}"), "ci_width": m57.get(f"ci_width_{t}"),
             "spread": m57.get(f"spread_{t}")} for t in CANDIDATES]


def summary(root: Path) -> list[dict]:
    """The numbers the sprint's issue asks the closing note for, read from the committed reference runs."""
    m = {n: reference_metrics(root, n) for n in range(51, 60)}
    g = lambda n, k: m[n].get(k, "—")  # noqa: E731
    return [
        {"what": "instruct exact match: base / SFT / DPO / PPO / GRPO", "value": " / ".join(
            str(g(51, f"instruct_em_{x}")) for x in ("base", "sft", "dpo", "ppo", "grpo")), "day": 51},
        {"what": "instruct as multiple choice (acc_norm): base / SFT", "value": f"{g(51, 'instruct_mc_acc_norm_base')}"
         f" / {g(51, 'instruct_mc_acc_norm_sft')}", "day": 51},
        {"what": "bits per byte, held-out stories: base / SFT", "value": f"{g(51, 'tinystories_bpb_base')} / "
         f"{g(51, 'tinystories_bpb_sft')}", "day": 51},
        {"what": "HF adapter vs our GPT: max |Δ log-likelihood|", "value": g(51, "hf_max_abs_diff"), "day": 51},
        {"what": "WikiText-2 bits per byte: base / SFT", "value": f"{g(52, 'wikitext2_bpb_base')} / "
         f"{g(52, 'wikitext2_bpb_sft')}", "day": 52},
        {"what": "ROUGE-L of the story summaries: base model / one constant sentence", "value":
         f"{g(52, 'xsum_rougeL_base')} / {g(52, 'xsum_rougeL_constant')}", "day": 52},
        {"what": "MNIST ECE before / after temperature scaling (T)", "value": f"{g(53, 'ece_before')} / "
         f"{g(53, 'ece_after')} (T = {g(53, 'temperature')})", "day": 53},
        {"what": "toxic rate over 1,000 generations: base / SFT", "value": f"{g(54, 'toxic_rate')} / "
         f"{g(54, 'toxic_rate_sft')}", "day": 54},
        {"what": "make eval exit codes: first / second / damaged weights", "value": f"{g(55, 'exit_first')} / "
         f"{g(55, 'exit_second')} / {g(55, 'exit_damaged')}", "day": 55},
        {"what": "eval test suite: passed / failed, coverage of common/eval", "value": f"{g(56, 'tests_passed')} / "
         f"{g(56, 'tests_failed')}, {g(56, 'coverage_eval')}%", "day": 56},
        {"what": "pairs of models that differ (Holm, instruct EM)", "value": g(57, "significant_pairs_instruct"),
         "day": 57},
        {"what": "eval cards: numbers checked / mismatched", "value": f"{g(59, 'numbers_checked')} / "
         f"{g(59, 'numbers_mismatched')}", "day": 59},
    ]


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    metrics = wrap.run_wrap(ctx, SPRINT, wrap.sprint_days(cfg.days), cfg.update_readme)
    d.section("The sprint in numbers")
    d.text("Read from the committed reference runs of days 51-59 (`days/dayNN/reference.json`); '—' marks a day "
           "without one yet.")
    d.table(summary(ctx.root))

    facts = task_facts(reference_metrics(ctx.root, 57))
    chosen = gate(facts, cfg.max_decided, cfg.max_ci_width, cfg.min_spread)
    d.section("The decision: Sprint 7's regression gate")
    d.text(f"The rule, fixed before reading day 57's numbers: a task joins the gate when it can separate models. "
           f"Less than {cfg.max_decided:.0%} of its documents may be decided in advance (every model right, or "
           f"every model wrong), its widest 95% interval may be at most {cfg.max_ci_width} wide, and its best and "
           f"worst model must differ by at least {cfg.min_spread}. Facts from day 57's reference run:")
    d.table([{**f, "in the gate": f["task"] in chosen} for f in facts])
    choice = {"tasks": chosen, "threshold": 0.01, "command": "make eval MODEL=<model> TASKS=" + ",".join(chosen),
              "rule": {"max_decided": cfg.max_decided, "max_ci_width": cfg.max_ci_width,
                       "min_spread": cfg.min_spread}}
    path = ctx.day_dir / "evaluation.yaml"
    wrap.save_yaml(path, "# Sprint 6's decision, assembled by `make day 60` from day 57's reference run (evidence:\n"
                         "# days/day60/deliverable.md): the tasks every later model is checked on, and the threshold "
                         "of day 55.\n", choice)
    d.text(f"Gate: **{', '.join(chosen) or 'no task qualified'}**, at the regression threshold 0.01 of day 55 "
           f"(greedy decoding makes reruns identical, so the threshold only absorbs accepted changes). Saved to "
           f"`{path.name}`.")
    return {**metrics, "gate_tasks": len(chosen)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
