"""Day 40: the decision follows day 39's reference run, the 7B-scale arithmetic, the wrap's quick run."""

import json

import pytest

from common.course import wrap
from common.nn.kv_cache import kv_bytes_per_token
from common.nn.model import GPTConfig, variant_fields
from common.run import runner
from days.day40 import run


def _fake_root(tmp_path, metrics=None, config=None):
    root = tmp_path / "root"
    p = root / "days" / "day39" / "reference.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    if metrics is not None:
        p.write_text(json.dumps({"metrics": metrics, "config": config or {}}))
    return root


def test_decision_reads_day39_and_its_knobs(tmp_path):
    root = _fake_root(tmp_path, {"chosen_default": "gqa", "chosen_inference": "mla", "moe_verdict": "adopt",
                                 "val_gqa": 1.5}, {"kv_groups": 4, "mla_rank": 40, "mla_rope_dim": 8})
    choice, rows = run.decision(root)
    assert choice["default"] == {"variant": "gqa", "fields": {"n_kv_head": 4}}
    assert choice["inference"]["fields"] == {"attn": "mla", "kv_lora_rank": 40, "rope_head_dim": 8}
    assert choice["mlp"]["variant"] == "moe" and choice["mlp"]["fields"]["n_expert"] == 4
    assert all("day 39" in r["evidence"] for r in rows)
    assert all(run.check_decision(choice).values())


def test_missing_reference_falls_back_to_mha_and_says_so(tmp_path):
    choice, rows = run.decision(_fake_root(tmp_path))
    assert choice["default"]["variant"] == choice["inference"]["variant"] == "mha"
    assert choice["mlp"] == {"variant": "dense", "fields": {}}
    assert all("default" in r["evidence"] for r in rows)


def test_max_sequences():
    gib = 2**30
    assert run.max_sequences(80 * gib, 12 * gib, 2 * gib) == 34
    assert run.max_sequences(80 * gib, 12 * gib, 3 * gib) == 22           # floor, not round
    assert run.max_sequences(10 * gib, 12 * gib, 1 * gib) == 0            # the weights alone do not fit
    assert run.max_sequences(80 * gib, 80 * gib, 1) == 0


def test_scale_table_matches_the_published_7b_cache():
    rows = {r["variant"]: r for r in run.scale_table(run.Config())}
    assert rows["mha"]["kv_bytes_per_token"] == 2 * 32 * 32 * 128 * 2  # 0.5 MiB per token: Llama-2-7B in bf16
    assert rows["mha"]["cache_gib_ctx"] == pytest.approx(2.0)          # 4k tokens: 2 GiB
    assert rows["gqa"]["kv_bytes_per_token"] * 4 == rows["mha"]["kv_bytes_per_token"]
    assert rows["mla"]["kv_bytes_per_token"] == 32 * (512 + 64) * 2
    assert rows["sliding"]["cache_gib_long"] == pytest.approx(rows["mha"]["cache_gib_ctx"] * 4100 / 4096)
    assert 6.5 < rows["mha"]["params_b"] < 6.8                          # the 7B class
    assert rows["mqa"]["fit_long"] > rows["mla"]["fit_long"] > rows["gqa"]["fit_long"] > rows["mha"]["fit_long"]
    cfg = GPTConfig(**run.SCALE_SHAPE, **variant_fields("mla", **run.SCALE_KNOBS))
    assert kv_bytes_per_token(cfg, 2) == rows["mla"]["kv_bytes_per_token"]


def test_cheatsheet_is_balanced():
    assert wrap.latex_balanced((run.HERE / "cheatsheet.md").read_text())


def test_quick_run_end_to_end(tmp_path):
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["decision_builds"] and m["cheatsheet_balanced"] and m["config_round_trip"]
    assert m["fit_mha_4k"] < m["fit_gqa_4k"] < m["fit_mqa_4k"]
    assert (tmp_path / "attention.yaml").is_file() or any(tmp_path.rglob("attention.yaml"))
