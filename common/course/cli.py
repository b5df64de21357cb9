"""The commands behind `make`: day, progress, report, hours, progress-init.

    python -m common.course.cli day 7 [--quick] [key=value ...]   # run, test, record (make day 7)
    python -m common.course.cli progress                          # dashboard (make progress)
    python -m common.course.cli report                            # sprints/ (make report)
    python -m common.course.cli hours 7 read=1.5 code=2 log=0.5   # add time (make hours 7 read=1.5 ...)

`day N` runs `python -m days.dayNN.run` and then the day's tests, each in its own process; only
when both pass does it mark the day done in progress.yaml with the metrics the run reported.
The default run writes `results/dayNN/` and becomes the day's result; a run with overrides
(`make day 7 ARGS="lr=3e-3"`) is a labelled variant under `results/dayNN/variants/`, listed in
progress.yaml beside the result and never over it unless `--record` says so. A `--quick` run
writes to a scratch folder and records nothing. The committed reference files are never written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from common import ROOT
from common.course import curriculum, exercises
from common.course.progress import Progress, dashboard
from common.course.report import target_cells, write_reports
from common.run.dayfiles import DayFiles, built_days, day_name
from common.run.errors import UserError

USAGE = "usage: make day N (N from 1 to 100), e.g. `make day 7` or `make day 7 ARGS=\"--quick\"`"


def parse_day(raw: str | None) -> int:
    """The day number from the command line, or a UserError saying what a valid one is."""
    if raw is None or raw == "":
        raise UserError(f"Which day? Give a day number from 1 to {curriculum.N_DAYS}, e.g. `make day 7`.")
    try:
        n = int(raw)
    except ValueError:
        raise UserError(f"{raw!r} is not a day number; give a whole number from 1 to {curriculum.N_DAYS}, "
                        f"e.g. `make day 7`.") from None
    if not 1 <= n <= curriculum.N_DAYS:
        raise UserError(f"There is no day {n}; days run from 1 to {curriculum.N_DAYS}.")
    return n


def _ranges(ns: list[int]) -> str:
    out, i = [], 0
    while i < len(ns):
        j = i
        while j + 1 < len(ns) and ns[j + 1] == ns[j] + 1:
            j += 1
        out.append(f"{ns[i]}" if i == j else f"{ns[i]}–{ns[j]}")
        i = j + 1
    return ", ".join(out) or "none"


def _env(root: Path) -> dict:
    env = dict(os.environ)
    paths = [str(root)] + ([str(ROOT)] if Path(root).resolve() != ROOT else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def cmd_day(args: list[str], root: Path) -> int:
    """make day N: run the day, then its tests; record it only if both pass."""
    n = parse_day(args[0] if args else None)
    extra = args[1:]
    files = DayFiles(root, n)
    name = files.name
    focus = curriculum.day(n).focus
    if not files.built:
        raise UserError(f"Day {n} ({focus}) is not built yet; built days: {_ranges(built_days(root))}.")
    quick = "--quick" in extra
    record = "--record" in extra  # a variant becomes the day's recorded result
    extra = [a for a in extra if a != "--record"]
    if "--update-reference" in extra:
        raise UserError("`make day` runs your copy; the course's reference is made with "
                        f"`python -m {files.module} --update-reference` from a clean commit.")
    prog = None
    if not quick:
        prog = Progress.load(root / "progress.yaml")  # a malformed file stops us before any work
        prog.start(n)
        prog.save()
    print(f"== make day {n}: {focus} ==", flush=True)
    env = {**_env(root), "DAYS_UNDER_MAKE": "1"}
    rc = subprocess.call([sys.executable, "-m", files.module, *extra], cwd=root, env=env)
    if rc in (130, -2):  # the run was stopped with Ctrl-C (it printed its own line)
        raise KeyboardInterrupt
    if rc != 0:
        print(f"\nDay {n}: the run failed (exit {rc}); progress.yaml not marked done.", file=sys.stderr)
        return rc
    print(f"\n== tests of day {n} ==", flush=True)
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                          f"days/{name}"], cwd=root, env=env)
    if rc != 0:
        print(f"\nDay {n}: tests failed; progress.yaml not marked done.", file=sys.stderr)
        return rc
    if quick:
        print(f"\nDay {n} quick run and tests passed (scratch output; nothing recorded).")
        return 0
    latest = root / "logs" / name / "LATEST"
    summary = json.loads((root / "logs" / name / latest.read_text().strip() / "summary.json").read_text())
    metrics, run_id = summary.get("metrics", {}), summary.get("run_id")
    kind, label = summary.get("kind", "mine"), summary.get("label", "")
    prog = Progress.load(root / "progress.yaml")
    mine = exercises.own(root, n)
    if kind == "variant":
        prog.add_variant(n, label, metrics, run_id, keep=summary.get("key_metrics"))
    if kind != "variant" or record:
        prog.finish(n, metrics, run_id, own=mine, variant=label if kind == "variant" else None)
    prog.save()
    targets = target_cells(n, metrics)
    if targets:
        print("\nSeed targets:\n" + "\n".join(f"  {t}" for t in targets))
    if kind == "variant" and not record:
        done = prog.entry(n)["status"] == "done"
        print(f"\nDay {n} ({focus}): variant `{label}` passed and is listed under `variants:` in progress.yaml. "
              + ("Your recorded result is unchanged." if done else
                 f"The day is not done yet: run `make day {n}` for the default run")
              + f" To make this run your result: make day {n} ARGS=\"{' '.join(extra)} --record\".")
    else:
        print(f"\nDay {n} ({focus}) is done: metrics recorded in progress.yaml"
              + (f" from variant `{label}`" if kind == "variant" else "")
              + {True: ", passed on your own code (own: true).", False: ", on the reference solution (own: false; "
                 f"`make exercise {n}` hands you its exercises).", None: "."}[mine])
    out_dir = (root / summary["deliverable"]).parent
    print(f"  deliverable: {summary['deliverable']}  (the course's reference: days/{name}/deliverable.md)")
    plots = files.plots(out_dir)
    if plots:
        print("  plots:       " + ", ".join(str(p.relative_to(root)) for p in plots))
    run_dir = root / "logs" / name / str(run_id)
    curves = (run_dir / "metrics.jsonl").is_file() and (run_dir / "metrics.jsonl").stat().st_size > 0
    print(f"  logs:        logs/{name}/{run_id}" + ("  (curves: make tensorboard)" if curves else ""))
    tiers = curriculum.day(n)
    if tiers.stretch or tiers.mega_stretch:
        print("Stretch, if you have time:\n" + "\n".join([f"  - {s}" for s in tiers.stretch]
                                                          + [f"  - (mega-stretch) {s}" for s in tiers.mega_stretch]))
    nxt = n + 1
    if nxt <= curriculum.N_DAYS:
        d = curriculum.day(nxt)
        built = DayFiles(root, nxt).built
        print(f"Next: day {nxt}, {d.focus}: read days/{day_name(nxt)}/notes.md, then `make day {nxt}`"
              + ("" if built else " (not built yet)"))
    return 0


def cmd_hours(args: list[str], root: Path) -> int:
    """make hours N read=.. code=..: add time spent to a day."""
    n = parse_day(args[0] if args else None)
    hours = {}
    for item in args[1:]:
        key, eq, val = item.partition("=")
        if not eq:
            raise UserError(f"{item!r} is not category=hours, e.g. read=1.5.")
        if key not in curriculum.CATEGORIES.values():
            raise UserError(f"Unknown hours category {key!r}; use read, math, code or log.")
        try:
            hours[key] = float(val)
        except ValueError:
            raise UserError(f"Hours must be a number, got {key}={val!r}.") from None
    if not hours:
        raise UserError("Say how long, e.g. `make hours 7 read=1.5 code=2 log=0.5`.")
    prog = Progress.load(root / "progress.yaml")
    total = prog.add_hours(n, **hours)
    prog.save()
    plan = curriculum.day(n).plan
    print(f"Day {n}: " + ", ".join(f"{k} {total.get(k, 0):g} h (plan {plan.get(k, 0) / 60:g} h)"
                                   for k in dict.fromkeys([*plan, *total])))
    return 0


def cmd_read(args: list[str], root: Path) -> int:
    """make read N [implemented] [summary]: record the state of day N's reading (read by default)."""
    n = parse_day(args[0] if args else None)
    prog = Progress.load(root / "progress.yaml")
    states = prog.set_reading(n, *(args[1:] or ["read"]))
    prog.save()
    print(f"Day {n} reading ({curriculum.day(n).reading or 'none listed'}): {', '.join(states)}.")
    return 0


def cmd_progress(args, root: Path) -> int:
    """make progress: print the dashboard."""
    print(dashboard(Progress.load(root / "progress.yaml")))
    return 0


def cmd_report(args, root: Path) -> int:
    """make report: write the sprint reports and this week's reflection file."""
    written = write_reports(root, Progress.load(root / "progress.yaml"))
    for p in written:
        print(f"wrote {p.relative_to(root)}")
    return 0


def cmd_progress_init(args, root: Path) -> int:
    """make progress-init: write a fresh progress.yaml, never over an existing one."""
    path = root / "progress.yaml"
    if path.exists():
        raise UserError(f"{path.name} already exists; it is yours and is never replaced automatically.")
    Progress.load(path)  # writes the fresh file
    print(f"wrote a fresh {path.name} (all 100 days todo)")
    return 0


COMMANDS = {"day": cmd_day, "hours": cmd_hours, "read": cmd_read, "progress": cmd_progress, "report": cmd_report,
            "progress-init": cmd_progress_init}


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Dispatch a command; UserErrors become one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    root = Path(root or os.environ.get("DAYS_ROOT") or ROOT)
    if not argv or argv[0] not in COMMANDS:
        print(f"error: unknown command; use one of {', '.join(COMMANDS)}. {USAGE}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:], root)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        day = argv[1] if argv[0] == "day" and len(argv) > 1 else None
        what = f"day {day} stays `doing` in progress.yaml; run `make day {day}` again" if day else "stopped"
        print(f"\ninterrupted: {what} (nothing was marked done, nothing you wrote was lost).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
