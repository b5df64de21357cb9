"""Day 20: the wrap runs for sprint 2, and its checks of the glossary and cheat sheet can fail."""

from common.course import wrap
from common.run import runner
from days.day20 import run


def test_latex_balance_check():
    assert run.latex_balanced("a $x$ and $$y = 1$$ and `$not math`")
    assert not run.latex_balanced("a $x and $$y$$")
    assert not run.latex_balanced("$$ open only")


def test_glossary_terms_are_parsed():
    assert run.glossary_terms("**Adam** — x\n\n**Weight decay** — y\nnot **this** one\n") == ["adam", "weight decay"]


def test_pages_are_balanced_and_complete():
    glossary = (run.HERE / "glossary.md").read_text()
    assert run.latex_balanced(glossary) and run.latex_balanced((run.HERE / "cheatsheet.md").read_text())
    assert len(run.glossary_terms(glossary)) >= 25


def test_quick_run_end_to_end(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["latex_balanced"] is True and m["glossary_missing"] == 0
    section = (tmp_path / "README_sprint2.md").read_text()
    assert wrap.markers(2)[0] in section and "| 12 | Optimizers |" in section
