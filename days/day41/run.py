"""Day 41: an instruction dataset we own — generated, deduplicated, split without leaks, with a data card.

Every example comes from `common/data/instruct.py`: six task families whose answers a program can
check (arithmetic, reversal, copy, table lookup, unit conversion, word problems), a few phrasings each.
The run builds the dataset sprint 5 fine-tunes on (the size of `posttrain.SFTRecipe`), proves the splits
do not leak (no prompt in two splits, even up to case and spacing; no test phrasing in training), measures
it in the tokens the models will read (`common/data/chat.py`), writes it as JSON Lines with a data card,
and reports the shortcuts a model could take (the best constant answer per family).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from common.data import instruct
from common.data.chat import ChatTokenizer
from common.eval import tool_use
from common.run import atomic, plotting, runner
from common.train import posttrain

DAY = 41
KEY_METRICS = ["n_train", "n_val", "n_test", "leaked_prompts", "leaked_phrasings", "loss_token_share"]
METRIC_KINDS = {}


@dataclass
class Config:
    n_per_family: int = posttrain.SFTRecipe.n_per_family  # the dataset day 42 trains on
    seed: int = posttrain.SFTRecipe.data_seed
    val_frac: float = 0.1
    show: int = 2            # examples shown per family in the deliverable


PRESETS = {"nano": dict(n_per_family=60), "cpu": {}, "gpu": {}}


def split_leaks(splits: dict) -> dict:
    """What two splits share: {"prompts": normalised prompts found in more than one split,
    "phrasings": (family, template) pairs of the test split that also occur in train or val}."""
    # >>> exercise day41.split_leaks: normalise every prompt (instruct.normalise), then intersect across splits
    seen: dict = {}
    for name, examples in splits.items():
        for ex in examples:
            seen.setdefault(instruct.normalise(ex.prompt), set()).add(name)
    prompts = sorted(p for p, where in seen.items() if len(where) > 1)
    trained = {(ex.family, ex.template) for s in ("train", "val") for ex in splits[s]}
    phrasings = sorted({(ex.family, ex.template) for ex in splits["test"]} & trained)
    return {"prompts": prompts, "phrasings": phrasings}
    # <<< exercise day41.split_leaks


def loss_token_share(seqs) -> float:
    """Share of the predicted tokens that carry SFT's loss: masked targets over all targets, where the
    targets of a sequence of n tokens are its tokens 1..n-1 (the first token is never predicted)."""
    # >>> exercise day41.loss_token_share: count mask[1:] over len(ids) - 1, summed over all sequences
    masked = sum(sum(mask[1:]) for _, mask in seqs)
    predicted = sum(len(ids) - 1 for ids, _ in seqs)
    return masked / predicted
    # <<< exercise day41.loss_token_share


def skeleton(prompt: str) -> str:
    """The prompt with every number and quoted or table word replaced by a slot: its phrasing."""
    s = re.sub(r"'[^']*'", "'_'", prompt)
    s = re.sub(r"\d+", "#", s)
    return s


def constant_baseline(splits: dict) -> dict:
    """Per family: the most common train answer and how often it is right on test (a model that ignores
    the prompt and always says it)."""
    out = {}
    for fam in sorted({e.family for e in splits["train"]}):
        top, _ = Counter(e.answer for e in splits["train"] if e.family == fam).most_common(1)[0]
        test = [e for e in splits["test"] if e.family == fam]
        out[fam] = {"answer": top, "test_accuracy": sum(e.answer == top for e in test) / max(1, len(test))}
    return out


def write_dataset(folder, splits: dict, card: dict) -> dict:
    """JSON Lines per split plus card.json under `folder`, written atomically; returns {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, examples in splits.items():
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in instruct.as_records(examples))
        paths[name] = folder / f"{name}.jsonl"
        atomic.write_text(paths[name], lines)
    paths["card"] = folder / "card.json"
    atomic.write_text(paths["card"], json.dumps(card, indent=2, sort_keys=True) + "\n")
    return paths


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    report: dict = {}
    splits = instruct.generate(cfg.n_per_family, cfg.seed, val_frac=cfg.val_frac, report=report)
    card = instruct.data_card(splits, cfg.seed)
    families = list(instruct.FAMILIES)

    d.section("The data card")
    d.text(f"Source: {card['source']}. Licence: {card['licence']}. Seed {cfg.seed}, {cfg.n_per_family:,} distinct "
           f"prompts per family drawn, so {sum(card['total'].values()):,} examples in all.")
    d.table([{"family": f, **{s: card["sizes"][s].get(f, 0) for s in instruct.SPLITS},
              "phrasings": len(instruct.TEMPLATES[f]), "draws": report[f]["draws"],
              "duplicates dropped": report[f]["duplicates"]} for f in families]
            + [{"family": "all", **card["total"], "phrasings": sum(len(t) for t in instruct.TEMPLATES.values()),
                "draws": sum(r["draws"] for r in report.values()),
                "duplicates dropped": sum(r["duplicates"] for r in report.values())}])
    d.text("Known biases: " + "; ".join(card["known_biases"]) + ".")
    shown = []
    for f in families:
        for ex in [e for e in splits["train"] if e.family == f][:cfg.show]:
            shown.append({"family": f, "split": "train", "prompt": ex.prompt, "answer": ex.answer,
                          "calculator call": ex.expression or "-"})
        ex = next(e for e in splits["test"] if e.family == f)
        shown.append({"family": f, "split": "test (held-out phrasing)", "prompt": ex.prompt, "answer": ex.answer,
                      "calculator call": ex.expression or "-"})
    d.table(shown)

    # --- leaks -------------------------------------------------------------------------------------------
    leaks = split_leaks(splits)
    skel = {s: {skeleton(e.prompt) for e in splits[s]} for s in instruct.SPLITS}
    skel_shared = len(skel["test"] & (skel["train"] | skel["val"]))
    d.section("Leak checks")
    d.table([{"check": "prompts (normalised case and spacing) in more than one split",
              "found": len(leaks["prompts"])},
             {"check": "test phrasings (family, template) also in train or val", "found": len(leaks["phrasings"])},
             {"check": "test skeletons (numbers and quoted words blanked) also in train or val",
              "found": skel_shared},
             {"check": "distinct skeletons: train / val / test",
              "found": f"{len(skel['train'])} / {len(skel['val'])} / {len(skel['test'])}"}])
    d.text("What to look at: all three counts should be 0. Deduplication runs on the normalised prompt before "
           "splitting, so a prompt cannot reach two splits; the test split holds each family's last phrasing "
           "and nothing else, so a test score measures whether a model understood the task, not whether it "
           "remembers the sentence. Val shares phrasings with train (it measures fitting, day 42), test does not. "
           "The skeletons are the phrasings with their slots blanked; table and word-problem slots are not "
           "quoted, so a skeleton is finer than a phrasing and there are more of them than templates.")

    # --- tokens -----------------------------------------------------------------------------------------
    tok = ChatTokenizer()
    direct = posttrain.sft_sequences(splits["train"], tools=False, tok=tok)
    traces = [tok.encode_spans(*tool_use.render_tool_trace(e)) for e in splits["train"] if e.expression]
    both = direct + traces  # what posttrain.sft_sequences(..., tools=True) trains on, in another order
    share_direct, share_both = loss_token_share(direct), loss_token_share(both)
    rows = []
    for f in families:
        ex = [e for e in splits["train"] if e.family == f]
        seqs = posttrain.sft_sequences(ex, tools=False, tok=tok)
        n_ans = [sum(m) for _, m in seqs]
        rows.append({"family": f, "train examples": len(ex), "mean tokens": np.mean([len(i) for i, _ in seqs]),
                     "max tokens": max(len(i) for i, _ in seqs), "mean answer tokens (incl. END)": np.mean(n_ans),
                     "loss share": loss_token_share(seqs)})
    d.section("In tokens: what SFT will read and what it will be graded on")
    d.text(f"The chat tokenizer has {tok.vocab_size} ids: {len(tok.vocab) - 96} markers (`<|user|>`, "
           "`<|assistant|>`, `<|end|>`, the calculator's four, `<|tools|>`, padding) and 96 characters (printable "
           "ASCII and the newline). A conversation is one marker per turn boundary and one token per character.")
    d.table(rows)
    lengths = {"answered directly": [len(i) for i, _ in direct], "with a calculator call": [len(i) for i, _ in traces]}
    p = plotting.histogram(ctx.plot_path("lengths"), lengths, "tokens per training sequence",
                           title="Training sequences in chat tokens", bins=40)
    d.image(p, "Lengths of the SFT training sequences, with and without a calculator call")
    d.text(f"What to look at: the loss covers {share_direct:.1%} of the predicted tokens when every example is "
           f"answered directly, and {share_both:.1%} once the {len(traces):,} calculator traces are added (the "
           "call and the final answer are the model's; the result in between is the tool's and carries no loss). "
           "The rest is prompt: SFT spends most of each forward pass reading, and its loss per token "
           "is averaged over a few answer tokens per example, so a batch's loss is noisier than pretraining's "
           "at the same size. The longest sequence sets the block size the base model must have.")

    # --- shortcuts ----------------------------------------------------------------------------------------
    base = constant_baseline(splits)
    d.section("Shortcuts a model could take")
    d.table([{"family": f, "most common train answer": v["answer"], "test accuracy of always saying it":
              v["test_accuracy"]} for f, v in base.items()])
    best = max(base.items(), key=lambda kv: kv[1]["test_accuracy"])
    d.text(f"What to look at: the best constant answer scores {best[1]['test_accuracy']:.1%} on {best[0]} test "
           "prompts. Any accuracy day 42 reports has to be read against these floors; lookup's floor is "
           "higher than arithmetic's because its answers are short numbers 1-99 drawn without regard to the "
           "question.")

    folder = ctx.base / "data" / "instruct"
    paths = write_dataset(folder, splits, card)
    d.section("Files")
    d.text("The dataset is written as JSON Lines, one example per line with its family, phrasing index, prompt, "
           f"answer and calculator expression: {', '.join(f'`{p.relative_to(ctx.base)}`' for p in paths.values())}. "
           "`data/` is not tracked: the generator and its seed are the dataset, and this run rebuilds it byte for "
           "byte.")
    n = card["total"]
    return {"n_train": n["train"], "n_val": n["val"], "n_test": n["test"],
            "duplicates_dropped": sum(r["duplicates"] for r in report.values()),
            "leaked_prompts": len(leaks["prompts"]), "leaked_phrasings": len(leaks["phrasings"]),
            "leaked_skeletons": skel_shared, "vocab_size": tok.vocab_size,
            "n_tool_traces": len(traces), "loss_token_share": round(share_direct, 4),
            "loss_token_share_with_tools": round(share_both, 4),
            "max_tokens": max(len(i) for i, _ in both),
            "best_constant_accuracy": round(best[1]["test_accuracy"], 4)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
