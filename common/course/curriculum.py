"""The 100-day curriculum as data (`curriculum.yaml` beside this file), and small queries on it.

    day(42).focus            -> "SFT loop"
    day(5).plan              -> {"math": 120, "code": 90, "log": 30}   (minutes)
    sprint_days(3)           -> [21, ..., 30]
    targets(7)               -> [Target(metric="val_loss", op="<=", value=1.88, ...), ...]
    day(7).core              -> what the day's run and tests cover (its coding and deliverable)
    day(7).stretch           -> ("Weight tying: ...", ...)   the optional extras, then mega_stretch

The tracker, the day runner's messages and `make report` all read it from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ruamel.yaml import YAML

PATH = Path(__file__).with_name("curriculum.yaml")
N_DAYS, DAYS_PER_SPRINT = 100, 10
CATEGORIES = {"R": "read", "M": "math", "C": "code", "L": "log"}


@dataclass(frozen=True)
class Target:
    """A numeric target from the seed plan for one metric of a day's run."""

    metric: str
    op: str            # "<=", ">=" or "~" (within relative `tol` of value)
    value: float
    note: str = ""
    tol: float = 0.05
    needs: str = ""    # "cuda": only a GPU run can measure it (the CPU run never fills it with a CPU number)
    preset: str = ""   # the preset whose run emits it (default: gpu when `needs` is set)
    cmd: str = ""      # the command that measures it, when it is not `make day N` (e.g. a rating session first)

    def met(self, x: float | None) -> bool | None:
        """True/False when `x` is a number, None when there is nothing to compare."""
        if x is None or not isinstance(x, (int, float)):
            return None
        if self.op == "<=":
            return x <= self.value
        if self.op == ">=":
            return x >= self.value
        return abs(x - self.value) <= self.tol * abs(self.value)

    def describe(self) -> str:
        return f"≈ {self.value:g} ± {self.tol:.0%}" if self.op == "~" else f"{self.op} {self.value:g}"

    def command(self, day: int) -> str:
        """The command that measures this target."""
        if self.cmd:
            return self.cmd
        preset = self.preset or ("gpu" if self.needs else "")
        return f"make day {day}" + (f" ARGS='--preset {preset}'" if preset else "")

    def pending(self, day: int) -> str:
        """Why a run did not measure it, and how to: 'needs a CUDA GPU: run `make day 26 ARGS=...`'."""
        hardware = {"cuda": "a CUDA GPU"}.get(self.needs, self.needs)
        return f"needs {hardware}: run `{self.command(day)}`" if self.needs else f"run `{self.command(day)}`"


@dataclass(frozen=True)
class Day:
    """One row of the curriculum."""

    n: int
    sprint: int
    focus: str
    reading: str | None
    link: str | None
    coding: str
    math: str | None
    eval: str
    deliverable: str
    time: str
    targets: tuple[Target, ...] = field(default_factory=tuple)
    stretch: tuple[str, ...] = ()        # seed 001's tiers: optional work once the core is done
    mega_stretch: tuple[str, ...] = ()   # larger extensions, where the seeds name one

    @property
    def core(self) -> str:
        """The core tier: what `make day N` builds, runs and tests."""
        return f"{self.coding}; deliverable: {self.deliverable[0].lower()}{self.deliverable[1:]}"

    @property
    def plan(self) -> dict[str, int]:
        return parse_time(self.time)

    @property
    def folder(self) -> str:
        return f"day{self.n:02d}"


def parse_time(code: str) -> dict[str, int]:
    """'90R/120C/30L' -> {'read': 90, 'code': 120, 'log': 30} (minutes)."""
    out = {}
    for part in code.split("/"):
        m = re.fullmatch(r"\s*(\d+)\s*([RMCL])\s*", part)
        if not m:
            raise ValueError(f"time code {code!r} is not like '90R/120C/30L'")
        out[CATEGORIES[m.group(2)]] = int(m.group(1))
    return out


@lru_cache(maxsize=1)
def _load() -> tuple[dict[int, dict], dict[int, Day]]:
    raw = YAML(typ="safe").load(PATH.read_text(encoding="utf-8"))
    days = {}
    for n, d in raw["days"].items():
        targets = tuple(Target(**t) for t in (d.get("targets") or []))
        days[int(n)] = Day(n=int(n), sprint=int(d["sprint"]), focus=d["focus"], reading=d.get("reading"),
                           link=d.get("link"), coding=d["coding"], math=d.get("math"), eval=d["eval"],
                           deliverable=d["deliverable"], time=d["time"], targets=targets,
                           stretch=tuple(d.get("stretch") or ()), mega_stretch=tuple(d.get("mega_stretch") or ()))
    return {int(k): v for k, v in raw["sprints"].items()}, days


def day(n: int) -> Day:
    return _load()[1][n]


def all_days() -> list[Day]:
    return [v for _, v in sorted(_load()[1].items())]


def sprint_info(s: int) -> dict:
    return _load()[0][s]


def sprint_of(n: int) -> int:
    return (n - 1) // DAYS_PER_SPRINT + 1


def sprint_days(s: int) -> list[int]:
    return list(range((s - 1) * DAYS_PER_SPRINT + 1, s * DAYS_PER_SPRINT + 1))


def targets(n: int) -> tuple[Target, ...]:
    return day(n).targets
