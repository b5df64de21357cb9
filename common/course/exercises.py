"""Learner mode: the same tree is the reference solution and the exercise.

The code that embodies a day's idea is wrapped in marker comments, wherever it lives:

    def masked_softmax(scores, mask=None, dim=-1):
        \"\"\"... the docstring stays ...\"\"\"
        # >>> exercise dayNN.name: what to write (NN = the day, e.g. day01.softmax)
        ...the reference solution...
        # <<< exercise dayNN.name

    make exercise 1 [only=day01.softmax]   # regions -> stubs that raise NotImplementedError naming the exercise
    make solution 1 [diff=1]               # put the reference back (or show yours against it)

`make exercise` saves each solution under `.exercises/` (git-ignored) before stubbing, refuses a
region that holds uncommitted edits of the learner, and leaves an already stubbed region alone.
`make day N` records `own: true` in progress.yaml when the day passed on code the learner wrote
into stubbed regions (see `own`). `check_day` proves that a day's tests fail on its stubs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import ROOT
from common.run import atomic
from common.run.dayfiles import day_name
from common.run.errors import UserError

START = re.compile(r"^(?P<indent>[ \t]*)# >>> exercise (?P<id>day\d\d\.\w+)(?::[ \t]*(?P<title>.*))?$")
END = re.compile(r"^[ \t]*# <<< exercise (?P<id>day\d\d\.\w+)[ \t]*$")
SEARCHED = ("common", "days")
STATE_DIR = ".exercises"


@dataclass
class Region:
    """One marked exercise: its id, file (relative to the root), body lines (between the markers)."""

    id: str
    path: str
    start: int          # index of the `# >>>` line
    end: int            # index of the `# <<<` line
    indent: str
    title: str
    body: str

    @property
    def day(self) -> int:
        return int(self.id[3:5])

    @property
    def stub(self) -> str:
        note = f"days/{day_name(self.day)}/notes.md"
        return (f'{self.indent}raise NotImplementedError("exercise {self.id} is yours to write: see \'Your turn\' '
                f'in {note}")\n')

    @property
    def stubbed(self) -> bool:
        return self.body == self.stub


def parse(text: str, path: str) -> list[Region]:
    """The exercise regions of one file's text; unbalanced or nested markers are an error."""
    lines, regions, open_ = text.splitlines(keepends=True), [], None
    for i, line in enumerate(lines):
        m, e = START.match(line.rstrip("\n")), END.match(line.rstrip("\n"))
        if m:
            if open_:
                raise UserError(f"{path}:{i + 1}: exercise {m['id']} starts inside {open_[0]['id']}.")
            open_ = (m, i)
        elif e:
            if not open_ or open_[0]["id"] != e["id"]:
                raise UserError(f"{path}:{i + 1}: end marker of {e['id']} without its start.")
            m, s = open_
            regions.append(Region(m["id"], path, s, i, m["indent"], (m["title"] or "").strip(),
                                  "".join(lines[s + 1:i])))
            open_ = None
    if open_:
        raise UserError(f"{path}: exercise {open_[0]['id']} has no end marker.")
    return regions


def scan(root: Path = ROOT) -> dict[str, Region]:
    """Every exercise region under common/ and days/ (test files excluded), by id."""
    out: dict[str, Region] = {}
    for top in SEARCHED:
        for f in sorted((Path(root) / top).rglob("*.py")):
            if f.name.startswith("test_") or ".venv" in f.parts:
                continue
            text = f.read_text(encoding="utf-8")
            if "# >>> exercise" not in text:
                continue
            for r in parse(text, f.relative_to(root).as_posix()):
                if r.id in out:
                    raise UserError(f"exercise {r.id} is marked twice ({out[r.id].path} and {r.path}).")
                out[r.id] = r
    return out


def day_regions(root: Path, day: int, only: str | None = None) -> list[Region]:
    """The exercise regions of one day (or just `only`); an unknown `only` is a UserError listing the day's."""
    regions = [r for r in scan(root).values() if r.day == day]
    if only:
        regions = [r for r in regions if r.id == only]
        if not regions:
            known = ", ".join(r.id for r in scan(root).values() if r.day == day) or "none"
            raise UserError(f"Day {day} has no exercise {only!r}; its exercises: {known}.")
    return regions


def _replace(root: Path, region: Region, body: str) -> None:
    """Swap the region's body in its file (atomically), markers kept."""
    path = Path(root) / region.path
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fresh = {r.id: r for r in parse("".join(lines), region.path)}[region.id]
    atomic.write_text(path, "".join(lines[:fresh.start + 1]) + body + "".join(lines[fresh.end:]))


def _state_path(root: Path) -> Path:
    return Path(root) / STATE_DIR / "state.json"


def _state(root: Path) -> dict:
    p = _state_path(root)
    return json.loads(p.read_text()) if p.is_file() else {}


def _save_state(root: Path, state: dict) -> None:
    atomic.write_json(_state_path(root), state)


def _solution_path(root: Path, ex_id: str) -> Path:
    return Path(root) / STATE_DIR / "solutions" / f"{ex_id}.py.txt"


def _committed_body(root: Path, region: Region) -> str | None:
    """The region's body in the last commit (None outside git or when the file is new)."""
    try:
        text = subprocess.run(["git", "show", f"HEAD:{region.path}"], cwd=root, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if text.returncode:
        return None
    found = {r.id: r for r in parse(text.stdout, region.path)}.get(region.id)
    return found.body if found else None


def reference(root: Path, region: Region) -> str | None:
    """The reference solution of a region: the copy saved by `make exercise`, else the committed code."""
    saved = _solution_path(root, region.id)
    if saved.is_file():
        return saved.read_text(encoding="utf-8")
    body = _committed_body(root, region)
    if body is not None and body != region.stub:
        return body
    return None if region.stubbed or body is not None else region.body  # outside git: the tree is the reference


def exercise(root: Path, day: int, only: str | None = None) -> list[Region]:
    """Stub the day's regions (all, or `only`); returns the ones stubbed now. Never loses an edit."""
    regions, state, done = day_regions(root, day, only), _state(root), []
    if not regions:
        raise UserError(f"Day {day} has no exercises marked yet.")
    for r in regions:
        if r.stubbed:
            continue  # idempotent
        ref = reference(root, r)
        if ref is not None and r.body != ref:
            raise UserError(f"Exercise {r.id} in {r.path} holds edits that differ from the reference; commit or "
                            f"move them first (`make solution {day} diff=1` shows them), nothing was changed.")
        saved = _solution_path(root, r.id)
        if not saved.is_file():
            atomic.write_text(saved, r.body)
    for r in regions:
        if not r.stubbed:
            _replace(root, r, r.stub)
            done.append(r)
        state[r.id] = "exercise"
    _save_state(root, state)
    return done


def solution(root: Path, day: int, only: str | None = None) -> list[Region]:
    """Put the reference back into the day's regions; the learner's version is kept as `<id>.mine.py.txt`."""
    regions, state, done = day_regions(root, day, only), _state(root), []
    for r in regions:
        ref = reference(root, r)
        if ref is None:
            raise UserError(f"No reference solution of {r.id} is saved or committed; restore it with git.")
        if r.body != ref:
            if not r.stubbed:  # keep what the learner wrote
                atomic.write_text(_solution_path(root, r.id).with_suffix("").with_suffix(".mine.py.txt"), r.body)
            _replace(root, r, ref)
            done.append(r)
        state[r.id] = "solution"
    _save_state(root, state)
    return done


def diff(root: Path, day: int, only: str | None = None) -> str:
    """The learner's regions against the reference, as a unified diff."""
    import difflib

    out = []
    for r in day_regions(root, day, only):
        ref = reference(root, r) or ""
        out += difflib.unified_diff(ref.splitlines(keepends=True), r.body.splitlines(keepends=True),
                                    f"reference {r.id}", f"yours {r.id} ({r.path})")
    return "".join(out)


def own(root: Path, day: int) -> bool | None:
    """True when every exercise of the day was handed to the learner (`make exercise`) and none is a stub
    any more: the day ran on the learner's code. False on the reference, None for a day without exercises."""
    regions, state = day_regions(root, day), _state(root)
    if not regions:
        return None
    return all(state.get(r.id) == "exercise" and not r.stubbed for r in regions)


def check_day(root: Path, day: int, timeout: float = 600) -> tuple[bool, str]:
    """Stub every exercise of `day` in a temporary copy and run the day's tests there.

    Returns (the tests failed, the first exercise message seen): a day whose tests pass on stubs
    has an exercise no test can catch."""
    regions = day_regions(root, day)
    with tempfile.TemporaryDirectory(prefix=f"exercise_check_{day_name(day)}_") as tmp:
        copy = Path(tmp)
        for top in SEARCHED:
            shutil.copytree(Path(root) / top, copy / top, ignore=shutil.ignore_patterns("__pycache__", "*.png"))
        for name in ("conftest.py", "pyproject.toml"):
            if (Path(root) / name).is_file():
                shutil.copy(Path(root) / name, copy / name)
        for r in regions:
            _replace(copy, r, r.stub)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m",
                               "not slow", f"days/{day_name(day)}"], cwd=copy, capture_output=True, text=True,
                              timeout=timeout, env=_env(copy))
    named = next((ln.strip() for ln in proc.stdout.splitlines() if "exercise day" in ln), "")
    return proc.returncode != 0, named


def _env(root: Path) -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    """`make exercise N [only=ID]` and `make solution N [only=ID] [diff=1]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from common.course.cli import parse_day

    try:
        if len(argv) < 2 or argv[0] not in ("exercise", "solution"):
            raise UserError("usage: make exercise N [only=dayNN.name] | make solution N [only=...] [diff=1]")
        day = parse_day(argv[1])
        opts = dict(a.split("=", 1) for a in argv[2:] if "=" in a)
        only = opts.get("only") or None
        if argv[0] == "exercise":
            done = exercise(root, day, only)
            regions = day_regions(root, day, only)
            print(f"Day {day}: {len(done)} exercise(s) stubbed now, {len(regions)} in all. Implement:")
            for r in regions:
                print(f"  {r.id:28s} {r.path}  {r.title}")
            print(f"Read 'Your turn' in days/{day_name(day)}/notes.md, then check with `make day {day}` "
                  f"(or `pytest days/{day_name(day)}`); `make solution {day}` puts the reference back.")
        elif opts.get("diff"):
            print(diff(root, day, only) or "No difference from the reference.")
        else:
            done = solution(root, day, only)
            print(f"Day {day}: reference restored in {len(done)} region(s)"
                  + (" (your versions saved under .exercises/solutions/*.mine.py.txt)." if done else "."))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
