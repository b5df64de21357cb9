"""common/course/exercises.py on a small project in tmp_path (a git repository, as a clone is)."""

import subprocess

import pytest

from common.course import exercises as ex
from common.run.errors import UserError

CODE = '''def double(x):
    """Twice x."""
    # >>> exercise day03.double: return 2 x
    y = x + x
    return y
    # <<< exercise day03.double


def half(x):
    """Half of x."""
    # >>> exercise day03.half: return x / 2
    return x / 2
    # <<< exercise day03.half
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "days" / "day03").mkdir(parents=True)
    (tmp_path / "common" / "ops.py").write_text(CODE)
    (tmp_path / "days" / "day03" / "run.py").write_text("DAY = 3\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.email=a@b", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True)
    return tmp_path


def load(root):
    ns = {}
    exec((root / "common" / "ops.py").read_text(), ns)
    return ns


def test_parse_finds_regions_and_rejects_broken_markers():
    regions = ex.parse(CODE, "ops.py")
    assert [r.id for r in regions] == ["day03.double", "day03.half"] and regions[0].title == "return 2 x"
    assert regions[0].body == "    y = x + x\n    return y\n"
    with pytest.raises(UserError, match="no end marker"):
        ex.parse("# >>> exercise day01.a\nx = 1\n", "f.py")
    with pytest.raises(UserError, match="without its start"):
        ex.parse("# <<< exercise day01.a\n", "f.py")


def test_exercise_stubs_name_the_exercise_and_solution_restores(project):
    done = ex.exercise(project, 3)
    assert [r.id for r in done] == ["day03.double", "day03.half"]
    with pytest.raises(NotImplementedError, match="exercise day03.double is yours to write"):
        load(project)["double"](2)
    assert ex.exercise(project, 3) == []  # idempotent
    assert ex.own(project, 3) is False  # stubs do not count as the learner's code
    ex.solution(project, 3)
    assert (project / "common" / "ops.py").read_text() == CODE and load(project)["double"](2) == 4
    assert ex.own(project, 3) is False


def test_learner_code_counts_as_own_and_diff_shows_it(project):
    ex.exercise(project, 3, only="day03.half")
    path = project / "common" / "ops.py"
    path.write_text(path.read_text().replace(ex.day_regions(project, 3, "day03.half")[0].stub, "    return 0.5 * x\n"))
    assert load(project)["half"](3) == 1.5
    assert "+    return 0.5 * x" in ex.diff(project, 3, "day03.half")
    assert ex.own(project, 3) is False  # day03.double is still the reference
    ex.exercise(project, 3, only="day03.double")
    path.write_text(path.read_text().replace(ex.day_regions(project, 3, "day03.double")[0].stub, "    return x * 2\n"))
    assert ex.own(project, 3) is True
    ex.solution(project, 3)  # the learner's versions are kept beside the reference
    assert (project / ".exercises" / "solutions" / "day03.half.mine.py.txt").read_text() == "    return 0.5 * x\n"


def test_exercise_refuses_a_region_with_uncommitted_edits(project):
    path = project / "common" / "ops.py"
    edited = CODE.replace("    y = x + x\n", "    y = x + x  # my note\n")
    path.write_text(edited)
    with pytest.raises(UserError, match="holds edits that differ from the reference"):
        ex.exercise(project, 3)
    assert path.read_text() == edited  # nothing touched


def test_unknown_exercise_and_day_without_exercises(project):
    with pytest.raises(UserError, match="no exercise 'day03.nope'"):
        ex.exercise(project, 3, only="day03.nope")
    with pytest.raises(UserError, match="no exercises marked"):
        ex.exercise(project, 4)
