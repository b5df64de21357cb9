"""common/eval/scoreboard.py and card.py on a hand-made pair of results: the long table, groups as micro
averages, ranks, the markdown scoreboard, and a card whose every result row comes from the file."""

import math

import pytest

from common.eval import card, harness, scoreboard


def run_of(model: str, right: dict, bpb_ll: float):
    """(record, samples) with exact-match samples per instruct task (right[t] = list of 0/1) and one bpb task."""
    tasks, samples = {}, {}
    for t in harness.task_names("instruct"):
        v = right.get(t, [0.0, 1.0])
        samples[t] = [{"exact_match": float(x)} for x in v]
        tasks[t] = {"version": 1, "config_hash": "c", "dataset": f"instruct:test:{t}", "n": len(v), "seeds": {},
                    "metrics": {"exact_match": sum(v) / len(v)}, "stderr": {"exact_match": 0.1}}
    samples["tinystories_ppl"] = [{"loglikelihood": bpb_ll, "bytes": 10}]
    tasks["tinystories_ppl"] = {"version": 1, "config_hash": "c", "dataset": "tinystories_heldout", "n": 1,
                                "seeds": {}, "metrics": {"bits_per_byte": -bpb_ll / math.log(2) / 10},
                                "stderr": {}}
    return {"model": model, "weights": "w", "commit": "abc", "created": "now", "tasks": tasks}, samples


RUNS = {"a": run_of("a", {"instruct_copy": [1, 1, 1, 1]}, -10 * math.log(2)),      # bpb 1.0
        "b": run_of("b", {}, -20 * math.log(2))}                                     # bpb 2.0


def test_groups_are_micro_averages_and_ranks_follow_direction():
    board = scoreboard.table(RUNS, n_boot=200)
    g = board[(board.task == "instruct") & (board.model == "a")].iloc[0]
    assert g["group"] and g["n"] == 4 + 5 * 2 and g["value"] == pytest.approx((4 + 5) / 14)
    ranks = scoreboard.ranked(scoreboard.collapsed(board)).set_index(["model", "task"])["rank"]
    assert ranks[("a", "instruct")] == 1 and ranks[("a", "tinystories_ppl")] == 1   # lower bpb ranks first
    assert set(scoreboard.collapsed(board)["task"]) == {"instruct", "tinystories_ppl"}
    md = scoreboard.markdown(board)
    assert "| a " in md and "mean rank" in md and "instruct_copy" not in md


def test_card_rows_come_from_the_results_file():
    info = {"architecture": "x", "parameters": "1", "training": "y", "chat": "no"}
    text, checks = card.render(RUNS["a"], info)
    assert "# Eval card: a" in text and "| tinystories_ppl | bits_per_byte | 1.0000 |" in text
    assert f"| instruct | exact_match | {9 / 14:.4f} |" in text
    assert dict(checks)["commit recorded"] and not dict(checks)["human evaluation"]
