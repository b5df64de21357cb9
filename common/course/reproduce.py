"""`make reproduce`: re-run days and compare every metric with what the project committed.

    python -m common.course.reproduce 7            # day 7's default preset vs days/day07/reference.json
    python -m common.course.reproduce all          # every built day (or --from 21 --to 30)
    python -m common.course.reproduce 7 --quick    # the nano preset vs days/day07/snapshot.json
    python -m common.course.reproduce all --quick --write   # (re)write the quick snapshots on purpose

Each day runs as its own program (`python -m <day module> --out <scratch>`), never imported, so
a reproduction sees exactly what `make day N` would. The comparison is per metric and its *kind*,
which the day declares beside its metrics in `METRIC_KINDS` (the runner copies it into every
summary.json):

- `exact` (the default): counts, booleans, strings and the numbers of deterministic runs. They
  must agree to the printed precision (4 significant digits, as in the deliverables).
- `timing`: anything measured with a clock, or chosen by one. Reported as now/reference; a
  shared machine moves these ±30%, so they never fail a reproduction.
- `("tolerance", r)`: agree within a relative tolerance r.

The quick snapshots are the cheap guard in `make test` (`days/test_snapshots.py`): a change in
`common/` that moves any day's nano-size numbers fails CI until the snapshot is rewritten here.
Snapshots are written and checked with one Torch thread, as pytest runs them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from common import ROOT
from common.run import atomic
from common.run.dayfiles import DayFiles, built_days, day_name
from common.run.errors import UserError

PRINTED = ".4g"                # the precision deliverables print, and so the precision `exact` means


def kind_of(name: str, kinds: dict) -> tuple[str, float]:
    """('exact', 0), ('timing', 0) or ('tolerance', r) for a metric, from a day's METRIC_KINDS.

    A key may be a glob (`"tps_*"`) for metrics whose names carry a size; an exact name wins."""
    k = kinds.get(name) or next((v for pat, v in kinds.items() if fnmatch.fnmatchcase(name, pat)), "exact")
    if isinstance(k, (list, tuple)):
        if len(k) != 2 or k[0] != "tolerance":
            raise UserError(f"metric {name!r}: a kind is 'exact', 'timing' or ('tolerance', r), got {k!r}")
        return "tolerance", float(k[1])
    if k not in ("exact", "timing"):
        raise UserError(f"metric {name!r}: a kind is 'exact', 'timing' or ('tolerance', r), got {k!r}")
    return k, 0.0


def _fmt(v) -> str:
    if v is None:
        return "—"
    return format(v, PRINTED) if isinstance(v, float) else str(v)


def _same_printed(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return format(float(a), PRINTED) == format(float(b), PRINTED)


def compare(reference: dict, now: dict, kinds: dict) -> list[dict]:
    """One row per metric: metric · kind · reference · now · ratio · verdict (`ok` rows pass)."""
    rows = []
    for name in dict.fromkeys([*reference, *now]):
        kind, tol = kind_of(name, kinds)
        r, v = reference.get(name), now.get(name)
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (r, v))
        ratio = (v / r) if numeric and r else None
        if name not in reference:
            verdict, ok = "new (not in reference)", False
        elif name not in now:
            verdict, ok = "missing now", False
        elif kind == "timing":
            verdict, ok = "timing", True
        elif kind == "tolerance":
            ok = numeric and abs(v - r) <= tol * abs(r)
            verdict = f"within {tol:g}" if ok else f"outside {tol:g}"
        else:
            ok = _same_printed(r, v)
            verdict = "match" if ok else "DIFFERS"
        rows.append({"metric": name, "kind": kind if kind != "tolerance" else f"±{tol:g}", "reference": _fmt(r),
                     "now": _fmt(v), "ratio": "—" if ratio is None else f"{ratio:.3f}", "verdict": verdict, "ok": ok})
    return rows


def run_day(root: Path, day: int, out: Path, quick: bool, timeout: float | None = None) -> dict:
    """Run one day as `make day` would (without tests or tracker); return its summary.json."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    if quick:  # snapshots are taken with one thread, the way the test suite runs them
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", DayFiles(root, day).module, "--out", str(out)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"day {day} failed (exit {proc.returncode}): {tail[0]}")
    name = day_name(day)
    run_id = (out / "logs" / name / "LATEST").read_text().strip()
    return json.loads((out / "logs" / name / run_id / "summary.json").read_text())


def expected_path(root: Path, day: int, quick: bool) -> Path:
    """What a run is compared with: snapshot.json for --quick, reference.json for the default."""
    files = DayFiles(root, day)
    return files.snapshot_path if quick else files.reference_path


def write_snapshot(root: Path, day: int, summary: dict) -> Path:
    """The committed quick snapshot: the nano run's metrics and their kinds."""
    return atomic.write_json(expected_path(root, day, quick=True),
                             {"day": day, "preset": summary["preset"], "seed": summary["seed"],
                              "config": summary["config"], "metric_kinds": summary.get("metric_kinds", {}),
                              "metrics": summary["metrics"]})


def check_snapshot(root: Path, day: int, summary: dict) -> list[dict]:
    """Rows of a quick run against the committed snapshot; raises if there is none."""
    path = expected_path(root, day, quick=True)
    if not path.is_file():
        raise UserError(f"day {day} has no {path.name}; write it with `make snapshot {day}`.")
    snap = json.loads(path.read_text())
    return compare(snap["metrics"], summary["metrics"], summary.get("metric_kinds", {}))


def reproduce(root: Path, days: list[int], quick: bool = False, write: bool = False,
              scratch: Path | None = None, echo=print) -> tuple[list[dict], Path]:
    """Run and compare each day; returns per-day results and the report path."""
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 10000:04d}"
    report_dir = Path(root) / "logs" / "reproduce" / run_id
    scratch = Path(scratch or tempfile.mkdtemp(prefix="reproduce_"))
    results = []
    for day in days:
        t0 = time.time()
        expected = expected_path(root, day, quick)
        echo(f"day {day:>3}: running {'nano' if quick else 'default'} preset ...", flush=True)
        try:
            summary = run_day(root, day, scratch / day_name(day), quick)
        except UserError as e:
            results.append({"day": day, "error": str(e), "rows": [], "wall": time.time() - t0})
            echo(f"day {day:>3}: {e}")
            continue
        if write and quick:
            write_snapshot(root, day, summary)
        if not expected.is_file():
            results.append({"day": day, "error": f"no {expected.name} committed", "rows": [],
                            "wall": time.time() - t0})
            echo(f"day {day:>3}: no {expected.name} to compare with")
            continue
        ref = json.loads(expected.read_text())
        rows = compare(ref["metrics"], summary["metrics"], summary.get("metric_kinds", {}))
        res = {"day": day, "rows": rows, "wall": time.time() - t0, "ref_wall": ref.get("wall_time_s"),
               "preset": summary["preset"], "ref_preset": ref.get("preset")}
        if res["preset"] != res["ref_preset"]:
            res["error"] = f"preset {res['preset']} vs reference preset {res['ref_preset']}"
        results.append(res)
        echo(f"day {day:>3}: {_line(res)}")
    path = atomic.write_text(report_dir / "report.md", render(results, quick))
    return results, path


def _counts(res: dict) -> dict:
    rows = res["rows"]
    return {"exact": sum(r["kind"] == "exact" for r in rows),
            "exact_ok": sum(r["kind"] == "exact" and r["ok"] for r in rows),
            "timing": sum(r["kind"] == "timing" for r in rows),
            "failed": sum(not r["ok"] for r in rows)}


def passed(res: dict) -> bool:
    return "error" not in res and _counts(res)["failed"] == 0


def _line(res: dict) -> str:
    if res.get("error"):
        return "ERROR: " + res["error"]
    c = _counts(res)
    timing = [r for r in res["rows"] if r["kind"] == "timing" and r["ratio"] != "—"]
    ratios = f", timings at {min(r['ratio'] for r in timing)}–{max(r['ratio'] for r in timing)}× reference" \
        if timing else ""
    return (("matches" if passed(res) else f"{c['failed']} metric(s) DIFFER") +
            f": {c['exact_ok']}/{c['exact']} exact{ratios} ({res['wall']:.0f} s)")


def render(results: list[dict], quick: bool) -> str:
    """The Markdown report: a one-line verdict per day, then each day's metric table."""
    what = "quick snapshots (nano preset)" if quick else "reference runs (default preset)"
    lines = [f"# Reproduction against the committed {what}", "",
             f"{sum(passed(r) for r in results)} of {len(results)} days reproduce; "
             f"total wall time {sum(r['wall'] for r in results):.0f} s.", "",
             tabulate([{"day": r["day"], "result": _line(r)} for r in results], headers="keys", tablefmt="github"),
             ""]
    for r in results:
        lines += [f"## Day {r['day']}", ""]
        if r.get("error"):
            lines += [f"**{r['error']}**", ""]
        if r["rows"]:
            lines += [tabulate([{k: v for k, v in row.items() if k != "ok"} for row in r["rows"]],
                               headers="keys", tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines)


def parse_days(spec: list[str], root: Path, lo: int | None, hi: int | None) -> list[int]:
    """Day numbers from `7 9`, `all`, or a --from/--to range; a UserError for anything else."""
    built = built_days(root)
    if lo is not None or hi is not None or spec in ([], ["all"]):
        if spec not in ([], ["all"]):
            raise UserError("give either day numbers, `all`, or a from=/to= range, not both.")
        if lo is None and hi is None and not spec:
            raise UserError("which days? e.g. `make reproduce 7`, `make reproduce all` or "
                            "`make reproduce from=21 to=30`.")
        return [d for d in built if (lo or 1) <= d <= (hi or 10**9)]
    days = []
    for s in spec:
        if not s.isdigit() or int(s) not in built:
            raise UserError(f"{s!r} is not a built day; built days are {built[0]}–{built[-1]}.")
        days.append(int(s))
    return days


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    """`make reproduce` / `make snapshot`; exit 1 when an exact metric differs, 2 on bad input."""
    p = argparse.ArgumentParser(prog="make reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("days", nargs="*", help="day numbers, or `all`")
    p.add_argument("--from", dest="lo", type=int, default=None)
    p.add_argument("--to", dest="hi", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="nano preset against snapshot.json")
    p.add_argument("--write", action="store_true", help="with --quick: rewrite the snapshots")
    a = p.parse_args(argv)
    try:
        if a.write and not a.quick:
            raise UserError("--write rewrites quick snapshots only; references come from "
                            "`python -m days.dayNN.run --update-reference` on a clean tree.")
        days = parse_days(a.days, root, a.lo, a.hi)
        results, path = reproduce(root, days, quick=a.quick, write=a.write)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: no report written.", file=sys.stderr)
        return 130
    ok = sum(passed(r) for r in results)
    print(f"\n{ok} of {len(results)} days reproduce{' (snapshots written)' if a.write else ''}. Report: {path}")
    return 0 if ok == len(results) or a.write else 1


if __name__ == "__main__":
    raise SystemExit(main())
