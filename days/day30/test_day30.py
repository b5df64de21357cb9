"""Day 30: the wrap runs for sprint 3, the recipe comes from the reference runs and is usable."""

import json

import pytest

from common.course import wrap
from common.run import runner
from days.day30 import run


def _fake_root(tmp_path, metrics_by_day):
    root = tmp_path / "root"
    for src in ("day24/configs/pretrain_27m.yaml",):
        dst = root / "days" / src
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text((run.HERE.parent / src).read_text())
    for day, metrics in metrics_by_day.items():
        p = root / "days" / f"day{day:02d}" / "reference.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"metrics": metrics}))
    return root


def test_recipe_follows_the_reference_runs(tmp_path):
    root = _fake_root(tmp_path, {27: {"best_vocab_compute": "8k"}, 28: {"best_setting": "4x8"},
                                 29: {"best_schedule": "cosine"}, 23: {"budget_27m_tokens": 1_000_000}})
    recipe, rows = run.best_recipe(root)
    assert recipe["model"]["vocab_size"] == 8000 and recipe["train"]["schedule"] == "cosine"
    assert recipe["data"]["micro_batch"] == 4 and recipe["train"]["grad_accum"] == 8
    assert recipe["train"]["max_iters"] == round(1_000_000 / (32 * 512))
    assert all("default" not in r["evidence"] for r in rows if r["choice"] in ("vocabulary", "schedule"))


def test_missing_references_fall_back_and_say_so(tmp_path):
    recipe, rows = run.best_recipe(_fake_root(tmp_path, {}))
    assert recipe["model"]["vocab_size"] == 16000
    assert sum("default" in r["evidence"] for r in rows) == 4


def test_check_recipe_builds_the_model():
    recipe, _ = run.best_recipe(run.HERE.parent.parent)
    c = run.check_recipe(recipe)
    assert c["in_range"] and c["fields_known"] and c["peak_lr"] == recipe["train"]["lr"]


def test_cheatsheet_is_balanced():
    assert wrap.latex_balanced((run.HERE / "cheatsheet.md").read_text())


def test_noise_check_compares_the_lead_with_two_seed_spreads(tmp_path):
    m27 = {"bpb_compute_8k": 1.50, "bpb_compute_16k": 1.515, "bpb_compute_32k": 1.60, "bpb_steps_4k": 1.0}
    m29 = {"val_cosine": 2.10, "val_wsd": 2.00, "val_one_cycle": 2.05, "best_schedule": "wsd"}
    rows = run.noise_check(_fake_root(tmp_path, {6: {"val_loss_rel_std": 0.01}, 27: m27, 29: m29}))
    vocab, sched = rows
    assert (vocab["winner"], vocab["runner-up"]) == ("8k", "16k") and vocab["seed spread (1 std)"] == 0.01
    assert vocab["relative gap"] == pytest.approx(0.01) and vocab["verdict"] == "within noise"   # 1% < 2 x 1%
    assert (sched["winner"], sched["runner-up"]) == ("wsd", "one_cycle") and sched["verdict"] == "beyond noise"
    assert sched["relative gap"] == pytest.approx(0.025)
    rows = run.noise_check(_fake_root(tmp_path / "b", {27: m27, 29: {"val_wsd": 2.0}}))
    assert len(rows) == 1 and rows[0]["verdict"] == "—"              # no spread measured; one schedule: no row

def test_quick_run_end_to_end(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["config_usable"] and m["best_in_range"] and m["cheatsheet_balanced"]
    section = (tmp_path / "README_sprint3.md").read_text()
    assert wrap.markers(3)[0] in section and "| 21 |" in section
    assert (tmp_path / "best_config.yaml").is_file()
