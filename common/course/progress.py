"""`progress.yaml`: the learner's own record of the 100 days, and the one-screen dashboard.

The file is the learner's and git ignores it (a course update never touches it): the first command
that needs it writes a fresh one from the curriculum. Every automatic update is a round-trip: ruamel.yaml loads it with
its comments and layout, we change only the fields we own, and write it back atomically. A file
that does not parse, or holds a value we do not understand, raises `ProgressError` naming the line;
it is never overwritten. Days missing from the file count as `todo` and are added when updated.

The sprint reports and weekend-reflection files that read this live in `report.py`.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from common.course import curriculum
from common.run import atomic
from common.run.errors import UserError

# Seed 001's three states of a day's reading, in order: read it, implemented it, wrote a summary.
READING_STATES = ("read", "implemented", "summary")

STATUSES = ("todo", "doing", "done", "skipped")
HEADER = """\
# 100 Days of AI: your progress, one entry per day. This file is yours.
#   `make day N` marks a day done (with its key metrics) when its run and its tests pass; a run
#   with overrides (ARGS="lr=3e-3") is kept under `variants:` and replaces the result only with --record.
#   `make hours N read=1.5 code=2 log=0.5` adds time (categories: read, math, code, log; hours).
#   `make progress` shows the dashboard, `make report` writes sprints/.
# Edit anything by hand: notes, dates, statuses (todo | doing | done | skipped). Comments you add
# are kept by every automatic update. `plan` is the day's time budget from the curriculum
# (minutes: R read, M math, C code, L log).
"""


class ProgressError(UserError):
    """progress.yaml is malformed; the message names the line."""


def _yaml() -> YAML:
    y = YAML()  # round-trip: keeps comments, order, quotes
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 100
    y.preserve_quotes = True
    y.representer.ignore_aliases = lambda *a: True  # one date used twice must not become &id001
    y.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return y


def fresh_text(start_date: dt.date | None = None) -> str:
    """The progress.yaml the repository ships: all 100 days `todo`."""
    lines = [HEADER, f"start_date: {start_date.isoformat() if start_date else 'null'}"
             "   # the day you started; report weeks count from here", "days:"]
    for d in curriculum.all_days():
        hours = ", ".join(f"{k}: 0" for k in d.plan)
        lines += [f"  {d.n}:   # {d.focus}", "    status: todo", "    started: null", "    finished: null",
                  f"    plan: {d.time}", f"    hours: {{{hours}}}", "    metrics: {}", "    note: ''"]
    return "\n".join(lines) + "\n"


def _line(node, key) -> int:
    try:
        return node.lc.value(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        try:
            return node.lc.key(key)[0] + 1
        except (AttributeError, KeyError, TypeError):
            return 0


def _as_date(v):
    if v is None or isinstance(v, dt.date):
        return v
    return dt.date.fromisoformat(str(v))


def validate(doc, name: str = "progress.yaml") -> None:
    """Raise ProgressError naming the line of the first value we do not understand."""

    def bad(node, key, what):
        raise ProgressError(f"{name} line {_line(node, key)}: {what}. Fix it by hand (nothing was overwritten).")

    if not isinstance(doc, CommentedMap) or not isinstance(doc.get("days"), dict):
        raise ProgressError(f"{name}: the file must be a mapping with a `days:` section. "
                            f"Restore it from git (git checkout {name}) or fix it by hand.")
    try:
        _as_date(doc.get("start_date"))
    except ValueError:
        bad(doc, "start_date", f"start_date {doc.get('start_date')!r} is not a date like 2026-01-31")
    days = doc["days"]
    for key, entry in days.items():
        if not isinstance(key, int) or not 1 <= key <= curriculum.N_DAYS:
            bad(days, key, f"day {key!r} is not a day number from 1 to {curriculum.N_DAYS}")
        if not isinstance(entry, dict):
            bad(days, key, f"day {key} must be a mapping (status, hours, ...)")
        if entry.get("status", "todo") not in STATUSES:
            bad(entry, "status", f"status {entry.get('status')!r} of day {key} is not one of {', '.join(STATUSES)}")
        for f in ("started", "finished"):
            try:
                _as_date(entry.get(f))
            except ValueError:
                bad(entry, f, f"{f} {entry.get(f)!r} of day {key} is not a date like 2026-01-31")
        hours = entry.get("hours") or {}
        if not isinstance(hours, dict):
            bad(entry, "hours", f"hours of day {key} must be a mapping like {{read: 1.5, code: 2}}")
        for cat, h in hours.items():
            if cat not in curriculum.CATEGORIES.values():
                bad(hours, cat, f"hours category {cat!r} of day {key} is not one of read, math, code, log")
            if not isinstance(h, (int, float)) or isinstance(h, bool) or h < 0 or math.isnan(h):
                bad(hours, cat, f"hours {h!r} of day {key} must be a non-negative number")
        if not isinstance(entry.get("metrics") or {}, dict):
            bad(entry, "metrics", f"metrics of day {key} must be a mapping")
        if not isinstance(entry.get("variants") or {}, dict):
            bad(entry, "variants", f"variants of day {key} must be a mapping (label: {{run, metrics}})")


class Progress:
    """The loaded file. Read with `entry(n)`; change with `start`, `finish`, `add_hours`; `save()`."""

    def __init__(self, path: str | Path, doc: CommentedMap):
        self.path, self.doc = Path(path), doc

    @classmethod
    def load(cls, path: str | Path, create: bool = True) -> Progress:
        """Load the file; when there is none yet (a fresh clone), write a fresh one first."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise ProgressError(f"{path} does not exist; `make progress-init` writes a fresh one.")
            atomic.write_text(path, fresh_text())
        text = path.read_text(encoding="utf-8")
        try:
            doc = _yaml().load(text)
        except MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f"line {mark.line + 1}" if mark else "somewhere"
            raise ProgressError(f"{path.name} {where}: {e.problem or e.context}. "
                                f"Fix it by hand (nothing was overwritten).") from None
        validate(doc, path.name)
        return cls(path, doc)

    def entry(self, n: int) -> dict:
        """The day's entry with defaults filled in (a plain dict; changes go through the methods)."""
        e = dict(self.doc["days"].get(n) or {})
        e.setdefault("status", "todo")
        e["started"], e["finished"] = _as_date(e.get("started")), _as_date(e.get("finished"))
        e["hours"] = dict(e.get("hours") or {})
        e["metrics"] = dict(e.get("metrics") or {})
        e.setdefault("note", "")
        e.setdefault("own", None)  # True: passed on the learner's own code (make exercise); False: the reference
        e.setdefault("variant", None)  # the override run recorded as the result (--record); None: the default run
        e["variants"] = dict(e.get("variants") or {})  # override runs kept beside the result
        e["reading"] = [r for r in READING_STATES if r in (e.get("reading") or [])]  # set by `make read`
        return e

    @property
    def start_date(self) -> dt.date | None:
        return _as_date(self.doc.get("start_date"))

    def _node(self, n: int) -> CommentedMap:
        days = self.doc["days"]
        if n not in days or not isinstance(days[n], dict):
            node = CommentedMap(status="todo", started=None, finished=None, plan=curriculum.day(n).time,
                                hours=CommentedMap((k, 0) for k in curriculum.day(n).plan), metrics={}, note="")
            node["hours"].fa.set_flow_style()
            days[n] = node
            # keep the days in numeric order so hand-deleted entries come back where they were
            for k in sorted(k for k in days if isinstance(k, int) and k > n):
                days.move_to_end(k)
        return days[n]

    def start(self, n: int, today: dt.date | None = None) -> None:
        today = today or dt.date.today()
        node = self._node(n)
        if self.doc.get("start_date") is None:
            self.doc["start_date"] = today
        if node.get("status", "todo") == "todo":
            node["status"] = "doing"
        if node.get("started") is None:
            node["started"] = today

    def finish(self, n: int, metrics: dict, run_id: str | None = None, today: dt.date | None = None,
               own: bool | None = None, variant: str | None = None) -> None:
        """Mark day n done with its metrics; `own` says whether it passed on the learner's code;
        `variant` names the override run recorded as the result (None: the default run)."""
        today = today or dt.date.today()
        self.start(n, today)
        node = self._node(n)
        node["status"] = "done"
        node["finished"] = today
        clean = _clean(metrics)
        node["metrics"] = clean
        if run_id:
            node["run"] = run_id
        if own is not None:
            node["own"] = bool(own)
        if variant:
            node["variant"] = variant
        elif "variant" in node:
            del node["variant"]
        missed = [t.metric for t in curriculum.targets(n) if t.met(clean.get(t.metric)) is False]
        if missed:  # a day done with a missed target says so here, and the report shows the numbers
            node["missed_targets"] = CommentedSeq(missed)
            node["missed_targets"].fa.set_flow_style()
        elif "missed_targets" in node:
            del node["missed_targets"]

    def add_variant(self, n: int, label: str, metrics: dict, run_id: str | None = None,
                    today: dt.date | None = None, keep: list[str] | None = None) -> None:
        """Record a run with overrides under the day's `variants:`; the day's own result is untouched.

        `keep` limits the stored metrics to those names (the day's key metrics), so the file stays short."""
        today = today or dt.date.today()
        self.start(n, today)
        node = self._node(n)
        if not isinstance(node.get("variants"), dict):
            node["variants"] = CommentedMap()
        shown = {k: v for k, v in metrics.items() if not keep or k in keep}
        entry = CommentedMap(date=today, run=run_id, metrics=_clean(shown))
        entry["metrics"].fa.set_flow_style()
        node["variants"][label] = entry

    def set_reading(self, n: int, *states: str) -> list[str]:
        """Add reading states of day n's paper (read, implemented, summary); returns all it has now."""
        bad = [x for x in states if x not in READING_STATES]
        if bad:
            raise ProgressError(f"Unknown reading state {bad[0]!r}; use {', '.join(READING_STATES)}.")
        node = self._node(n)
        have = list(node.get("reading") or [])
        new = [r for r in READING_STATES if r in have or r in states]
        node["reading"] = CommentedSeq(new)
        node["reading"].fa.set_flow_style()
        return new

    def add_hours(self, n: int, today: dt.date | None = None, **hours: float) -> dict:
        node = self._node(n)
        if node.get("hours") is None:
            node["hours"] = CommentedMap()
            node["hours"].fa.set_flow_style()
        for cat, h in hours.items():
            if cat not in curriculum.CATEGORIES.values():
                raise ProgressError(f"Unknown hours category {cat!r}; use read, math, code or log.")
            if not isinstance(h, (int, float)) or h < 0 or h > 24:
                raise ProgressError(f"Hours for {cat} must be a number from 0 to 24, got {h!r}.")
            node["hours"][cat] = round(float(node["hours"].get(cat, 0) or 0) + h, 2)
        self.start(n, today)
        return dict(node["hours"])

    def save(self) -> None:
        validate(self.doc, self.path.name)
        buf = io.StringIO()
        _yaml().dump(self.doc, buf)
        atomic.write_text(self.path, buf.getvalue())


def _clean(metrics: dict) -> CommentedMap:
    """Metrics as YAML scalars: floats to 5 significant digits, anything else as a string."""
    clean = CommentedMap()
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, str)) or v is None:
            v = str(v) if v is not None else None
        elif isinstance(v, float):
            v = float(f"{v:.5g}")
        clean[k] = v
    return clean


# ---- queries shared by the dashboard and the reports -------------------------------------------

def hours_spent(entry: dict) -> float:
    return float(sum((entry.get("hours") or {}).values()))


def hours_planned(n: int) -> float:
    return sum(curriculum.day(n).plan.values()) / 60


def week_of(date: dt.date, start: dt.date) -> int:
    """Week 1 is the seven days from the start date."""
    return (date - start).days // 7 + 1


def streak(prog: Progress, today: dt.date | None = None) -> int:
    """Consecutive calendar days, ending today or yesterday, on which some day was finished."""
    today = today or dt.date.today()
    dates = {prog.entry(n)["finished"] for n in range(1, curriculum.N_DAYS + 1)} - {None}
    d = today if today in dates else today - dt.timedelta(days=1)
    count = 0
    while d in dates:
        count += 1
        d -= dt.timedelta(days=1)
    return count


def next_day(prog: Progress) -> int | None:
    """The first day still todo or doing."""
    for n in range(1, curriculum.N_DAYS + 1):
        if prog.entry(n)["status"] in ("todo", "doing"):
            return n
    return None


def dashboard(prog: Progress, today: dt.date | None = None, width: int = 50) -> str:
    """The one-screen summary `make progress` prints."""
    today = today or dt.date.today()
    entries = {n: prog.entry(n) for n in range(1, curriculum.N_DAYS + 1)}
    done = [n for n, e in entries.items() if e["status"] == "done"]
    skipped = [n for n, e in entries.items() if e["status"] == "skipped"]
    doing = [n for n, e in entries.items() if e["status"] == "doing"]
    filled = round(width * len(done) / curriculum.N_DAYS)
    out = [f"100 Days of AI  [{'#' * filled}{'.' * (width - filled)}]  {len(done)}/100 done"
           + (f", {len(skipped)} skipped" if skipped else "")]
    touched = [n for n, e in entries.items() if e["status"] != "todo" or hours_spent(e) > 0]
    spent = sum(hours_spent(entries[n]) for n in touched)
    planned = sum(hours_planned(n) for n in touched)
    start = prog.start_date
    if start:
        wk = week_of(today, start)
        wk_start = start + dt.timedelta(days=7 * (wk - 1))
        this_week = [n for n in done if entries[n]["finished"] and entries[n]["finished"] >= wk_start]
        out.append(f"Started {start.isoformat()} | week {wk} | streak {streak(prog, today)} day(s) | "
                   f"this week: {len(this_week)} day(s) done")
    else:
        out.append("Not started yet: run `make day 1`.")
    out.append(f"Hours: {spent:.1f} h logged vs {planned:.1f} h planned for the {len(touched)} day(s) touched"
               if touched else "Hours: none logged yet (`make hours N read=.. code=.. log=..`).")
    for s in range(1, curriculum.N_DAYS // curriculum.DAYS_PER_SPRINT + 1):
        ds = curriculum.sprint_days(s)
        n_done = sum(entries[n]["status"] == "done" for n in ds)
        if n_done or any(n in touched for n in ds):
            marks = "".join(("@" if entries[n]["own"] else "#") if entries[n]["status"] == "done" else
                            {"doing": "~", "skipped": "-"}.get(entries[n]["status"], ".") for n in ds)
            out.append(f"  Sprint {s:>2} [{marks}] {n_done}/10  {curriculum.sprint_info(s)['title']}")
    if doing:
        out.append("In progress: " + ", ".join(f"day {n} ({curriculum.day(n).focus})" for n in doing))
    nxt = next_day(prog)
    if nxt is None:
        out.append("All 100 days are done or skipped. Write the capstone up!")
    else:
        d = curriculum.day(nxt)
        out.append(f"Next: day {nxt}, {d.focus} (sprint {d.sprint}). Read: {d.reading or 'your notes'}. "
                   f"Run: make day {nxt}")
    return "\n".join(out)
