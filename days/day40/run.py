"""Day 40: Sprint 4 wrap — the attention decision saved as config, what it buys at 7B scale, the README results.

The shared wrap (`common/course/wrap.py`, as on days 10, 20 and 30) exports every Sprint 4 config and
rewrites the README block between `<!-- sprint4-results:begin -->` and `<!-- sprint4-results:end -->`.
Then the day turns day 39's decision (read from its committed reference run) into `attention.yaml`:
the GPTConfig fields of the default and the inference variant, each checked by building a model from
them. Finally it prices the decision where it matters, at a 7B-class shape: KV bytes per token and how
many 4k-token sequences fit next to the weights on one 80 GB accelerator, for every variant of the sprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from common.course import wrap
from common.course.wrap import latex_balanced, reference_metrics
from common.nn.kv_cache import kv_bytes_per_token, kv_cache_bytes
from common.nn.model import GPT, GPTConfig, count_params_formula, variant_fields
from common.run import runner
from common.run.dayfiles import DayFiles

DAY = 40
SPRINT = 4
HERE = Path(__file__).resolve().parent

# The 7B-class shape the decision is priced at (the Llama-2-7B shape: 32 layers, width 4096, 32 heads of 128),
# with the sprint's variants at the proportions of their papers: GQA with 8 groups (Llama-2-70B), MLA with a
# latent of 4 x head_dim and a rotated key of head_dim / 2 (DeepSeek-V2), Mistral 7B's 4k window.
SCALE_SHAPE = dict(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, n_embd=4096, pos="rope", norm="rms",
                   mlp="swiglu", mlp_ratio=4, tie_weights=False)
SCALE_KNOBS = dict(kv_groups=8, mla_rank=512, mla_rope_dim=64, window=4096, n_global=4)
SCALE_VARIANTS = ("mha", "gqa", "mqa", "mla", "sliding")


@dataclass
class Config:
    days: str = "31-39"
    update_readme: bool = True
    context: int = 4096          # tokens per sequence in the memory budget
    long_context: int = 32768    # a second, long context
    memory_gib: float = 80.0     # one accelerator's memory
    bytes_per_elem: int = 2      # bfloat16 weights and cache


PRESETS = {"nano": {}, "cpu": {}, "gpu": {}}


def max_sequences(memory_bytes: float, weight_bytes: float, cache_bytes_per_seq: float) -> int:
    """How many sequences' KV caches fit beside the weights (0 when the weights alone do not fit)."""
    # >>> exercise day40.max_sequences: whole sequences whose cache fits in the memory the weights leave free
    free = memory_bytes - weight_bytes
    if free <= 0 or cache_bytes_per_seq <= 0:
        return 0 if free <= 0 else 10**9
    return int(free // cache_bytes_per_seq)
    # <<< exercise day40.max_sequences


def scale_table(cfg: Config) -> list[dict]:
    """Per variant at the 7B-class shape: params, KV bytes per token, cache per sequence, sequences that fit."""
    rows = []
    for name in SCALE_VARIANTS:
        mcfg = GPTConfig(**SCALE_SHAPE, **variant_fields(name, **SCALE_KNOBS))
        n = count_params_formula(mcfg)
        weights = n * cfg.bytes_per_elem
        row = {"variant": name, "params_b": n / 1e9, "kv_bytes_per_token": kv_bytes_per_token(mcfg, cfg.bytes_per_elem),
               "weights_gib": weights / 2**30}
        for ctx_len, tag in ((cfg.context, "ctx"), (cfg.long_context, "long")):
            per_seq = kv_cache_bytes(mcfg, ctx_len, 1, cfg.bytes_per_elem)
            row[f"cache_gib_{tag}"] = per_seq / 2**30
            row[f"fit_{tag}"] = max_sequences(cfg.memory_gib * 2**30, weights, per_seq)
        rows.append(row)
    return rows


def day39_knobs(root: Path) -> dict:
    """variant_fields keywords from day 39's reference config (its defaults where there is no reference)."""
    c = DayFiles(root, 39).reference_config()
    names = dict(kv_groups="kv_groups", mla_rank="mla_rank", mla_rope_dim="mla_rope_dim", window="sliding_window",
                 n_global="sliding_global", n_expert="moe_experts")
    return {k: c[v] for k, v in names.items() if v in c}


def decision(root: Path) -> tuple[dict, list[dict]]:
    """Day 39's choice as {role: GPTConfig fields} and one evidence row per role, from its reference run."""
    m = reference_metrics(root, 39)
    knobs = day39_knobs(root)
    roles = {"default": ("chosen_default", "lowest val loss among the attention variants that keep quality"),
             "inference": ("chosen_inference", "fewest KV bytes per token among the variants that keep quality")}
    out, rows = {}, []
    for role, (key, how) in roles.items():
        name = m.get(key, "mha")
        out[role] = {"variant": name, "fields": variant_fields(name, **knobs)}
        val = m.get(f"val_{name}")
        rows.append({"role": role, "variant": name, "GPTConfig fields": ", ".join(
            f"{k}={v}" for k, v in out[role]["fields"].items()) or "— (plain MHA)",
            "evidence": f"day 39: {how}" + (f" (val loss {val})" if val is not None else "")
            if key in m else "default: day 39 has no reference run yet"})
    moe = m.get("moe_verdict")
    out["mlp"] = {"variant": "moe" if moe == "adopt" else "dense",
                  "fields": variant_fields("moe", **knobs) if moe == "adopt" else {}}
    rows.append({"role": "mlp", "variant": out["mlp"]["variant"], "GPTConfig fields": ", ".join(
        f"{k}={v}" for k, v in out["mlp"]["fields"].items()) or "— (dense MLP)",
        "evidence": f"day 39: the mixture of experts is '{moe}'" if moe else "default: day 39 has no MoE verdict yet"})
    return out, rows


def check_decision(choice: dict) -> dict:
    """Build a small model from each role's fields (with RoPE): the file must be usable, not just readable."""
    ok = {}
    for role, spec in choice.items():
        cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=8, n_embd=64, pos="rope", **spec["fields"])
        with torch.device("meta"):
            ok[role] = GPT(cfg).num_params() == count_params_formula(cfg)
    return ok


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    metrics = wrap.run_wrap(ctx, SPRINT, wrap.sprint_days(cfg.days), cfg.update_readme)

    choice, rows = decision(ctx.root)
    path = ctx.day_dir / "attention.yaml"
    header = ("# Sprint 4's decision, assembled by `make day 40` from day 39's reference run (evidence: days/day40/\n"
              "# deliverable.md). Each role holds GPTConfig fields to add to a model config with pos='rope':\n"
              "# default for training, inference for long-context serving, mlp for the feed-forward block.\n")
    loaded = wrap.save_yaml(path, header, choice)
    built = check_decision(loaded)
    d.section("The decision, as config")
    d.table(rows)
    d.text(f"What to look at: each role names a variant and the GPTConfig fields that make it, read from day 39's "
           f"reference run rather than measured again. Saved to `{path.name}`; reloaded, every role builds a model "
           f"whose parameter count matches the closed form ({'all' if all(built.values()) else 'NOT all'} of "
           f"{len(built)}). Later sprints start from `default` and switch to `inference` where the cache is the limit.")

    table = scale_table(cfg)
    by = {r["variant"]: r for r in table}
    d.section("What the choice buys at 7B scale")
    d.text(f"The same variants at a 7B-class shape ({SCALE_SHAPE['n_layer']} layers, width {SCALE_SHAPE['n_embd']}, "
           f"{SCALE_SHAPE['n_head']} heads of {SCALE_SHAPE['n_embd'] // SCALE_SHAPE['n_head']}; GQA with "
           f"{SCALE_KNOBS['kv_groups']} groups, MLA with a latent of {SCALE_KNOBS['mla_rank']} and a rotated key of "
           f"{SCALE_KNOBS['mla_rope_dim']}, a {SCALE_KNOBS['window']:,}-token window), in bfloat16, on one "
           f"{cfg.memory_gib:g} GiB accelerator: closed forms from `kv_bytes_per_token` and `kv_cache_bytes`, no "
           "measurement.")
    d.table([{"variant": r["variant"], "params (B)": f"{r['params_b']:.2f}", "weights GiB": f"{r['weights_gib']:.1f}",
              "KV bytes/token": f"{r['kv_bytes_per_token']:,}",
              f"cache GiB @ {cfg.context // 1024}k": f"{r['cache_gib_ctx']:.3f}",
              f"sequences @ {cfg.context // 1024}k": r["fit_ctx"],
              f"cache GiB @ {cfg.long_context // 1024}k": f"{r['cache_gib_long']:.3f}",
              f"sequences @ {cfg.long_context // 1024}k": r["fit_long"]} for r in table])
    best = max(table, key=lambda r: r["fit_long"])
    ratio = by["mha"]["kv_bytes_per_token"] / by["mla"]["kv_bytes_per_token"]
    d.text(f"What to look at: MHA fits {by['mha']['fit_ctx']} sequences of {cfg.context // 1024}k tokens beside its "
           f"weights and {by['mha']['fit_long']} of {cfg.long_context // 1024}k; at {cfg.long_context // 1024}k "
           f"{best['variant']} fits the most ({best['fit_long']}). The batch a server can run — and so its throughput "
           "(day 35) — is set by this column, which is why the sprint's variants exist. The sliding window equals MHA "
           f"up to its window and stops growing after it; MLA's cache is {ratio:.0f}× smaller than MHA's at every "
           "length.")

    sheet = (HERE / "cheatsheet.md").read_text(encoding="utf-8")
    d.section("Cheat sheet")
    d.text(f"[cheatsheet.md](cheatsheet.md): {sheet.count('$$') // 2} display formulas; LaTeX delimiters "
           f"{'balanced' if latex_balanced(sheet) else 'NOT BALANCED'}.")
    return {**metrics, "default_variant": choice["default"]["variant"],
            "inference_variant": choice["inference"]["variant"], "mlp_variant": choice["mlp"]["variant"],
            "decision_builds": all(built.values()), "cheatsheet_balanced": latex_balanced(sheet),
            **{f"fit_{r['variant']}_{cfg.context // 1024}k": r["fit_ctx"] for r in table},
            **{f"fit_{r['variant']}_{cfg.long_context // 1024}k": r["fit_long"] for r in table}}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
