"""common/wrap.py: key metrics per day, LaTeX balance, reference lookup."""

from common import ROOT, wrap


def test_key_metrics_follow_a_days_declaration_else_the_first_five():
    metrics = {f"m{i}": i for i in range(8)} | {"best_setting": "4x8", "best_tps": 1.0}
    assert [k for k, _ in wrap.key_metrics(28, metrics)] == ["best_setting", "best_tps"]  # declared, present only
    assert [k for k, _ in wrap.key_metrics(29, metrics)] == ["m0", "m1", "m2", "m3", "m4"]  # day 29 declares none
    assert wrap.key_metrics(99, {"a": 1}) == [("a", 1)]  # a day not built yet


def test_latex_balanced():
    assert wrap.latex_balanced("a $x$ and $$y$$ and `$code`")
    assert not wrap.latex_balanced("$$ open")


def test_reference_metrics_reads_committed_runs():
    assert wrap.reference_metrics(ROOT, 29)["best_schedule"] in ("cosine", "one-cycle", "wsd")
    assert wrap.reference_metrics(ROOT, 99) == {}
