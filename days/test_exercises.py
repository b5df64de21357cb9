"""Tests that can fail, proven: every built day's exercises, stubbed, make that day's own tests fail.

For each day, `exercises.check_day` copies common/ and days/ to a temporary folder, replaces every
exercise region of the day with its stub (the `raise NotImplementedError` that `make exercise`
writes) and runs `pytest days/dayNN` there. A day whose tests still pass would hand the learner an
exercise that nothing checks. The reference tree passing the same tests is the rest of `make test`.
"""

import os

import pytest

from common import ROOT
from common.course import exercises
from common.run.dayfiles import built_days

DAYS = built_days(ROOT)


@pytest.mark.parametrize("day", DAYS, ids=[f"day{d:02d}" for d in DAYS])
def test_the_days_tests_fail_on_its_stubs(day):
    regions = exercises.day_regions(ROOT, day)
    if not regions and day % 10 == 0:  # a sprint's wrap-up day may send the learner back to the sprint's exercises
        assert "## Your turn" in (ROOT / "days" / f"day{day:02d}" / "notes.md").read_text()
        pytest.skip("wrap-up day: its 'Your turn' points back to the sprint's exercises")
    assert regions, f"day {day} marks no exercise (see common/course/exercises.py)"
    from common import data

    if os.environ.get("REQUIRE_DATA") != "1" and not all(data.available(n, f) for n in data.DATASETS
                                                          for f in data.DATASETS[n]):
        pytest.skip("needs every dataset on DATA_DIR (`make data`): a skipped test cannot fail on a stub")
    failed, named = exercises.check_day(ROOT, day)
    assert failed, f"day {day}: its tests pass with {[r.id for r in regions]} stubbed; nothing checks them"
    assert "exercise day" in named, f"day {day}: the failure does not name the exercise ({named!r})"


def test_every_exercise_id_belongs_to_a_built_day_and_says_what_to_write():
    for r in exercises.scan(ROOT).values():
        assert r.day in DAYS and r.title, f"{r.id} in {r.path}: unknown day or no one-line description"
