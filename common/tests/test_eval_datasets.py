"""common/eval/datasets.py: held-out stories really are held out, choices contain the answer once, and the
documents are the same on every build."""

import re

import pytest

from common.data import registry
from common.data.chat import to_ascii
from common.eval import datasets as D


def test_heldout_stories_come_after_the_training_cut():
    text = to_ascii(registry.load_text("tinystories", "TinyStories-train-first2MiB.txt"))
    cut = int(len(text) * (1 - D.HELDOUT_FRAC))
    stories = D.heldout_stories()
    assert len(stories) > 50
    assert all(text.index(s[:200]) >= cut - 20 for s in stories)   # each starts in the held-out tail
    assert text.index(stories[0][:200]) < cut + 2000                # and the first soon after the cut


@pytest.mark.parametrize("spec", ["instruct:test", "story_endings"])
def test_choices_hold_the_answer_once_and_are_distinct(spec):
    docs = D.build(spec)
    key = "answer" if spec.startswith("instruct") else "ending"
    for d in docs:
        assert d["choices"].count(d[key]) == 1 and len(set(d["choices"])) == len(d["choices"]) == 4


def test_builds_are_deterministic():
    assert D.build("story_endings") == D.build("story_endings")
    assert D.build("instruct:val:word")[:50] == D.build("instruct:val:word")[:50]


def test_distractors():
    import random

    rng = random.Random(0)
    wrong = D.numeric_distractors("47", rng)
    assert len(wrong) == 3 and "47" not in wrong and all(re.fullmatch(r"-?\d+", w) for w in wrong)
    wrong = D.string_distractors("olosak", rng)
    assert len(set(wrong)) == 3 and "olosak" not in wrong


def test_cloze_answer_appears_before_and_xsum_splits_the_story():
    for d in D.build("story_cloze"):
        assert re.search(rf"\b{d['word']}\b", d["context"])
    for d in D.build("story_xsum"):
        assert d["summary"] not in d["document"] and d["document"].startswith(d["lead"])


def test_wikitext_articles_cover_the_file():
    arts = D.build("wikitext2:test")
    raw = registry.load_text("wikitext2", "test.txt")
    assert len(arts) > 50 and all(a["text"].lstrip().startswith("= ") for a in arts)
    assert sum(len(a["text"].replace(" ", "").replace("\n", "")) for a in arts) == len(raw.replace(" ", "").replace(
        "\n", ""))


def test_unknown_specs_fail_clearly():
    with pytest.raises(ValueError, match="unknown dataset"):
        D.build("squad")
    with pytest.raises(ValueError, match="unknown family"):
        D.build("instruct:test:poetry")
