"""Day 10: the exported config must equal what the runner resolves, and the README edit must be surgical."""

from omegaconf import OmegaConf

from common.course import wrap
from common.run import runner
from days.day10 import run


def test_exported_configs_round_trip_through_yaml(tmp_path):
    configs = wrap.collect_configs(runner._root_of(run.main), [2, 4, 7])
    assert set(configs) == {"day02", "day04", "day07"} and {"nano", "cpu", "gpu"} <= set(configs["day07"])
    assert configs["day07"]["nanogpt"]["batch_size"] == 12 and configs["day07"]["nanogpt"]["max_iters"] == 2000
    p = tmp_path / "c.yaml"
    p.write_text(OmegaConf.to_yaml(OmegaConf.create(configs)))
    assert OmegaConf.to_container(OmegaConf.load(p)) == configs


def test_replace_section_keeps_everything_else():
    b, e = wrap.markers(1)
    text = f"# Title\n\nintro\n\n{b}\nold stuff\n{e}\n\n## After\nkeep me\n"
    new = wrap.replace_section(text, f"{b}\nNEW\n{e}", 1)
    assert new == f"# Title\n\nintro\n\n{b}\nNEW\n{e}\n\n## After\nkeep me\n"
    appended = wrap.replace_section("# T\n", f"{b}\nX\n{e}", 1)
    assert appended.startswith("# T\n\n" + b) and appended.endswith(e + "\n")
    b2, e2 = wrap.markers(2)  # another sprint's section is left alone
    both = wrap.replace_section(new, f"{b2}\nS2\n{e2}", 2)
    assert f"{b}\nNEW\n{e}" in both and both.endswith(f"{b2}\nS2\n{e2}\n")


def test_docstring_audit_finds_what_is_missing(tmp_path):
    (tmp_path / "a.py").write_text('"""Module doc."""\n\ndef f():\n    x = 1\n    return x\n\n\n'
                                   'def g():\n    """Doc."""\n    return 1\n\n\ndef _private():\n    pass\n')
    (tmp_path / "b.py").write_text("def h():\n    return 2\n")
    assert wrap.docstring_audit(tmp_path) == ["a.py:f", "b.py:<module>"]


def test_day_range_parses_a_span_or_a_single_day():
    assert run.day_range("1-9") == list(range(1, 10))
    assert run.day_range("4") == [4] and run.day_range("11-12") == [11, 12]


def test_quick_run_end_to_end(tmp_path):
    s = runner.quick(run, tmp_path)
    assert s["metrics"]["config_round_trip"] is True and s["metrics"]["configs_exported"] >= 3
    assert (tmp_path / "config.yaml").is_file()
    section = (tmp_path / "README_sprint1.md").read_text()
    assert wrap.markers(1)[0] in section and "| 7 | Tiny GPT loop |" in section
