"""One owner for a day's files: where its folder, reference, snapshot, deliverable and plots live.

    f = DayFiles(root, 7)
    f.dir                    # days/day07
    f.reference()            # the committed reference.json as a dict (None when there is none)
    f.reference_metrics()    # its metrics ({} when there is none)
    f.plot("loss")           # plots/day07_loss.png

Every reader of a committed day file (the runner, `make reproduce`, the sprint wrap-ups and
reports) goes through here, so the layout is written down once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DAYS_PACKAGE = "days"


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
