import datetime as dt

import pytest

from common.course import progress as P
from common.course.progress import Progress, ProgressError

TODAY = dt.date(2026, 3, 10)


@pytest.fixture
def pfile(tmp_path):
    p = tmp_path / "progress.yaml"
    p.write_text(P.fresh_text(), encoding="utf-8")
    return p


def test_fresh_file_has_all_days_todo(pfile):
    prog = Progress.load(pfile)
    assert all(prog.entry(n)["status"] == "todo" for n in range(1, 101))
    assert prog.start_date is None
    assert prog.entry(5)["hours"] == {"math": 0, "code": 0, "log": 0}


def test_round_trip_keeps_comments_and_hand_edits(pfile):
    text = pfile.read_text()
    text = text.replace("  2:   # Speedups 101\n    status: todo",
                        "  2:   # Speedups 101\n    # I did this one on the train\n    status: skipped")
    text = text.replace("    note: ''", "    note: 'my own words'  # keep me", 1)
    pfile.write_text(text)
    prog = Progress.load(pfile)
    prog.finish(1, {"mha_max_abs_err": 1.234567e-7, "backend": "sdpa", "ok": True}, "run-1", today=TODAY)
    prog.add_hours(1, read=1.5, code=2, today=TODAY)
    prog.save()
    out = pfile.read_text()
    assert "# I did this one on the train" in out and "status: skipped" in out
    assert "note: 'my own words'  # keep me" in out
    assert "# 100 Days of AI: your progress" in out  # the header comment survives
    again = Progress.load(pfile)
    e = again.entry(1)
    assert e["status"] == "done" and e["finished"] == TODAY and e["started"] == TODAY
    assert e["metrics"] == {"mha_max_abs_err": 1.2346e-7, "backend": "sdpa", "ok": "True"}
    assert e["hours"] == {"read": 1.5, "code": 2.0, "log": 0}
    assert again.start_date == TODAY
    # only the lines we own changed
    changed = [ln for ln in out.splitlines() if ln not in text.splitlines()]
    assert all(any(k in ln for k in ("start_date", "status", "started", "finished", "hours", "metrics",
                                      "mha_max", "backend", "ok:", "run:")) for ln in changed), changed


@pytest.mark.parametrize("edit, msg", [
    (("status: todo", "status: dnoe"), r"line \d+: status 'dnoe' of day 1 is not one of"),
    (("hours: {read: 0, code: 0, log: 0}", "hours: {read: -1, code: 0, log: 0}"), r"line \d+: hours -1"),
    (("hours: {read: 0, code: 0, log: 0}", "hours: {reading: 1}"), r"category 'reading'"),
    (("started: null", "started: yesterday"), r"line \d+: started 'yesterday'"),
    (("  1:   # Transformer refresher", "  101:"), r"day 101 is not a day number"),
    (("    status: todo\n", "    status: [todo\n"), r"line \d+"),
])
def test_malformed_file_names_the_line_and_is_never_overwritten(pfile, edit, msg):
    bad = pfile.read_text().replace(*edit, 1)
    pfile.write_text(bad)
    with pytest.raises(ProgressError, match=msg):
        Progress.load(pfile)
    assert pfile.read_text() == bad


def test_error_line_number_is_right(pfile):
    lines = pfile.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.strip() == "status: todo")
    lines[i] = "    status: finished"
    pfile.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProgressError, match=f"line {i + 1}:"):
        Progress.load(pfile)


def test_missing_file_is_created_fresh_and_not_a_mapping(tmp_path):
    with pytest.raises(ProgressError, match="does not exist"):
        Progress.load(tmp_path / "progress.yaml", create=False)
    prog = Progress.load(tmp_path / "progress.yaml")  # not shipped: the first use writes it
    assert (tmp_path / "progress.yaml").is_file() and prog.entry(100)["status"] == "todo"
    (tmp_path / "progress.yaml").unlink()
    (tmp_path / "progress.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ProgressError, match="days:"):
        Progress.load(tmp_path / "progress.yaml")


def test_deleted_day_is_recreated_in_order(pfile):
    text = pfile.read_text()
    start = text.index("  3:   #")
    end = text.index("  4:   #")
    pfile.write_text(text[:start] + text[end:])
    prog = Progress.load(pfile)
    assert prog.entry(3)["status"] == "todo"
    prog.finish(3, {"x": 1.0}, today=TODAY)
    prog.save()
    keys = list(Progress.load(pfile).doc["days"])
    assert keys == sorted(keys) and 3 in keys


def test_save_is_atomic(pfile, monkeypatch):
    prog = Progress.load(pfile)
    prog.finish(1, {"a": 1.0}, today=TODAY)
    before = pfile.read_text()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(P.os if hasattr(P, "os") else __import__("os"), "replace", boom)
    with pytest.raises(OSError):
        prog.save()
    assert pfile.read_text() == before
    assert [p.name for p in pfile.parent.iterdir()] == ["progress.yaml"]  # no temp file left


def test_add_hours_rejects_bad_input(pfile):
    prog = Progress.load(pfile)
    with pytest.raises(ProgressError, match="category"):
        prog.add_hours(1, sleep=1)
    with pytest.raises(ProgressError, match="0 to 24"):
        prog.add_hours(1, read=30)


def test_dashboard_and_streak(pfile):
    prog = Progress.load(pfile)
    for n, d in [(1, 8), (2, 9), (3, 10)]:
        prog.finish(n, {"m": float(n)}, today=dt.date(2026, 3, d))
    prog.add_hours(4, code=1.0, today=TODAY)
    assert P.streak(prog, TODAY) == 3
    assert P.streak(prog, dt.date(2026, 3, 11)) == 3  # yesterday still counts
    assert P.streak(prog, dt.date(2026, 3, 12)) == 0
    text = P.dashboard(prog, TODAY)
    assert "3/100 done" in text and "streak 3" in text
    assert "Next: day 4" in text and "make day 4" in text
    assert "Sprint  1 [###~......] 3/10" in text
    assert len(text.splitlines()) <= 20


def test_own_code_is_recorded_and_shown(pfile):
    prog = Progress.load(pfile)
    prog.finish(1, {"a": 1.0}, "r1", today=dt.date(2026, 3, 2), own=True)
    prog.finish(2, {"a": 1.0}, "r2", today=dt.date(2026, 3, 3), own=False)
    prog.save()
    prog = Progress.load(pfile)
    assert prog.entry(1)["own"] is True and prog.entry(2)["own"] is False and prog.entry(3)["own"] is None
    assert "[@#........]" in P.dashboard(prog, today=dt.date(2026, 3, 3))


def test_reading_states_are_set_explicitly_never_ticked_by_finishing(pfile):
    prog = Progress.load(pfile)
    prog.finish(1, {}, "r1", today=dt.date(2026, 3, 2))
    assert prog.entry(1)["reading"] == []  # a finished day is not a read paper
    assert prog.set_reading(1, "implemented") == ["implemented"]
    assert prog.set_reading(1, "read") == ["read", "implemented"]
    with pytest.raises(ProgressError, match="Unknown reading state 'skimmed'"):
        prog.set_reading(1, "skimmed")
    prog.save()
    assert Progress.load(pfile).entry(1)["reading"] == ["read", "implemented"]


def test_a_missed_target_is_recorded_with_the_day(pfile):
    prog = Progress.load(pfile)
    prog.finish(7, {"val_loss": 1.95, "overfit_loss": 0.01}, "r7", today=dt.date(2026, 3, 2))
    assert prog.doc["days"][7]["missed_targets"] == ["val_loss"]  # 1.95 > the plan's 1.88
    prog.finish(7, {"val_loss": 1.85, "overfit_loss": 0.01}, "r8", today=dt.date(2026, 3, 3))
    assert "missed_targets" not in prog.doc["days"][7]
