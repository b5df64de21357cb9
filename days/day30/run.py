"""Day 30: Sprint 3 wrap — the best pretraining recipe saved, the README results, the cheat sheet checked.

The shared wrap (`common/course/wrap.py`, as on days 10 and 20) exports every Sprint 3 config and rewrites
the README block between `<!-- sprint3-results:begin -->` and `<!-- sprint3-results:end -->`. Then
the day assembles `best_config.yaml`: each choice (shape, vocabulary, schedule, micro-batch, token
budget, patience) is read from the committed reference run of the day that decided it, with the
evidence next to it; the file is checked by building the model and the TrainConfig from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from common.course import wrap
from common.course.wrap import latex_balanced, reference_metrics
from common.nn.model import GPT, SHAPES, GPTConfig
from common.run import runner
from common.run.dayfiles import DayFiles
from common.train import TrainConfig, lr_at

DAY = 30
SPRINT = 3
HERE = Path(__file__).resolve().parent
SHAPE = "pretrain_27m"          # the day-24 shape the GPU preset of day 25 trains


@dataclass
class Config:
    days: str = "21-29"
    update_readme: bool = True


PRESETS = {"nano": {}, "cpu": {}, "gpu": {}}


def _pick(root: Path, day: int, key: str, default, how: str) -> tuple:
    """(value, evidence) from a day's reference metrics, or the default with the reason it was used."""
    m = reference_metrics(root, day)
    if key in m:
        shown = f"{m[key]:,.0f}" if isinstance(m[key], float) and m[key].is_integer() else m[key]
        return m[key], f"day {day}: {how} (`{key}` = {shown})"
    return default, f"default: day {day} has no reference value `{key}` yet"


def best_recipe(root: Path) -> tuple[dict, list[dict]]:
    """The recipe ({model, train, data}) and one evidence row per decision."""
    model = dataclasses.asdict(SHAPES[SHAPE])
    rows = [{"choice": "model shape", "value": f"{SHAPE}: {model['n_layer']}×{model['n_embd']}, block "
             f"{model['block_size']}", "evidence": "day 24: the 20–50M shape day 25's gpu preset trains"}]
    vocab, why = _pick(root, 27, "best_vocab_compute", model["vocab_size"],
                       "lowest bits per byte at equal training FLOPs")
    vocab = int(str(vocab)[:-1]) * 1000 if str(vocab).endswith("k") else int(vocab)  # day 27 labels: "16k"
    model["vocab_size"] = vocab
    rows.append({"choice": "vocabulary", "value": vocab, "evidence": why})
    sched, why = _pick(root, 29, "best_schedule", "cosine", "lowest final validation loss, same budget")
    train = {"lr": 1e-3, "min_lr": 1e-4, "weight_decay": 0.1, "grad_clip": 1.0, "dtype": "bfloat16",
             "compile": True, "eval_interval": 250}
    # day 29's warm-up/decay lengths are fractions of its run: keep the fractions, scale to this one
    d29 = DayFiles(root, 29).reference_metrics()
    train["schedule"] = d29.get("best_schedule_kind", "cosine")
    if d29.get("best_decay_frac") is not None:
        train["decay_frac"] = d29["best_decay_frac"]
    rows.append({"choice": "schedule", "value": sched, "evidence": why})
    setting, why = _pick(root, 28, "best_setting", "1x32", "highest tokens/s at a constant effective batch (CPU)")
    micro, accum = (int(x) for x in str(setting).split("x"))
    rows.append({"choice": "micro-batch × accumulation", "value": f"{micro}×{accum}", "evidence": why})
    n = count_params(GPTConfig(**model))
    tokens, why = _pick(root, 23, "budget_27m_tokens", 20 * n, "the token budget day 23 set for the 27M model")
    seq = micro * accum * model["block_size"]
    train["max_iters"] = max(1, round(int(tokens) / seq))
    train["warmup_iters"] = max(1, round(train["max_iters"] * d29.get("best_warmup_frac", 0.05)))
    train["grad_accum"] = accum
    rows.append({"choice": "training tokens", "value": f"{int(tokens):,} ({train['max_iters']:,} steps of {seq:,})",
                 "evidence": why})
    train["early_stop_patience"] = DayFiles(root, 26).reference_config().get("patience", 0)
    rows.append({"choice": "early stopping", "value": f"patience {train['early_stop_patience']}",
                 "evidence": "day 26: the best checkpoint is kept; patience counts evaluations"})
    return {"model": model, "train": train, "data": {"micro_batch": micro, "tokenizer": f"sp{int(vocab)} bpe"}}, rows


def noise_check(root: Path) -> list[dict]:
    """How far each one-seed winner leads its runner-up, against the seed-to-seed spread of day 6."""
    # >>> exercise day30.noise_check: each choice's winner vs runner-up, the relative gap against two seed spreads
    spread = DayFiles(root, 6).reference_metrics().get("val_loss_rel_std")
    m27, m29 = DayFiles(root, 27).reference_metrics(), DayFiles(root, 29).reference_metrics()
    candidates = {
        "vocabulary (day 27: bits/byte at equal FLOPs)": {k.rsplit("_", 1)[1]: v for k, v in m27.items()
                                                          if k.startswith("bpb_compute_")},
        "schedule (day 29: final val loss)": {k[4:]: v for k, v in m29.items()
                                              if k.startswith("val_") and isinstance(v, (int, float))}}
    rows = []
    for choice, vals in candidates.items():
        if len(vals) < 2:
            continue
        (best, bv), (second, sv) = sorted(vals.items(), key=lambda kv: kv[1])[:2]
        gap = (sv - bv) / bv
        rows.append({"choice": choice, "winner": best, "runner-up": second, "relative gap": gap,
                     "seed spread (1 std)": spread,
                     "verdict": "—" if spread is None else "within noise" if gap < 2 * spread else "beyond noise"})
    return rows
    # <<< exercise day30.noise_check


def count_params(cfg: GPTConfig) -> int:
    with torch.device("meta"):  # shapes only, no memory
        return GPT(cfg).num_params()


def check_recipe(recipe: dict) -> dict:
    """Build the model and TrainConfig from the recipe: the file must be usable, not just readable."""
    cfg = GPTConfig(**recipe["model"])
    tc = TrainConfig(**recipe["train"])
    n = count_params(cfg)
    lrs = [lr_at(i, tc) for i in range(0, tc.max_iters, max(1, tc.max_iters // 50))]
    return {"params": n, "in_range": 20e6 <= n <= 50e6, "peak_lr": max(lrs),
            "fields_known": set(recipe["train"]) <= {f.name for f in dataclasses.fields(TrainConfig)}}


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    metrics = wrap.run_wrap(ctx, SPRINT, wrap.sprint_days(cfg.days), cfg.update_readme)

    recipe, rows = best_recipe(ctx.root)
    path = ctx.day_dir / "best_config.yaml"
    header = ("# Sprint 3's best pretraining recipe, assembled by `make day 30` from the days' reference runs.\n"
              "# Each choice and its evidence: days/day30/deliverable.md. model: GPTConfig fields; train: TrainConfig\n"
              "# fields; data: batch and tokenizer. Load with OmegaConf.load(path).\n")
    loaded = wrap.save_yaml(path, header, recipe)
    check = check_recipe(loaded)
    d.section("The best configuration")
    d.table(rows)
    tr, seq = recipe["train"], recipe["data"]["micro_batch"] * recipe["train"]["grad_accum"] * \
        recipe["model"]["block_size"]
    tpp = tr["max_iters"] * seq / check["params"]
    d.text(f"What to look at: each row is one decision and, in *evidence*, the reference metric it was read from: "
           "the recipe is assembled from days 23–29, not measured again here. The token budget is "
           f"{tpp:.0f} tokens per parameter ({'' if 15 <= tpp <= 25 else 'against '}Chinchilla's rule of about "
           f"20), cut into {tr['max_iters']:,} steps of {seq:,} tokens = micro-batch {recipe['data']['micro_batch']} × "
           f"{tr['grad_accum']} accumulation × block {recipe['model']['block_size']}.")
    d.text(f"Saved to `{path.name}`. Reloaded, it builds a {check['params']:,}-parameter GPT "
           f"({'inside' if check['in_range'] else 'OUTSIDE'} the 20–50M target) and a valid TrainConfig "
           f"({recipe['train']['max_iters']:,} steps, peak learning rate {check['peak_lr']:g}). Choices made on "
           "this CPU (the micro-batch) should be re-measured on the GPU that runs the recipe.")

    noise = noise_check(ctx.root)
    d.section("Which choices are within noise")
    d.text("Days 27 and 29 each ran one seed of a toy-size model. Their winners are compared with the runner-up "
           "against the seed-to-seed spread day 6 measured (relative std of the final val loss over seeds, for its "
           "small character model: a yardstick, not the spread of these exact runs). A lead under two spreads is "
           "called within noise: the ranking could flip with another seed.")
    d.table([{**r, "relative gap": f"{r['relative gap']:.2%}", "seed spread (1 std)":
              "—" if r["seed spread (1 std)"] is None else f"{r['seed spread (1 std)']:.2%}"} for r in noise])
    within = [r["choice"].split(" (")[0] for r in noise if r["verdict"] == "within noise"]
    spread = next((r["seed spread (1 std)"] for r in noise if r["seed spread (1 std)"] is not None), None)
    if noise:
        d.text("What to look at: *relative gap* = (runner-up − winner) / winner"
               + (f", set against two seed spreads, {2 * spread:.2%}: " if spread is not None else
                  "; no seed spread is recorded (day 6 has no reference run), so no verdict: ")
               + "; ".join(f"{r['choice'].split(' (')[0]} {r['relative gap']:.2%}"
                           + (f" → {r['verdict']}" if spread is not None else "") for r in noise) + ".")
    one = len(within) == 1
    d.text("Within noise: " + ", ".join(within) + f". Keep {'it as a default' if one else 'them as defaults'}, and "
           "re-run the ablation with more seeds (or at the GPU size) before relying on "
           f"{'it' if one else 'them'}." if within else
           "No choice is within noise by this rule; with one seed each, that is still weak evidence.")

    sheet = (HERE / "cheatsheet.md").read_text(encoding="utf-8")
    d.section("Cheat sheet")
    d.text(f"[cheatsheet.md](cheatsheet.md): {sheet.count('$$') // 2} display formulas; LaTeX delimiters "
           f"{'balanced' if latex_balanced(sheet) else 'NOT BALANCED'}.")
    return {**metrics, "best_params": check["params"], "best_in_range": check["in_range"],
            "best_vocab": recipe["model"]["vocab_size"], "best_schedule": recipe["train"]["schedule"],
            "best_steps": recipe["train"]["max_iters"], "config_usable": check["fields_known"],
            "cheatsheet_balanced": latex_balanced(sheet), "choices_within_noise": len(within),
            **{f"{r['choice'].split(' ')[0]}_gap_rel": round(r["relative gap"], 4) for r in noise}}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
