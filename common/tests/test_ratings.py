"""Blind A/B ratings: the order is hidden and seeded, answers are validated and saved at once, sessions resume,
and the sprint report reads the file."""

import pytest

from common.eval import ratings


def items(n=4):
    prompts = [f"p{i}" for i in range(n)]
    return ratings.blind_items(prompts, {"sft": [f"s{i}" for i in range(n)], "dpo": [f"d{i}" for i in range(n)]},
                               seed=3)


def scripted(answers):
    it = iter(answers)
    return lambda _question: next(it)


def test_blind_items_hide_the_model_and_keep_the_pairing():
    its = items(40)
    assert items(40) == its  # the same seed, the same order
    flips = 0
    for i, it in enumerate(its):
        assert {it["reply_a"], it["reply_b"]} == {f"s{i}", f"d{i}"}
        assert it[f"model_{'a' if it['reply_a'] == f's{i}' else 'b'}"] == "sft"
        flips += it["model_a"] == "dpo"
    assert 5 < flips < 35  # both orders occur
    with pytest.raises(ValueError, match="two models"):
        ratings.blind_items(["p"], {"a": ["x"]})


def test_rate_validates_saves_each_item_and_resumes(tmp_path):
    path = tmp_path / "r.csv"
    its = items(3)
    shown = []
    n = ratings.rate(its, path, ask=scripted(["7", "4", "2", "a", "5", "5", "=", "q"]), show=shown.append)
    assert n == 2 and any("one of" in s for s in shown)  # "7" was refused with a sentence, then asked again
    rows = ratings.read(path)
    assert [r["item"] for r in rows] == ["0", "1"] and rows[0]["rating_a"] == "4" and rows[1]["preferred"] == "="
    n = ratings.rate(its, path, ask=scripted(["1", "3", "b"]), show=shown.append)  # resumes at item 2
    assert n == 1 and [r["item"] for r in ratings.read(path)] == ["0", "1", "2"]
    s = ratings.summary(path)
    assert s["n"] == 3
    by_model = {}
    for r in ratings.read(path):
        for side in "ab":
            by_model.setdefault(r[f"model_{side}"], []).append(int(r[f"rating_{side}"]))
    assert s["models"] == {m: {"mean": sum(v) / 3, "n": 3} for m, v in by_model.items()}
    assert sum(s["preferred"].values()) == pytest.approx(1.0) and s["preferred"]["tie"] == pytest.approx(1 / 3)


def test_summary_of_nothing_and_the_report_section(tmp_path):
    assert ratings.summary(tmp_path / "none.csv") == {"n": 0, "models": {}, "preferred": {}}
    from common.course import report

    assert report.ratings_section(tmp_path, [44]) == []
    path = tmp_path / "results" / "day44" / "ratings.csv"
    ratings.rate(items(2), path, ask=scripted(["5", "1", "a", "4", "2", "b"]), show=lambda s: None)
    text = "\n".join(report.ratings_section(tmp_path, [44]))
    assert "Day 44: your blind ratings** (2 items" in text and "| dpo |" in text and "| sft |" in text
