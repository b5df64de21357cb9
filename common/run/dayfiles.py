"""One owner for a day's files: where its folder, reference, snapshot, deliverable and plots live.

    f = DayFiles(root, 7)
    f.dir                    # days/day07
    f.reference()            # the committed reference.json as a dict (None when there is none)
    f.reference_metrics()    # its metrics ({} when there is none)
    f.plot("loss")           # plots/day07_loss.png (the reference run's plot, committed)
    f.results_dir            # results/day07: the learner's own default run (git-ignored)
    f.variant_dir("lr=3e-3") # results/day07/variants/lr=3e-3: a run with overrides

Two owners share the tree and never write each other's files. The course owns what git tracks:
code, notes, `reference.json`, the reference run's `deliverable.md` and `plots/`. The learner
owns what git ignores: `results/` (their runs), `progress.yaml`, `sprints/`, `logs/`. So a course
update (`git pull`) never conflicts with a learner's results.

Every reader of a committed day file (the runner, `make reproduce`, the sprint wrap-ups and
reports) goes through here, so the layout is written down once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DAYS_PACKAGE = "days"
RESULTS = "results"  # the learner's runs; git-ignored


def day_name(day: int) -> str:
    return f"day{day:02d}"


def built_days(root: Path) -> list[int]:
    """The days that have a run.py, in order."""
    return sorted(int(p.parent.name[3:]) for p in (Path(root) / DAYS_PACKAGE).glob("day[0-9][0-9]*/run.py"))


@dataclass(frozen=True)
class DayFiles:
    """The committed files of day `day` under the project `root`."""

    root: Path
    day: int

    @property
    def name(self) -> str:
        return day_name(self.day)

    @property
    def dir(self) -> Path:
        return Path(self.root) / DAYS_PACKAGE / self.name

    @property
    def module(self) -> str:
        """The day's program, run as `python -m <module>` (the course never imports it)."""
        return f"{DAYS_PACKAGE}.{self.name}.run"

    @property
    def built(self) -> bool:
        return (self.dir / "run.py").is_file()

    @property
    def reference_path(self) -> Path:
        return self.dir / "reference.json"

    @property
    def snapshot_path(self) -> Path:
        return self.dir / "snapshot.json"

    @property
    def deliverable_path(self) -> Path:
        return self.dir / "deliverable.md"

    @property
    def results_dir(self) -> Path:
        """The learner's default run of this day: deliverable.md and plots/ (git-ignored)."""
        return Path(self.root) / RESULTS / self.name

    def variant_dir(self, label: str) -> Path:
        """A run with overrides, kept beside the learner's default run, never over it."""
        return self.results_dir / "variants" / label

    @property
    def my_deliverable_path(self) -> Path:
        return self.results_dir / "deliverable.md"

    def plot(self, what: str, out: Path | None = None) -> Path:
        """plots/dayNN_<what>.png under `out` (default: the project root)."""
        return Path(out or self.root) / "plots" / f"{self.name}_{what}.png"

    def plots(self, out: Path | None = None) -> list[Path]:
        return sorted((Path(out or self.root) / "plots").glob(f"{self.name}_*.png"))

    def reference(self) -> dict | None:
        """The committed reference run (None when absent or unreadable)."""
        return _read_json(self.reference_path)

    def reference_metrics(self) -> dict:
        return (self.reference() or {}).get("metrics", {})

    def reference_config(self) -> dict:
        return (self.reference() or {}).get("config", {})

    def snapshot(self) -> dict | None:
        return _read_json(self.snapshot_path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None
