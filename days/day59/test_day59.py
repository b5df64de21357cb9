"""Day 59: numbers parsed back from a card, the checklist computed from a results file, and a quick run."""

import pytest

from common.eval import card
from common.run import runner
from days.day59 import run

CARD = """# Eval card: x

## Results

| task | metric | value | 95% interval | SE | n |
|---|---|---|---|---|---|
| instruct | exact_match | 0.1461 | [0.1320, 0.1610] | 0.0073 | 2,293 |
| tinystories_ppl | bits_per_byte | 1.5223 | — | — | 67 |

## Limitations
| not | a | 1.0 | result |
"""


def test_card_numbers_reads_only_the_results_table():
    assert run.card_numbers(CARD) == {("instruct", "exact_match"): 0.1461, ("tinystories_ppl", "bits_per_byte"): 1.5223}


def test_checklist_is_computed():
    rec = {"commit": "abc1234", "weights": "w", "tasks": {"t": {"version": 1, "config_hash": "c", "seeds": {}}}}
    checks = dict(card.checklist(rec, [{"n": 10, "lo": 0.1}]))
    assert checks["commit recorded"] and checks["seeds recorded"] and not checks["human evaluation"]
    assert not dict(card.checklist({**rec, "commit": "unknown"}, [{"n": 10, "lo": 0.1}]))["commit recorded"]
    assert not dict(card.checklist(rec, [{"n": 0, "lo": 0.1}]))["every score has its number of documents"]


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinystories")
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["cards_written"] == 5 and m["numbers_mismatched"] == 0 and m["numbers_checked"] >= 5 * 7
    assert (tmp_path / "cards" / "grpo.md").read_text().startswith("# Eval card: grpo")
