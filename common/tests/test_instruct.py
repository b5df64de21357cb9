"""Generated instruction data: answers that verify, splits with no shared prompt or test phrasing, the chat spans."""

import re

import pytest

from common.data import instruct
from common.eval.calculator import evaluate, format_number


@pytest.fixture(scope="module")
def splits():
    return instruct.generate(n_per_family=150, seed=3)


def test_same_seed_same_data_and_another_seed_differs(splits):
    assert instruct.generate(n_per_family=150, seed=3) == splits
    assert instruct.generate(n_per_family=150, seed=4)["train"] != splits["train"]


def test_no_prompt_in_two_splits_and_no_duplicates(splits):
    keys = {s: [instruct.normalise(e.prompt) for e in splits[s]] for s in instruct.SPLITS}
    for s in instruct.SPLITS:
        assert len(keys[s]) == len(set(keys[s])), f"duplicate prompt in {s}"
    assert not set(keys["train"]) & set(keys["val"])
    assert not (set(keys["train"]) | set(keys["val"])) & set(keys["test"])
    assert sum(len(v) for v in keys.values()) == 150 * len(instruct.FAMILIES)


def test_test_phrasings_never_appear_in_train_or_val(splits):
    for family in instruct.FAMILIES:
        held = instruct.held_out_template(family)
        seen = {e.template for s in ("train", "val") for e in splits[s] if e.family == family}
        tested = {e.template for e in splits["test"] if e.family == family}
        assert tested == {held} and held not in seen and seen, family
        # and the held-out wording's fixed words are absent from every training prompt of the family
        stem = max(re.split(r"\{[^}]*\}", instruct.TEMPLATES[family][held]), key=len).strip()  # longest literal
        assert not any(stem in e.prompt for e in splits["train"] if e.family == family), (family, stem)


def test_every_answer_verifies(splits):
    for e in (e for s in instruct.SPLITS for e in splits[s]):
        if e.expression:
            assert format_number(evaluate(e.expression)) == e.answer, e
            assert float(e.answer) == int(float(e.answer)), e  # whole-number answers only
        elif e.family == "reverse":
            word = e.prompt.split("'")[1]
            assert e.answer == word[::-1] and len(word) >= 4
        elif e.family == "copy":
            assert e.prompt.endswith(e.answer)
        elif e.family == "lookup":
            key = e.prompt.rsplit(" ", 1)[-1].strip("?.")
            if key not in instruct.ITEMS:  # "Given ..., what value does kiwi have?"
                key = e.prompt.split("does ")[-1].split(" ")[0]
            assert f"{key}={e.answer}" in e.prompt, e


def test_render_span_covers_exactly_the_assistant_turn(splits):
    ex = splits["train"][0]
    text, (a, b) = instruct.render(ex)
    assert text[a:b] == ex.answer + instruct.END
    assert text[:a] == f"{instruct.USER}{ex.prompt}{instruct.ASSISTANT}" and b == len(text)
    prompt_only, span = instruct.render(ex, with_answer=False)
    assert span is None and text.startswith(prompt_only) and prompt_only.endswith(instruct.ASSISTANT)
    assert instruct.parse_reply(ex.answer + instruct.END + "junk") == ex.answer
    assert instruct.parse_reply("  42 ") == "42"


def test_no_special_marker_inside_the_data(splits):
    for e in (e for s in instruct.SPLITS for e in splits[s]):
        assert not any(m in e.prompt or m in e.answer for m in instruct.SPECIAL)


def test_data_card_counts_match(splits):
    card = instruct.data_card(splits, seed=3)
    for s in instruct.SPLITS:
        assert sum(card["sizes"][s].values()) == card["total"][s] == len(splits[s])
    assert set(card["test_phrasings"]) == set(instruct.FAMILIES) and card["known_biases"]


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="unknown task family"):
        instruct.generate(5, families=("poetry",))
    with pytest.raises(ValueError, match="distinct prompts"):
        instruct.generate(14_100, families=("convert",))  # 8 unit pairs x 250 values x 7 phrasings = 14,000


def test_first_per_family_keeps_order_and_count():
    exs = instruct.generate(20, seed=5)["train"]
    few = instruct.first_per_family(exs, 3)
    assert len(few) == 3 * len(instruct.FAMILIES)
    assert [e.family for e in few] == [f for f in instruct.FAMILIES for _ in range(3)]
    assert few[:3] == [e for e in exs if e.family == instruct.FAMILIES[0]][:3]
    assert instruct.first_per_family(exs, 0) == exs
