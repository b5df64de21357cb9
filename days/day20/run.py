"""Day 20: Sprint 2 wrap — configs, docstring audit, results in the README, glossary and cheat sheet.

The shared wrap (`common/course/wrap.py`, as on day 10) exports the Sprint 2 configs and rewrites the
README section between `<!-- sprint2-results:begin -->` and `<!-- sprint2-results:end -->`. This day
also checks its two hand-written pages, `glossary.md` and `cheatsheet.md`: balanced LaTeX delimiters
and a glossary entry for every term the cheat sheet leans on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common.course import wrap
from common.course.wrap import latex_balanced
from common.run import runner

DAY = 20
SPRINT = 2
HERE = Path(__file__).resolve().parent


@dataclass
class Config:
    days: str = "11-19"
    update_readme: bool = True


PRESETS = {"nano": {}, "cpu": {}, "gpu": {}}


def glossary_terms(text: str) -> list[str]:
    return [m.lower() for m in re.findall(r"^\*\*(.+?)\*\*", text, flags=re.M)]


def main(cfg: Config, ctx: runner.Context) -> dict:
    metrics = wrap.run_wrap(ctx, SPRINT, wrap.sprint_days(cfg.days), cfg.update_readme)
    glossary = (HERE / "glossary.md").read_text(encoding="utf-8")
    sheet = (HERE / "cheatsheet.md").read_text(encoding="utf-8")
    terms = glossary_terms(glossary)
    needed = ["jacobian", "hessian-vector product", "log-sum-exp", "weight decay", "gradient clipping",
              "edge of stability", "condition number", "machine epsilon"]
    missing = [t for t in needed if not any(t in g for g in terms)]
    ctx.deliverable.section("Glossary and cheat sheet")
    ctx.deliverable.text(f"[glossary.md](glossary.md): {len(terms)} terms; [cheatsheet.md](cheatsheet.md): "
                         f"{sheet.count('$$') // 2} display formulas. LaTeX delimiters balanced: glossary "
                         f"{'yes' if latex_balanced(glossary) else 'NO'}, cheat sheet "
                         f"{'yes' if latex_balanced(sheet) else 'NO'}. Core terms missing from the glossary: "
                         f"{', '.join(missing) or 'none'} (checked: {', '.join(needed)}; each must appear in a "
                         "bold entry title).")
    balanced = latex_balanced(glossary) and latex_balanced(sheet)
    return {**metrics, "glossary_terms": len(terms), "latex_balanced": balanced, "glossary_missing": len(missing)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
