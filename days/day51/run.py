"""Day 51: the eval harness, first version — tasks as YAML, models behind one interface, baseline scores.

`common/eval/harness.py` runs a task (a YAML file in `common/eval/tasks/`) on any model that answers three
requests (`common/eval/lm.py`): the log-likelihood of a continuation, the log-likelihood of a whole text,
and greedy generation. This run scores the five Sprint 5 models (the base model, pretrained with Sprint 3's
recipe, and SFT, DPO, PPO and GRPO on top of it) on the first tasks: the six instruction families (held-out
phrasings, exact match), the same prompts as multiple choice, which sentence comes next in a held-out story,
and bits per byte on held-out stories. It also checks the second model interface: a `transformers` GPT-2 with
the weights of one of our GPTs must score what our GPT scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common.data.chat import ChatTokenizer
from common.eval import harness, suite
from common.eval.lm import GPTLM, HFLM
from common.run import plotting, runner

DAY = 51
KEY_METRICS = ["instruct_em_sft", "instruct_mc_acc_norm_sft", "story_endings_acc_norm_base", "tinystories_bpb_base",
               "hf_max_abs_diff"]
METRIC_KINDS = {"seconds_*": "timing"}
MODELS = suite.SPRINT_MODELS


@dataclass
class Config:
    tasks: str = "instruct,instruct_mc,story_endings,tinystories_ppl"   # names or groups (harness.resolve)
    limit: int = 0            # documents per task (0 = all)
    hf_docs: int = 200        # instruct_mc documents scored by both interfaces for the parity check


PRESETS = {"nano": dict(limit=8, hf_docs=8), "cpu": {}, "gpu": {}}


def pick(loglikelihoods: list[float], choices: list[str], normalise: bool) -> int:
    """The index of the chosen answer: the highest log-likelihood, or (normalise) the highest per UTF-8 byte."""
    # >>> exercise day51.pick: argmax of ll, or of ll / len(choice.encode()) when normalise
    scores = [ll / max(1, len(c.encode())) if normalise else ll for ll, c in zip(loglikelihoods, choices)]
    return max(range(len(scores)), key=scores.__getitem__)
    # <<< exercise day51.pick


def bits_per_byte(total_loglik: float, n_bytes: int) -> float:
    """Bits per byte of a text from its total log-likelihood in nats."""
    # >>> exercise day51.bits_per_byte: minus the nats, converted to bits, per byte
    return -total_loglik / math.log(2) / n_bytes
    # <<< exercise day51.bits_per_byte


def hf_parity(n_docs: int, seed: int) -> dict:
    """A random GPT-2-style GPT and the same weights in transformers' GPT2LMHeadModel, scored by GPTLM and HFLM on
    the same multiple-choice pairs: the largest log-likelihood difference and whether every choice agrees."""
    from common.eval import datasets
    from common.nn import hf
    from common.nn.model import GPT, GPTConfig

    torch.manual_seed(seed)
    tok = ChatTokenizer()
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=64, pos="learned",
                          norm="layer", mlp="gelu_tanh", bias=True)).eval()
    ours, theirs = GPTLM(model, "gpt2-ours", chat=True), HFLM(hf.gpt_to_hf(model), tok, "gpt2-hf", chat=True)
    task = harness.load_task("instruct_mc")
    docs = datasets.build(task.dataset)[:n_docs]
    a, b = harness.evaluate(task, ours, docs), harness.evaluate(task, theirs, docs)
    diffs = [abs(x - y) for sa, sb in zip(a["samples"], b["samples"])
             for x, y in zip(sa["loglikelihoods"], sb["loglikelihoods"])]
    same = all(sa["pred"] == sb["pred"] for sa, sb in zip(a["samples"], b["samples"]))
    return {"pairs": len(diffs), "max_abs_diff": max(diffs), "same_choices": same, "acc_ours": a["metrics"]["acc"],
            "acc_hf": b["metrics"]["acc"]}


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    names = harness.resolve(cfg.tasks)
    results, _ = suite.sprint_results(ctx, names, cfg.limit or None)
    out = {}
    for m in MODELS:
        for t, res in results[m].items():
            harness.save_samples(res, ctx.run_dir / "samples" / m / f"{t}.jsonl")

    d.section("The harness")
    d.text(f"{len(names)} tasks, {len(MODELS)} models. Each task is a YAML file in `common/eval/tasks/` "
           "(`python -m common.eval.harness --list`); each model is wrapped in `GPTLM` (our checkpoints) and answers "
           "log-likelihood, rolling log-likelihood and generation requests. Per-document records of this run are in "
           "`logs/day51/<run>/samples/<model>/<task>.jsonl`.")
    d.table([{"task": t, "version": harness.load_task(t).version, "type": harness.load_task(t).output_type,
              "data": harness.load_task(t).dataset, "documents": results["base"][t]["n"]} for t in names])

    inst = [t for t in names if harness.load_task(t).group == "instruct"]
    rows = []
    for m in MODELS:
        r = results[m]
        row = {"model": m}
        if inst:
            n = sum(r[t]["n"] for t in inst)
            row["instruct EM (micro)"] = sum(r[t]["metrics"]["exact_match"] * r[t]["n"] for t in inst) / n
            out[f"instruct_em_{m}"] = round(row["instruct EM (micro)"], 4)
        for t in names:
            if t in inst:
                continue
            for k, v in r[t]["metrics"].items():
                if k in ("byte_perplexity", "word_perplexity"):
                    continue
                short = {"tinystories_ppl": "tinystories", "bits_per_byte": "bpb"}
                key = f"{short.get(t, t)}_{short.get(k, k)}_{m}"
                row[f"{t} {k}"] = v
                out[key] = round(v, 4)
        rows.append(row)
    d.section("Baseline scores")
    d.text("Greedy exact match on the held-out phrasings (micro average over the six families); multiple choice "
           "among four answers (chance 0.25) by total log-likelihood (`acc`) and per byte (`acc_norm`); bits per "
           "byte on the held-out stories (lower is better).")
    d.table(rows)
    if inst:
        d.section("Exact match per instruction family")
        d.table([{"model": m, **{t.removeprefix("instruct_"): results[m][t]["metrics"]["exact_match"] for t in inst}}
                 for m in MODELS])
        p = plotting.lines(ctx.plot_path("baselines"),
                           {m: (list(range(len(inst))), [results[m][t]["metrics"]["exact_match"] for t in inst])
                            for m in MODELS},
                           "family: " + ", ".join(f"{i} {t.removeprefix('instruct_')}" for i, t in enumerate(inst)),
                           "exact match (test)", "Baseline exact match per family and model", markers=True)
        d.image(p, "Greedy exact match per family: the harness's instruct group")

    # the metric definitions, recomputed from the samples with this day's own functions
    checks = []
    for m in MODELS:
        for t in names:
            res, task = results[m][t], harness.load_task(t)
            if task.output_type == "multiple_choice":
                mine = sum(pick(s["loglikelihoods"], s["choices"], True) == s["gold"] for s in res["samples"])
                checks.append(abs(mine / res["n"] - res["metrics"]["acc_norm"]) < 1e-9)
            if task.output_type == "loglikelihood_rolling":
                total = sum(s["loglikelihood"] for s in res["samples"])
                mine = bits_per_byte(total, sum(s["bytes"] for s in res["samples"]))
                checks.append(abs(mine - res["metrics"]["bits_per_byte"]) < 1e-9)
    d.section("Metric definitions, checked")
    d.text(f"`pick` and `bits_per_byte` (this day's exercises) recompute acc_norm and bits per byte from the "
           f"per-document samples: {sum(checks)} of {len(checks)} (model, task) scores agree with the harness.")
    out["definitions_agree"] = float(all(checks))

    par = hf_parity(cfg.hf_docs, ctx.seed)
    d.section("A transformers model behind the same interface")
    d.text(f"A random GPT-2-style GPT (learned positions, LayerNorm, tanh GELU, biases) was copied into "
           f"`transformers.GPT2LMHeadModel` (`common/nn/hf.py`) and scored through `HFLM` on {par['pairs']:,} "
           f"multiple-choice pairs: largest log-likelihood difference {par['max_abs_diff']:.2e} nats, same choice on "
           f"every document: {par['same_choices']}, acc {par['acc_ours']:.3f} (ours) vs {par['acc_hf']:.3f} (HF). "
           "Any causal LM saved with `save_pretrained` runs the same way: `make eval MODEL=hf:<folder>`.")
    out["hf_max_abs_diff"] = float(f"{par['max_abs_diff']:.3g}")
    out["hf_same_choices"] = float(par["same_choices"])
    for m in MODELS:
        out[f"seconds_{m}"] = round(sum(results[m][t]["seconds"] for t in names), 1)

    b, s = rows[0], {r["model"]: r for r in rows}
    text = "What to look at: the base model has never seen the chat template and scores 0 on the written answers"
    if "instruct_mc acc_norm" in b:
        mc = b["instruct_mc acc_norm"]
        n_mc = results["base"]["instruct_mc"]["n"]
        se = math.sqrt(0.25 * 0.75 / n_mc)                      # the standard error of a guesser's score
        where, why = (("within two standard errors of chance", "it cannot tell the answer from the near misses")
                      if abs(mc - 0.25) <= 2 * se else
                      ("above chance by more than two standard errors", "it already leans towards right answers")
                      if mc > 0.25 else
                      ("below chance by more than two standard errors", "the near misses attract it more than the "
                       "answer does"))
        text += (f"; on the same prompts as multiple choice it picks the right answer {mc:.1%} of the time, "
                 f"{where} (25%, SE {se:.1%} over {n_mc:,} prompts): {why}. SFT picks "
                 f"{s['sft']['instruct_mc acc_norm']:.1%} of them while writing "
                 f"{s['sft'].get('instruct EM (micro)', float('nan')):.1%} correctly: ranking four "
                 "given answers asks less of a model than producing one")
    if "tinystories_ppl bits_per_byte" in b:
        text += (f". On stories the order flips: the base model needs {b['tinystories_ppl bits_per_byte']:.2f} bits "
                 f"per byte, SFT {s['sft']['tinystories_ppl bits_per_byte']:.2f} (day 49's catastrophic forgetting, "
                 "now in the harness's units)")
    d.text(text + ".")
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
