import datetime as dt
import json

from common.course import report
from common.course.progress import Progress, fresh_text

START = dt.date(2026, 3, 2)


def _project(tmp_path):
    (tmp_path / "progress.yaml").write_text(fresh_text())
    prog = Progress.load(tmp_path / "progress.yaml")
    prog.start(1, START)
    prog.finish(1, {"mha_max_abs_err": 2e-7}, "r1", today=dt.date(2026, 3, 3))
    prog.finish(7, {"val_loss": 1.95, "tokens_per_s": 30000.0}, "r7", today=dt.date(2026, 3, 10))
    prog.add_hours(7, read=1, code=2.5, log=0.5)
    prog.save()
    d7 = tmp_path / "days" / "day07"
    d7.mkdir(parents=True)
    (d7 / "deliverable.md").write_text("# day 7\n")
    (d7 / "reference.json").write_text(json.dumps({"metrics": {"val_loss": 1.5, "tokens_per_s": 20000.0}}))
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "day07_loss.png").write_bytes(b"\x89PNG")
    return Progress.load(tmp_path / "progress.yaml")


def test_sprint_report_on_fixture_data(tmp_path):
    prog = _project(tmp_path)
    written = report.write_reports(tmp_path, prog, today=dt.date(2026, 3, 11))
    names = sorted(p.name for p in written)
    assert names == ["sprint01.md", "week02_reflection.md"]
    text = (tmp_path / "sprints" / "sprint01.md").read_text()
    assert "**2/10 days done**" in text
    row7 = next(ln for ln in text.splitlines() if ln.startswith("| 7 |"))
    assert "val_loss = 1.95" in row7
    assert "❌ val_loss 1.95 (target <= 1.88)" in row7          # seed target, failed
    assert "val_loss ×1.30" in row7 and "tokens_per_s ×1.50" in row7  # vs reference.json
    assert "4.0 / 4.0" in row7 and "[reference](../days/day07/deliverable.md)" in row7
    row1 = next(ln for ln in text.splitlines() if ln.startswith("| 1 |"))
    assert "✅ mha_max_abs_err 2e-07" in row1
    assert "![day07_loss](../plots/day07_loss.png)" in text
    assert not (tmp_path / "sprints" / "sprint02.md").exists()


def test_reflection_keeps_what_the_learner_wrote(tmp_path):
    prog = _project(tmp_path)
    today = dt.date(2026, 3, 11)
    report.write_reports(tmp_path, prog, today=today)
    path = tmp_path / "sprints" / "week02_reflection.md"
    text = path.read_text()
    for heading in ("Build log", "Pivot decision", "Next week", "Paper queue", "Motivation check", "Journal"):
        assert heading in text
    assert "Days finished: 1" in text and "Day 7: Tiny GPT loop" in text and "val_loss = 1.95" in text
    assert "Day 8: Fused ops pass" in text  # next week's plan from the curriculum
    stretch = text[text.index("4. Compress or extend?"):text.index("**Decision**")]
    assert "Day 7 (Tiny GPT loop):" in stretch and "stretch: Untie the embedding" in stretch  # the week's tiers
    assert "mega-stretch: Reach val loss below 1.5" in stretch and "Day 2 (Speedups 101):" in stretch
    mine = text.replace("- Energy (1–10):", "- Energy (1–10): 8, slept well")
    mine += "\nA paragraph of my own at the end.\n"
    path.write_text(mine)
    prog.finish(8, {"speedup": 1.2}, today=dt.date(2026, 3, 11))
    prog.save()
    report.write_reports(tmp_path, Progress.load(tmp_path / "progress.yaml"), today=today)
    again = path.read_text()
    assert "- Energy (1–10): 8, slept well" in again
    assert again.endswith("A paragraph of my own at the end.\n")
    assert "Days finished: 2" in again and "speedup = 1.2" in again  # the auto block was refreshed


def test_week_numbers_count_from_start_date(tmp_path):
    prog = _project(tmp_path)
    assert report.week_bounds(prog, dt.date(2026, 3, 2))[0] == 1
    assert report.week_bounds(prog, dt.date(2026, 3, 8))[0] == 1
    wk, lo, hi = report.week_bounds(prog, dt.date(2026, 3, 9))
    assert (wk, lo, hi) == (2, dt.date(2026, 3, 9), dt.date(2026, 3, 15))


def test_every_target_is_met_missed_or_pending_with_its_command(tmp_path):
    """Days 1-30 done with their committed reference metrics: no target reads "not measured"."""
    from common import ROOT
    from common.run.dayfiles import DayFiles

    (tmp_path / "progress.yaml").write_text(fresh_text())
    prog = Progress.load(tmp_path / "progress.yaml")
    prog.start(1, START)
    for n in range(1, 31):
        prog.finish(n, DayFiles(ROOT, n).reference_metrics(), f"r{n}", today=START + dt.timedelta(days=n))
    prog.save()
    report.write_reports(tmp_path, Progress.load(tmp_path / "progress.yaml"), today=START + dt.timedelta(days=31))
    text = "".join((tmp_path / "sprints" / f"sprint0{s}.md").read_text() for s in (1, 2, 3))
    assert "not measured" not in text
    assert "⏳ val_ppl pending, needs a CUDA GPU: run `make day 26 ARGS='--preset gpu'`" in text
    assert "⏳ flash_attn_speedup pending, needs a CUDA GPU: run `make day 3 ARGS='--preset gpu'`" in text
    assert "⏳ tokens_per_s_gpu pending" in text and "⏳ gpu_util pending" in text
    assert "✅ params" in text  # day 25 trains 27M in bfloat16 on the CPU: inside the plan's 20-50M


def test_lessons_and_decisions_survive_regeneration(tmp_path):
    prog = _project(tmp_path)
    report.write_reports(tmp_path, prog, today=dt.date(2026, 3, 11))
    path = tmp_path / "sprints" / "sprint01.md"
    text = path.read_text()
    assert "## Lessons and decisions" in text and "### Pivots" in text
    path.write_text(text.replace("- What worked this sprint", "- What worked this sprint: fused attention, clearly"))
    prog.finish(2, {"max_loss_gap": 0.0}, "r2", today=dt.date(2026, 3, 11))
    report.write_reports(tmp_path, prog, today=dt.date(2026, 3, 11))
    again = path.read_text()
    assert "fused attention, clearly" in again and "**3/10 days done**" in again
    assert again.count("## Lessons and decisions") == 1


def test_sprint_table_shows_at_most_five_metrics_and_links_the_rest(tmp_path):
    prog = _project(tmp_path)
    prog.finish(3, {f"m{i}": float(i) for i in range(12)}, "r3", today=dt.date(2026, 3, 11))
    report.write_reports(tmp_path, prog, today=dt.date(2026, 3, 11))
    row3 = next(ln for ln in (tmp_path / "sprints" / "sprint01.md").read_text().splitlines() if ln.startswith("| 3 |"))
    assert "m4 = 4" in row3 and "m5 = 5" not in row3 and "… 7 more in the [deliverable]" in row3
