"""Day 10: the exported config must equal what the runner resolves, and the README edit must be surgical."""

import ast

from omegaconf import OmegaConf

from common import config, runner
from days.day10 import run


def test_exported_configs_resolve_like_the_runner(tmp_path):
    configs = run.collect_configs(runner._root_of(run.main), [2, 4, 7])
    from days.day07 import run as day7
    assert configs["day07"]["cpu"] == config.to_dict(config.resolve(day7.Config, day7.PRESETS, None))
    assert configs["day07"]["nanogpt"]["batch_size"] == 12 and configs["day07"]["nanogpt"]["max_iters"] == 2000
    p = tmp_path / "c.yaml"
    p.write_text(OmegaConf.to_yaml(OmegaConf.create(configs)))
    assert OmegaConf.to_container(OmegaConf.load(p)) == configs


def test_replace_section_keeps_everything_else():
    text = f"# Title\n\nintro\n\n{run.BEGIN}\nold stuff\n{run.END}\n\n## After\nkeep me\n"
    new = run.replace_section(text, f"{run.BEGIN}\nNEW\n{run.END}")
    assert new == f"# Title\n\nintro\n\n{run.BEGIN}\nNEW\n{run.END}\n\n## After\nkeep me\n"
    appended = run.replace_section("# T\n", f"{run.BEGIN}\nX\n{run.END}")
    assert appended.startswith("# T\n\n" + run.BEGIN) and appended.endswith(run.END + "\n")


def test_docstring_audit_finds_what_is_missing(tmp_path):
    (tmp_path / "a.py").write_text('"""Module doc."""\n\ndef f():\n    x = 1\n    return x\n\n\n'
                                   'def g():\n    """Doc."""\n    return 1\n\n\ndef _private():\n    pass\n')
    (tmp_path / "b.py").write_text("def h():\n    return 2\n")
    assert run.docstring_audit(tmp_path) == ["a.py:f", "b.py:<module>"]
    ast.parse((tmp_path / "a.py").read_text())


def test_quick_run_end_to_end(tmp_path):
    s = runner.quick(run, tmp_path)
    assert s["metrics"]["config_round_trip"] is True and s["metrics"]["configs_exported"] >= 3
    assert (tmp_path / "config.yaml").is_file()
    section = (tmp_path / "README_sprint1.md").read_text()
    assert run.BEGIN in section and "| 7 | Tiny GPT loop |" in section
