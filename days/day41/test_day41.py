"""Day 41: the instruction splits do not leak, the loss share is counted right, the files round-trip."""

import json

import pytest

from common.data import instruct
from common.data.chat import ChatTokenizer
from common.run import runner
from days.day41 import run


def test_generated_splits_have_no_leaks():
    splits = instruct.generate(150, seed=7)
    assert run.split_leaks(splits) == {"prompts": [], "phrasings": []}


def test_split_leaks_finds_planted_leaks():
    splits = instruct.generate(40, seed=1)
    twin = splits["train"][0]
    shouted = instruct.Example(twin.family, instruct.held_out_template(twin.family),
                               "  " + twin.prompt.upper().replace(" ", "   "), twin.answer)
    leaky = {**splits, "test": splits["test"] + [shouted]}
    found = run.split_leaks(leaky)
    assert found["prompts"] == [instruct.normalise(twin.prompt)]  # same prompt up to case and spacing
    moved = {**splits, "train": splits["train"] + [splits["test"][0]]}
    t = splits["test"][0]
    assert (t.family, t.template) in run.split_leaks(moved)["phrasings"]


def test_loss_token_share_by_hand():
    seqs = [([1, 2, 3, 4], [False, False, True, True]), ([1, 2], [False, True])]
    assert run.loss_token_share(seqs) == pytest.approx(3 / 4)  # targets: 3 + 1, of which 2 + 1 carry loss
    tok = ChatTokenizer()
    ex = instruct.Example("copy", 0, "Repeat exactly: ab", "ab")
    ids, mask = tok.encode_spans(*instruct.render(ex)[:1], [instruct.render(ex)[1]])
    assert run.loss_token_share([(ids, mask)]) == pytest.approx(3 / (len(ids) - 1))  # "a", "b", END


def test_skeleton_blanks_numbers_and_quoted_words():
    assert run.skeleton("Reverse the letters of 'kalo'.") == "Reverse the letters of '_'."
    assert run.skeleton("What is 12 + 7?") == "What is # + #?"


def test_constant_baseline_counts_the_modal_answer():
    ex = [instruct.Example("copy", 0, f"p{i}", a) for i, a in enumerate("aab")]
    test = [instruct.Example("copy", 2, f"q{i}", a) for i, a in enumerate("ab")]
    out = run.constant_baseline({"train": ex, "val": [], "test": test})
    assert out == {"copy": {"answer": "a", "test_accuracy": 0.5}}


def test_quick_run_end_to_end(tmp_path):
    out = runner.quick(run, tmp_path)
    m = out["metrics"]
    assert m["leaked_prompts"] == m["leaked_phrasings"] == m["leaked_skeletons"] == 0
    assert m["n_train"] + m["n_val"] + m["n_test"] == 60 * len(instruct.FAMILIES)
    assert 0 < m["loss_token_share"] < m["loss_token_share_with_tools"] < 1
    lines = (tmp_path / "data" / "instruct" / "test.jsonl").read_text().splitlines()
    assert len(lines) == m["n_test"]
    first = json.loads(lines[0])
    assert set(first) == {"family", "template", "prompt", "answer", "expression"}
    card = json.loads((tmp_path / "data" / "instruct" / "card.json").read_text())
    assert card["total"]["train"] == m["n_train"]
