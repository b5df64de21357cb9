import re

from common.course import curriculum


def test_hundred_days_in_ten_sprints():
    days = curriculum.all_days()
    assert [d.n for d in days] == list(range(1, 101))
    for d in days:
        assert d.sprint == curriculum.sprint_of(d.n) == (d.n - 1) // 10 + 1
        assert re.fullmatch(r"\d+[RM]/\d+C/\d+L", d.time), d.time
        assert sum(d.plan.values()) == 240  # every day is a four-hour block
        assert d.focus and d.coding and d.eval and d.deliverable
        assert d.link is None or d.link.startswith("http")
    assert len({curriculum.sprint_info(s)["title"] for s in range(1, 11)}) == 10


def test_known_facts():
    assert curriculum.day(42).focus == "SFT loop"
    assert curriculum.day(5).plan == {"math": 120, "code": 90, "log": 30}
    assert curriculum.day(7).plan == {"read": 90, "code": 120, "log": 30}
    assert {d.n for d in curriculum.all_days() if "M" in d.time} == {5, 11, 16, 18}
    assert curriculum.sprint_days(3) == list(range(21, 31))


def test_targets_are_well_formed_and_checkable():
    mha = {t.metric: t for t in curriculum.targets(1)}["mha_max_abs_err"]
    assert mha.met(3e-7) and not mha.met(1e-3) and mha.met(None) is None
    gpu = {t.metric: t for t in curriculum.targets(7)}["val_loss_gpu"]
    assert gpu.op == "~" and gpu.met(1.50) and not gpu.met(1.60)
    for d in curriculum.all_days():
        for t in d.targets:
            assert t.op in ("<=", ">=", "~") and isinstance(t.value, (int, float))


def test_parse_time_rejects_garbage():
    import pytest

    with pytest.raises(ValueError):
        curriculum.parse_time("90X/120C")


def test_every_built_day_has_its_tiers():
    """Seed 001's tiers: every built day names stretch items; the core is its coding + deliverable."""
    from common import ROOT
    from common.run.dayfiles import built_days

    for n in built_days(ROOT):
        d = curriculum.day(n)
        assert d.stretch and all(isinstance(x, str) and len(x) > 20 for x in d.stretch + d.mega_stretch), n
        assert d.coding in d.core
