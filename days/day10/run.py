"""Day 10: Sprint 1 wrap — one config file, a docstring audit, and the sprint's results collected.

A full run (the work is `common/course/wrap.py`, shared with every sprint's wrap day)
  * writes `days/day10/config.yaml`: every Sprint 1 day's config under each named preset, exactly
    as the runner would resolve it (so the file cannot drift from the code);
  * audits docstrings in `common/` (every public module, class and function);
  * gathers each day's committed `reference.json` and plots into a results table and rewrites the
    README section between `<!-- sprint1-results:begin -->` and `<!-- sprint1-results:end -->`
    (only on a full run; `--quick` writes its copy under the scratch folder).
"""

from __future__ import annotations

from dataclasses import dataclass

from common.course import wrap
from common.run import runner

DAY = 10
SPRINT = 1


@dataclass
class Config:
    days: str = "1-9"           # the days whose configs and results are collected
    update_readme: bool = True  # rewrite the README section (full runs only)


PRESETS = {"nano": {}, "cpu": {}, "gpu": {}}


def day_range(spec: str) -> list[int]:
    # >>> exercise day10.day_range: parse '1-9' (or '4') into the list of days
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))
    # <<< exercise day10.day_range


def main(cfg: Config, ctx: runner.Context) -> dict:
    return wrap.run_wrap(ctx, SPRINT, day_range(cfg.days), cfg.update_readme)


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
