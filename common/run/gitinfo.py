"""The commit a result came from: the short hash, with `+dirty` when code or config has uncommitted changes.

A leaf of the run layer (subprocess only), so library code that writes versioned results (`common.eval.suite`)
can record it without importing the tracker.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from common import ROOT

# Files a run writes or a learner edits as they work: a change to these does not make the code dirty.
GENERATED = ("progress.yaml", "README.md", "sprints/", "plots/", "logs/", "deliverable.md", "reference.json",
             "snapshot.json", "config.yaml", "best_config.yaml", "cheatsheet.md", "notes.md")


def dirty_paths(porcelain: str) -> list[str]:
    """Changed tracked paths that are code or config (what `+dirty` means), from `git status --porcelain`."""
    paths = [line[3:].split(" -> ")[-1].strip('"') for line in porcelain.splitlines() if line.strip()]
    return [p for p in paths if not any(p == g or p.startswith(g) or p.endswith("/" + g) for g in GENERATED)]


def git_commit(root: Path = ROOT) -> str:
    """Short commit hash, with `+dirty` when code or config has uncommitted changes.

    The learner's tracker, notes and the outputs runs generate do not count: a fresh clone's
    `make day 1` marks the day `doing` in progress.yaml before the banner is printed."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("+dirty" if dirty_paths(status) else "")
