"""Day 56: the eval stack's test suite — run it, count what passes, and measure which lines it reaches.

The run executes the unit tests of everything an evaluation depends on (tokenizers, decoding, the harness
and its models, every metric, calibration, the probes, the results files) in a subprocess under
coverage.py, reads pytest's JUnit XML report back, and writes the pass/fail table per test file and the
line coverage per module. `common/tests/test_known_outputs.py` is the day's addition: one table of known
inputs and hand-worked outputs for every metric, plus known tokenizations and a decoder whose greedy
output is known in advance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from common.run import plotting, runner

DAY = 56
KEY_METRICS = ["tests_passed", "tests_failed", "known_output_cases", "coverage_eval"]
# the suite grows as the course does: counts and coverage may drift a little between commits, failures may not
METRIC_KINDS = {"tests_passed": ("tolerance", 0.25), "known_output_cases": ("tolerance", 0.25),
                "coverage_*": ("tolerance", 0.1)}

SUITE = ("common/tests/test_known_outputs.py", "common/tests/test_tokenizers.py", "common/tests/test_chat.py",
         "common/tests/test_sampling.py", "common/tests/test_generate.py", "common/tests/test_eval_metrics.py",
         "common/tests/test_harness.py", "common/tests/test_eval_lm.py", "common/tests/test_eval_datasets.py",
         "common/tests/test_eval_suite.py", "common/tests/test_calibration.py", "common/tests/test_calculator.py",
         "common/tests/test_tool_use.py", "common/tests/test_ratings.py", "common/tests/test_scoreboard.py")
COVERED = ("common.eval", "common.data.chat", "common.data.tokenizers", "common.nn.sampling", "common.nn.generate")


@dataclass
class Config:
    files: str = ",".join(SUITE)      # test files to run (comma-separated, relative to the project)
    coverage: bool = True


PRESETS = {"nano": dict(files="common/tests/test_known_outputs.py,common/tests/test_eval_metrics.py"),
           "cpu": {}, "gpu": {}}


def summarise_junit(xml_text: str) -> dict:
    """{test file: {"passed", "failed", "skipped", "seconds"}} from pytest's JUnit XML (one <testcase> per test,
    its classname the dotted module path, plus the class for tests in a class; a <failure> or <error> child
    means failed, a <skipped> child skipped)."""
    # >>> exercise day56.summarise_junit: walk every testcase; its file is classname up to the test_ module, as a path
    out: dict = {}
    for case in ET.fromstring(xml_text).iter("testcase"):
        parts = case.get("classname", "").split(".")          # common.tests.test_x[.TestClass]
        end = next((i for i, p in enumerate(parts) if p.startswith("test_")), len(parts) - 1)
        path = "/".join(parts[:end + 1]) + ".py"
        row = out.setdefault(path, {"passed": 0, "failed": 0, "skipped": 0, "seconds": 0.0})
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            row["failed"] += 1
        elif "skipped" in kinds:
            row["skipped"] += 1
        else:
            row["passed"] += 1
        row["seconds"] += float(case.get("time", 0))
    return out
    # <<< exercise day56.summarise_junit


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, out = ctx.deliverable, {}
    files = [f for f in cfg.files.split(",") if f]
    missing = [f for f in files if not (ctx.root / f).is_file()]
    if missing:
        raise ValueError(f"no such test file(s): {missing}")
    junit, cov_json = ctx.run_dir / "junit.xml", ctx.run_dir / "coverage.json"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    runner_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                  f"--junitxml={junit}", *files]
    if cfg.coverage:
        data = ctx.run_dir / ".coverage"
        cmd = [sys.executable, "-m", "coverage", "run", f"--data-file={data}",
               "--source=" + ",".join(COVERED), "-m", *runner_cmd[2:]]
    else:
        cmd = runner_cmd
    proc = subprocess.run(cmd, cwd=ctx.root, env=env, capture_output=True, text=True)
    if not junit.is_file():
        raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    per_file = summarise_junit(junit.read_text())

    d.section("Pass/fail table")
    rows = [{"test file": f, **{k: (round(v, 2) if k == "seconds" else v) for k, v in r.items()}}
            for f, r in sorted(per_file.items())]
    total = {k: sum(r[k] for r in per_file.values()) for k in ("passed", "failed", "skipped")}
    rows.append({"test file": "**total**", **total, "seconds": round(sum(r["seconds"] for r in per_file.values()), 1)})
    d.table(rows)
    d.text(f"`pytest` exit code {proc.returncode}; {total['passed']} passed, {total['failed']} failed, "
           f"{total['skipped']} skipped over {len(files)} files. The same command by hand: "
           f"`.venv/bin/python -m pytest {' '.join(files[:2])} ...`.")
    out.update(tests_passed=total["passed"], tests_failed=total["failed"], pytest_exit=proc.returncode)
    known = per_file.get("common/tests/test_known_outputs.py")
    if known:
        out["known_output_cases"] = known["passed"] + known["failed"]
    failed = [c.get("name") for c in ET.fromstring(junit.read_text()).iter("testcase")
              if {ch.tag for ch in c} & {"failure", "error"}]
    if failed:
        d.text("Failed: " + ", ".join(f"`{n}`" for n in failed[:20]))

    if cfg.coverage:
        subprocess.run([sys.executable, "-m", "coverage", "json", f"--data-file={ctx.run_dir / '.coverage'}",
                        "-o", str(cov_json), "-q"], cwd=ctx.root, env=env, capture_output=True, text=True)
        cov = json.loads(cov_json.read_text())
        d.section("Line coverage of the eval stack")
        rows = []
        for path, f in sorted(cov["files"].items()):
            s = f["summary"]
            rows.append({"module": path, "statements": s["num_statements"], "missed": s["missing_lines"],
                         "covered %": round(s["percent_covered"], 1)})
        d.table(rows)
        eval_rows = [r for r in rows if r["module"].startswith("common/eval/")]
        stm = sum(r["statements"] for r in eval_rows)
        hit = stm - sum(r["missed"] for r in eval_rows)
        out["coverage_eval"] = round(100 * hit / max(1, stm), 1)
        out["coverage_total"] = round(cov["totals"]["percent_covered"], 1)
        least = min((r["covered %"] for r in eval_rows), default=None)
        lows = [r["module"] for r in eval_rows if r["covered %"] == least]
        p = plotting.bars(ctx.plot_path("coverage"), [r["module"].split("/")[-1] for r in rows],
                          [r["covered %"] for r in rows], "lines covered (%)", "Line coverage per module")
        d.image(p, "Line coverage of each module of the eval stack by the suite above")
        d.text(f"coverage.py (statement coverage) over {', '.join(COVERED)}: {out['coverage_eval']}% of common/eval's "
               f"statements run at least once, {out['coverage_total']}% of all listed modules'. "
               + (f"Least covered ({least}%): " + ", ".join(f"`{m}`" for m in lows) + " (tested by the days that "
                  "use them, not by this suite). " if lows else "")
               + "A line that runs is not a line that is checked: coverage finds code no test reaches, it "
               "cannot say whether the assertions that do run are strong enough.")
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
