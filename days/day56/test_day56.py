"""Day 56: the JUnit summary on a hand-written report, and a quick run that runs real tests under coverage."""

import pytest

from common.run import runner
from days.day56 import run

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
<testcase classname="common.tests.test_a" name="test_one" time="0.10"/>
<testcase classname="common.tests.test_a" name="test_two" time="0.20"><failure message="boom"/></testcase>
<testcase classname="common.tests.test_b.TestThing" name="test_in_class" time="0.05"/>
<testcase classname="common.tests.test_b" name="test_skip" time="0.00"><skipped message="no data"/></testcase>
<testcase classname="days.day56.test_day56" name="test_err" time="0.01"><error message="fixture"/></testcase>
</testsuite></testsuites>"""


def test_summarise_junit_by_hand():
    out = run.summarise_junit(REPORT)
    assert out["common/tests/test_a.py"] == {"passed": 1, "failed": 1, "skipped": 0, "seconds": 0.30000000000000004}
    assert out["common/tests/test_b.py"]["passed"] == 1 and out["common/tests/test_b.py"]["skipped"] == 1
    assert out["days/day56/test_day56.py"]["failed"] == 1                       # an error counts as a failure
    assert sum(r["passed"] + r["failed"] + r["skipped"] for r in out.values()) == 5


@pytest.mark.slow   # the snapshot test runs the same quick run and checks every metric exactly
def test_quick_run_end_to_end(tmp_path):
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["tests_failed"] == 0 and m["pytest_exit"] == 0 and m["tests_passed"] >= 20
    assert m["known_output_cases"] >= 17 and 0 < m["coverage_eval"] <= 100
