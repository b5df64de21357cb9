"""The day runner and `make day` flow, end to end, on a fake day living in tmp_path."""

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.course import cli
from common.course.progress import Progress, fresh_text
from common.run import runner
from common.run.tracking import ROOT

FAKE_RUN = '''
from dataclasses import dataclass

import torch

from common.run import plotting, runner

DAY = {day}


@dataclass
class Config:
    steps: int = 20
    lr: float = 0.1


PRESETS = {{"nano": dict(steps=4), "cpu": {{}}, "gpu": dict(steps=200)}}


def main(cfg, ctx):
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=cfg.lr)
    losses = []
    for step in range(cfg.steps):
        loss = (w - 3).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ctx.tracker.log("train/loss", loss.item(), step)
        losses.append(loss.item())
    p = plotting.lines(ctx.plot_path("loss"), {{"loss": (list(range(cfg.steps)), losses)}}, "step", "loss")
    ctx.deliverable.section("Result")
    ctx.deliverable.table([{{"steps": cfg.steps, "final loss": losses[-1]}}])
    ctx.deliverable.image(p, "loss curve")
    return {{"final_loss": losses[-1], "w": w.item()}}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
'''

FAKE_TEST = '''
from common.run import runner
from days.day{nn} import run


def test_quick_run(tmp_path):
    s = runner.quick(run, tmp_path)
    assert s["metrics"]["final_loss"] {op} 9.0
'''


def make_project(tmp_path: Path, day: int = 5, test_passes: bool = True) -> Path:
    root = tmp_path / "proj"
    d = root / "days" / f"day{day:02d}"
    d.mkdir(parents=True)
    (root / "days" / "__init__.py").write_text("")
    (d / "__init__.py").write_text("")
    (d / "run.py").write_text(FAKE_RUN.format(day=day))
    (d / f"test_day{day:02d}.py").write_text(FAKE_TEST.format(nn=f"{day:02d}", op="<" if test_passes else ">"))
    (root / "progress.yaml").write_text(fresh_text())
    return root


def load_module(root: Path, day: int = 5):
    path = root / "days" / f"day{day:02d}" / "run.py"
    spec = importlib.util.spec_from_file_location(f"fake_day{day}_{abs(hash(path))}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_quick_writes_only_into_its_out_folder(tmp_path):
    root = make_project(tmp_path)
    mod = load_module(root)
    before = snapshot(root)
    out = tmp_path / "out"
    s = runner.execute(mod.DAY, mod.Config, mod.PRESETS, mod.main, quick=True, out=out, root=root, quiet=True)
    assert snapshot(root) == before  # days/, plots/, logs/, progress.yaml untouched
    assert s["preset"] == "nano" and s["config"]["steps"] == 4 and s["status"] == "ok"
    deliv = (out / "deliverable.md").read_text()
    assert "torch" in deliv and "seed 1337" in deliv and "| final_loss |" in deliv
    assert "![loss curve](plots/day05_loss.png)" in deliv and (out / "plots" / "day05_loss.png").is_file()
    run_dir = out / "logs" / "day05" / s["run_id"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4
    assert json.loads((run_dir / "summary.json").read_text())["metrics"]["final_loss"] == s["metrics"]["final_loss"]


def test_quick_without_out_uses_a_temp_folder(tmp_path):
    root = make_project(tmp_path)
    mod = load_module(root)
    before = snapshot(root)
    s = runner.execute(mod.DAY, mod.Config, mod.PRESETS, mod.main, quick=True, root=root, quiet=True)
    assert snapshot(root) == before
    assert s["status"] == "ok"


def test_overrides_and_bad_keys(tmp_path, capsys):
    root = make_project(tmp_path)
    mod = load_module(root)
    s = runner.execute(mod.DAY, mod.Config, mod.PRESETS, mod.main, quick=True, out=tmp_path / "o",
                       overrides=["steps=2"], root=root, quiet=True)
    assert s["config"]["steps"] == 2
    rc = runner.cli(mod.DAY, mod.Config, mod.PRESETS, mod.main, ["--quick", "--out", str(tmp_path / "o2"), "stepz=2"])
    err = capsys.readouterr().err
    assert rc == 2 and "Unknown config key 'stepz'" in err and "valid keys: steps, lr" in err
    rc = runner.cli(mod.DAY, mod.Config, mod.PRESETS, mod.main, ["--device", "cuda"])
    if not __import__("torch").cuda.is_available():
        assert rc == 2 and "CUDA was requested" in capsys.readouterr().err


def test_update_reference_and_ratio(tmp_path):
    root = make_project(tmp_path)
    mod = load_module(root)
    runner.execute(mod.DAY, mod.Config, mod.PRESETS, mod.main, root=root, out=root, update_reference=True, quiet=True)
    ref = json.loads((root / "days" / "day05" / "reference.json").read_text())
    assert ref["preset"] == "cpu" and ref["metrics"]["w"] > 2.9
    ref_deliv = (root / "days" / "day05" / "deliverable.md").read_text()
    assert "The course's reference run" in ref_deliv and "![loss curve](../../plots/day05_loss.png)" in ref_deliv
    s = runner.execute(mod.DAY, mod.Config, mod.PRESETS, mod.main, root=root, out=root, quiet=True)
    assert s["kind"] == "mine" and s["deliverable"] == "results/day05/deliverable.md"
    assert (root / "days" / "day05" / "deliverable.md").read_text() == ref_deliv  # the reference is left alone
    deliv = (root / "results" / "day05" / "deliverable.md").read_text()
    assert "| w " in deliv and "1.000" in deliv  # same seed, same machine: ratio 1
    assert "Your run of day 5" in deliv and "![loss curve](plots/day05_loss.png)" in deliv
    with pytest.raises(runner.UserError, match="default run only; drop lr=0.5"):
        runner.execute(mod.DAY, mod.Config, mod.PRESETS, mod.main, root=root, overrides=["lr=0.5"],
                       update_reference=True, quiet=True)
    with pytest.raises(runner.UserError, match="full run"):
        runner.execute(mod.DAY, mod.Config, mod.PRESETS, mod.main, root=root, quick=True, update_reference=True)


def test_make_day_flow_end_to_end(tmp_path, capsys):
    """run -> tests -> deliverable, plots, logs -> progress.yaml done with metrics -> sprint report."""
    root = make_project(tmp_path)
    assert cli.main(["day", "5"], root=root) == 0
    out = capsys.readouterr().out
    assert "Day 5 (Numerics sanity) is done" in out and "Next: day 6" in out
    assert "Stretch, if you have time:" in out and "BatchNorm" in out  # the day's stretch tier
    assert (root / "results" / "day05" / "deliverable.md").is_file()
    assert (root / "results" / "day05" / "plots" / "day05_loss.png").is_file()
    assert not (root / "days" / "day05" / "deliverable.md").exists() and not (root / "plots").exists()
    entry = Progress.load(root / "progress.yaml").entry(5)
    assert entry["status"] == "done" and entry["metrics"]["final_loss"] < 1e-2 and entry["finished"]
    run_id = (root / "logs" / "day05" / "LATEST").read_text().strip()
    assert list((root / "logs" / "day05" / run_id).glob("events.out.tfevents.*"))
    assert cli.main(["report"], root=root) == 0
    sprint = (root / "sprints" / "sprint01.md").read_text()
    row = next(ln for ln in sprint.splitlines() if ln.startswith("| 5 |"))
    assert "done" in row and "final_loss" in row and "[yours](../results/day05/deliverable.md)" in row
    assert "![day05_loss](../results/day05/plots/day05_loss.png)" in sprint
    assert cli.main(["progress"], root=root) == 0
    assert "1/100 done" in capsys.readouterr().out


def test_override_run_is_a_variant_beside_the_result(tmp_path, capsys):
    """ARGS with overrides: a labelled variant; the recorded result changes only with --record."""
    root = make_project(tmp_path)
    assert cli.main(["day", "5"], root=root) == 0
    mine = Progress.load(root / "progress.yaml").entry(5)
    capsys.readouterr()
    assert cli.main(["day", "5", "lr=0.01"], root=root) == 0
    out = capsys.readouterr().out
    assert "variant `lr=0.01` passed" in out and "Your recorded result is unchanged" in out and "--record" in out
    e = Progress.load(root / "progress.yaml").entry(5)
    assert e["metrics"] == mine["metrics"] and e["variant"] is None
    assert e["variants"]["lr=0.01"]["metrics"]["final_loss"] > mine["metrics"]["final_loss"]  # slower lr
    deliv = (root / "results" / "day05" / "variants" / "lr=0.01" / "deliverable.md").read_text()
    assert "Variant `lr=0.01`" in deliv and "`lr` = 0.01 (default 0.1)" in deliv
    assert (root / "results" / "day05" / "deliverable.md").read_text().count("Your run of day 5") == 1
    assert cli.main(["day", "5", "lr=0.01", "--record"], root=root) == 0
    e = Progress.load(root / "progress.yaml").entry(5)
    assert e["variant"] == "lr=0.01" and e["metrics"] == e["variants"]["lr=0.01"]["metrics"]
    assert cli.main(["report"], root=root) == 0
    row = next(ln for ln in (root / "sprints" / "sprint01.md").read_text().splitlines() if ln.startswith("| 5 |"))
    assert "result from variant `lr=0.01`" in row and "variants/lr=0.01/deliverable.md" in row
    assert cli.main(["day", "5"], root=root) == 0  # the default run takes its place back
    e = Progress.load(root / "progress.yaml").entry(5)
    assert e["variant"] is None and e["metrics"] == mine["metrics"]
    assert cli.main(["day", "5", "--update-reference"], root=root) == 2
    assert "--update-reference" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_learner_runs_never_touch_tracked_files(tmp_path):
    """With the project's .gitignore, make day (default and variant), report and progress leave git
    clean, so a course update never conflicts; a reference run does change tracked files."""
    root = make_project(tmp_path)
    (root / "progress.yaml").unlink()  # not shipped: created on first use
    shutil.copy(ROOT / ".gitignore", root / ".gitignore")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": __import__("os").environ["PATH"], "HOME": str(tmp_path)}

    def git(*a):
        return subprocess.run(["git", *a], cwd=root, env=env, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "course")
    for args in (["day", "5"], ["day", "5", "lr=0.01"], ["day", "5", "steps=5", "--record"], ["report"],
                 ["progress"], ["hours", "5", "code=1"]):
        assert cli.main(args, root=root) == 0
    assert (root / "progress.yaml").is_file() and git("status", "--porcelain") == ""
    mod = load_module(root)
    runner.execute(mod.DAY, mod.Config, mod.PRESETS, mod.main, root=root, update_reference=True, quiet=True)
    changed = git("status", "--porcelain")
    assert "days/day05/" in changed and "plots/" in changed


def test_quick_flow_records_nothing(tmp_path):
    root = make_project(tmp_path)
    before = (root / "progress.yaml").read_text()
    assert cli.main(["day", "5", "--quick"], root=root) == 0
    assert (root / "progress.yaml").read_text() == before
    assert not (root / "days" / "day05" / "deliverable.md").exists() and not (root / "plots").exists()


def test_failing_run_or_tests_are_not_recorded(tmp_path):
    root = make_project(tmp_path, day=6, test_passes=False)
    assert cli.main(["day", "6"], root=root) != 0  # tests fail
    assert Progress.load(root / "progress.yaml").entry(6)["status"] == "doing"
    assert cli.main(["day", "6", "lr=abc"], root=root) == 2  # the run fails
    assert Progress.load(root / "progress.yaml").entry(6)["status"] == "doing"


@pytest.mark.parametrize("args, msg", [
    (["day", "0"], "There is no day 0; days run from 1 to 100"),
    (["day", "101"], "There is no day 101; days run from 1 to 100"),
    (["day", "x"], "'x' is not a day number"),
    (["day"], "Give a day number from 1 to 100"),
    (["day", "42"], "Day 42 (SFT loop) is not built yet"),
    (["hours", "3", "sleep=2"], "Unknown hours category 'sleep'"),
    (["hours", "3"], "Say how long"),
    (["nonsense"], "unknown command"),
])
def test_bad_input_one_sentence_nonzero(tmp_path, capsys, args, msg):
    root = make_project(tmp_path)
    assert cli.main(args, root=root) != 0
    assert msg in capsys.readouterr().err


def test_malformed_progress_stops_make_day_before_running(tmp_path, capsys):
    root = make_project(tmp_path)
    bad = (root / "progress.yaml").read_text().replace("status: todo", "status: [", 1)
    (root / "progress.yaml").write_text(bad)
    assert cli.main(["day", "5"], root=root) == 2
    assert "progress.yaml line" in capsys.readouterr().err
    assert (root / "progress.yaml").read_text() == bad
    assert not (root / "logs").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("goal, msg", [("day 0", "There is no day 0"), ("day x", "'x' is not a day number"),
                                       ("day", "Which day?"), ("day 101", "There is no day 101"),
                                       ("hours 1 sleep=3 read=1", "Unknown hours category 'sleep'")])
def test_make_syntax(goal, msg):
    """`make day N` parses the number as an argument (not a target) and passes errors through."""
    r = subprocess.run(["make", "-s", *goal.split()], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and msg in r.stderr


def test_hours_command_accumulates(tmp_path, capsys):
    root = make_project(tmp_path)
    assert cli.main(["hours", "5", "math=1", "code=0.5"], root=root) == 0
    assert cli.main(["hours", "5", "math=0.5"], root=root) == 0
    assert Progress.load(root / "progress.yaml").entry(5)["hours"]["math"] == 1.5
    assert "math 1.5 h (plan 2 h)" in capsys.readouterr().out


def test_day_module_docstring_example_matches_cli():
    assert "key=value" in textwrap.dedent(runner.__doc__)


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    root = make_project(tmp_path)
    mod = load_module(root)

    def interrupted(cfg, ctx):
        raise KeyboardInterrupt

    rc = runner.cli(mod.DAY, mod.Config, mod.PRESETS, interrupted, ["--quick", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 130 and err.startswith("interrupted: day") and "Traceback" not in err and len(err.splitlines()) == 1
    monkeypatch.setitem(cli.COMMANDS, "day", lambda args, root: (_ for _ in ()).throw(KeyboardInterrupt))
    rc = cli.main(["day", "3"], root=root)
    err = capsys.readouterr().err.strip()
    assert rc == 130 and "day 3 stays `doing`" in err and len(err.splitlines()) == 1


def test_bad_config_value_exits_2_in_one_sentence(tmp_path, capsys):
    root = make_project(tmp_path)
    mod = load_module(root)
    rc = runner.cli(mod.DAY, mod.Config, mod.PRESETS, mod.main, ["--quick", "--out", str(tmp_path / "o"), "lr=-1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "error: Config key 'lr' = -1.0 is out of range: use a number > 0."
