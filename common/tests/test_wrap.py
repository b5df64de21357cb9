"""common/course/wrap.py: key metrics per day, LaTeX balance, reference lookup."""

from common import ROOT
from common.course import wrap


def test_key_metrics_follow_a_days_declaration_else_the_first_five():
    metrics = {f"m{i}": i for i in range(8)} | {"best_setting": "4x8", "best_tps": 1.0}
    declared = ["best_setting", "best_tps", "gone"]
    assert [k for k, _ in wrap.key_metrics(metrics, declared)] == ["best_setting", "best_tps"]  # present only
    assert [k for k, _ in wrap.key_metrics(metrics, None)] == ["m0", "m1", "m2", "m3", "m4"]  # none declared
    assert wrap.key_metrics({"a": 1}) == [("a", 1)]


def test_latex_balanced():
    assert wrap.latex_balanced("a $x$ and $$y$$ and `$code`")
    assert not wrap.latex_balanced("$$ open")


def test_reference_metrics_reads_committed_runs():
    assert wrap.reference_metrics(ROOT, 29)["best_schedule"] in ("cosine", "one-cycle", "wsd")
    assert wrap.reference_metrics(ROOT, 99) == {}


def test_collect_configs_reads_references_not_code(tmp_path):
    import json

    d = tmp_path / "days" / "day03"
    d.mkdir(parents=True)
    (d / "reference.json").write_text(json.dumps({"metrics": {}, "presets": {"cpu": {"a": 1}, "nano": {"a": 0}}}))
    assert wrap.collect_configs(tmp_path, [2, 3]) == {"day03": {"cpu": {"a": 1}, "nano": {"a": 0}}}


def test_docstring_audit_walks_subpackages(tmp_path):
    (tmp_path / "nn").mkdir()
    (tmp_path / "nn" / "x.py").write_text("def f():\n    a = 1\n    return a\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("def g():\n    pass\n    pass\n")
    assert wrap.docstring_audit(tmp_path) == ["nn/x.py:<module>", "nn/x.py:f"]
