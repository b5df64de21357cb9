"""Day 27: vocabulary ablation — 4k to 32k BPE vocabularies compared in bits per byte, at fixed steps and fixed FLOPs.

One transformer body (layers, width, context of `block_size` tokens, batch) is trained on the same corpus cut by
SentencePiece BPE tokenizers of different sizes; only the tied embedding / output matrix changes. Per-token loss and
perplexity are not comparable across tokenizers (a bigger vocabulary packs more text into each token), so every
model is scored on the very same validation text, picked by line, in bits per byte. Two budgets: the same number
of optimizer steps for every vocabulary, and the same training FLOPs (the LM head grows with the vocabulary, so a
bigger vocabulary gets fewer steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from common import data
from common.data import corpus
from common.nn.model import GPT, count_params_formula, flops_per_token, gpt_config_for
from common.run import plotting, runner
from common.train import full_split_loss, train_config_for

DAY = 27
# the metrics the README and sprint summaries show
KEY_METRICS = ["best_vocab_steps", "best_vocab_compute", "bpb_steps_16k", "bpb_steps_32k", "bpb_compute_32k"]


@dataclass
class Config:
    vocabs: str = "4000,8000,16000,32000"  # BPE vocabulary sizes; 16k vs 32k is the question, 4k/8k show the trend
    compute_anchor: int = 16000   # fixed-compute budget = this vocabulary's training FLOPs at max_iters steps
    corpus_bytes: int = 0         # leading bytes per source for the tokenizers and shards (0 = all, ~14 MB)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64              # narrow: at 32k the head (V x C) is already 2/3 of the FLOPs per token
    block_size: int = 64          # context in tokens, the same for every vocabulary (so not the same in bytes)
    batch_size: int = 16
    max_iters: int = 100          # steps of the fixed-step comparison (CPU: early training, ~100k tokens)
    lr: float = 5e-3              # peak; cosine to lr/10 after a warm-up of 10% of each run's steps
    n_evals: int = 6              # validation points along each run (for the curves)
    eval_iters: int = 3           # fixed validation batches per point
    eval_bytes: int = 100_000     # bytes of validation text (every k-th line) for the final scores; 0 = all


PRESETS = {"nano": dict(vocabs="300,600", compute_anchor=600, corpus_bytes=100_000, n_layer=2, n_head=2, n_embd=32,
                        block_size=32, batch_size=8, max_iters=30, lr=1e-2, n_evals=3, eval_iters=2, eval_bytes=8_000),
           "cpu": {}, "gpu": dict(vocabs="8000,16000,32000", n_layer=6, n_head=6, n_embd=384, block_size=256,
                                  batch_size=64, max_iters=3000, lr=1e-3, eval_iters=20, eval_bytes=0)}


def sizes(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def label(v: int) -> str:
    return f"{v // 1000}k" if v % 1000 == 0 else str(v)


def bits_per_byte(nats_per_token: float, n_tokens: int, n_bytes: int) -> float:
    """Total bits of the text (nats/token x tokens / ln 2) over its bytes: the same text scores the same unit."""
    # >>> exercise day27.bits_per_byte: the text's total bits (nats/token x tokens / ln 2) over its bytes
    return corpus.bits_per_byte(nats_per_token, n_bytes / n_tokens)
    # <<< exercise day27.bits_per_byte


def compute_steps(vocabs, anchor: int, steps: int, cfg: Config) -> dict[int, int]:
    """Steps per vocabulary so that steps x tokens/step x FLOPs/token matches `anchor` at `steps` (to half a step)."""
    # >>> exercise day27.compute_steps: steps per vocabulary that spend the anchor's training FLOPs
    budget = steps * flops_per_token(gpt_config_for(cfg, vocab_size=anchor))
    return {v: max(1, round(budget / flops_per_token(gpt_config_for(cfg, vocab_size=v)))) for v in vocabs}
    # <<< exercise day27.compute_steps


def pick_lines(line_bytes: list[int], eval_bytes: int) -> list[int]:
    """Every k-th validation line, k chosen so the picked lines hold about `eval_bytes` (all sources mixed)."""
    k = max(1, round(sum(line_bytes) / eval_bytes)) if eval_bytes else 1
    return list(range(0, len(line_bytes), k))


def eval_tokens(td: corpus.TokenData, picked: list[int], n_lines: int) -> torch.Tensor:
    """The picked lines of the val split in this tokenizer: the shard is cut back into lines at the end-of-line ids."""
    eol = corpus.eol_id(td.sp)
    ids = td.val_tensor().numpy()
    pieces = np.split(ids, np.flatnonzero(ids == eol) + 1)[:-1]  # each piece is one line and its eol token
    if eol == td.sp.unk_id() or len(pieces) != n_lines:
        raise RuntimeError(f"val split of {td.root.name} does not cut into its {n_lines} lines")
    return torch.from_numpy(np.concatenate([pieces[i] for i in picked]))


def train_one(mcfg, td: corpus.TokenData, ev: torch.Tensor, steps: int, cfg: Config, ctx: runner.Context):
    """One cosine run of `steps` steps from the seed; returns (TrainResult, loss on all of `ev` in nats/token)."""
    dev = ctx.device
    torch.manual_seed(ctx.seed)
    model = GPT(mcfg).to(dev)
    tc = train_config_for(cfg, max_iters=steps, warmup_iters=max(1, steps // 10),
                          eval_interval=max(1, steps // cfg.n_evals))
    res = ctx.train(model, data.StreamingLoader(td.train, cfg.block_size, cfg.batch_size, ctx.seed, dev),
                    data.Batches(ev, cfg.block_size, cfg.batch_size, dev, seed=2), tc,
                    run=f"vocab{mcfg.vocab_size}_{steps}steps")
    return res, full_split_loss(model, ev, cfg.block_size, cfg.batch_size, dev)


def curve_text(curves: dict, why: str, eval_iters: int) -> str:
    """'What to look at' for a bits/byte curve plot: who leads at the first evaluation and at the end."""
    first = min(curves, key=lambda k: curves[k][1][0])
    last = min(curves, key=lambda k: curves[k][1][-1])
    return (f"What to look at: {why}. At the first evaluation {first} is lowest"
            + (" and it stays lowest to the end" if first == last else f"; at the end {last} is")
            + f" ({curves[last][1][-1]:.3f} bits/byte). The points are estimates on {eval_iters} fixed validation "
            "batches, so the last one differs slightly from the table's score on the whole scored text.")


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, vocabs = ctx.deliverable, sizes(cfg.vocabs)
    _, val_lines = corpus.split_lines(cfg.corpus_bytes)  # the split token_data uses, so line i is line i
    line_bytes = [len(ln.encode()) + 1 for ln in val_lines]
    picked = pick_lines(line_bytes, cfg.eval_bytes)
    n_bytes = sum(line_bytes[i] for i in picked)
    tok_step = cfg.batch_size * cfg.block_size
    budgets = {"steps": {v: cfg.max_iters for v in vocabs},
               "compute": compute_steps(vocabs, cfg.compute_anchor, cfg.max_iters, cfg)}
    eff, rows, curves, metrics = [], {b: [] for b in budgets}, {b: {} for b in budgets}, {}
    for v in vocabs:
        td = corpus.token_data(v, cache=ctx.cache_dir("tokens"), corpus_bytes=cfg.corpus_bytes)
        ev = eval_tokens(td, picked, len(val_lines))
        bpt, tbt = n_bytes / ev.numel(), td.train_bytes / td.train_tokens  # bytes per token: scored val, train
        eff.append({"vocab": label(v), "train tokens": td.train_tokens, "train bytes/token": tbt,
                    "scored val tokens": ev.numel(), "val bytes/token": bpt, "bytes per context": cfg.block_size * bpt})
        mcfg = gpt_config_for(cfg, vocab_size=v)
        fpt, done = flops_per_token(mcfg), {}
        for b, steps in budgets.items():
            if steps[v] not in done:  # the anchor's fixed-compute run is its fixed-step run
                done[steps[v]] = train_one(mcfg, td, ev, steps[v], cfg, ctx)
            res, loss = done[steps[v]]
            bpb = bits_per_byte(loss, ev.numel(), n_bytes)
            tokens = steps[v] * tok_step
            rows[b].append({"vocab": label(v), "params": count_params_formula(mcfg), "MFLOP/token": fpt / 1e6,
                            "steps": steps[v], "tokens": tokens, "MB text seen": tokens * tbt / 1e6,
                            "train TFLOP": tokens * fpt / 1e12, "val nats/token": loss, "ppl/token": math.exp(loss),
                            "bits/byte": bpb, "wall s": res.wall_s})
            x = [(s + 1) * tok_step for s in res.history["step"]]
            curves[b][label(v)] = ([t * tbt / 1e6 for t in x] if b == "steps" else
                                   [t * fpt / 1e12 for t in x], [val / math.log(2) / bpt for val in res.history["val"]])
            metrics.update({f"bpb_{b}_{label(v)}": round(bpb, 4), f"ppl_{b}_{label(v)}": round(math.exp(loss), 2)})
    d.section("Token efficiency")
    d.text(f"Each tokenizer is trained on the same train lines. The scored validation text is one line in every "
           f"{picked[1] - picked[0] if len(picked) > 1 else 1} of the {len(val_lines):,} validation lines "
           f"({len(picked):,} lines, {n_bytes:,} bytes), identical for every vocabulary. The context is "
           f"{cfg.block_size} tokens for all, so a bigger vocabulary also sees more bytes per window.")
    d.table(eff)
    e0, e1 = eff[0], eff[-1]
    d.text(f"What to look at: from {e0['vocab']} to {e1['vocab']} each validation token carries "
           f"{e0['val bytes/token']:.2f} → {e1['val bytes/token']:.2f} bytes, so the same {n_bytes:,} bytes take "
           f"{e0['scored val tokens']:,} → {e1['scored val tokens']:,} tokens "
           f"({1 - e1['scored val tokens'] / e0['scored val tokens']:.0%} fewer) and one {cfg.block_size}-token "
           f"context covers {e0['bytes per context']:.0f} → {e1['bytes per context']:.0f} bytes. Train bytes/token "
           + ("is a little higher than val for every vocabulary: the merges were learned on the train lines."
              if all(r["train bytes/token"] > r["val bytes/token"] for r in eff) else
              "and val bytes/token differ because the merges were learned on the train lines only."))
    ranks = {}
    for b, title in (("steps", f"Fixed steps: {cfg.max_iters} steps of {tok_step:,} tokens"),
                     ("compute", f"Fixed compute: the FLOPs of {label(cfg.compute_anchor)} at {cfg.max_iters} steps")):
        d.section(title)
        d.table(rows[b])
        r0, r1 = rows[b][0], rows[b][-1]
        same = (f"every run takes the same {r0['steps']} steps on {r0['tokens']:,} tokens, but the bigger vocabulary "
                f"reads more text ({r0['MB text seen']:.3g} → {r1['MB text seen']:.3g} MB) and spends more FLOPs "
                f"({r0['train TFLOP']:.3g} → {r1['train TFLOP']:.3g} TFLOP)" if b == "steps" else
                f"every run spends the same training TFLOP (to half a step), so the bigger vocabulary, dearer per "
                f"token, gets fewer steps ({r0['steps']} → {r1['steps']})")
        wall, flop = r1["wall s"] / r0["wall s"], r1["train TFLOP"] / r0["train TFLOP"]
        up_nats, down_bpb = r1["val nats/token"] > r0["val nats/token"], r1["bits/byte"] < r0["bits/byte"]
        d.text(f"What to look at: {same}. Nats/token {'rises' if up_nats else 'falls'} from {r0['vocab']} to "
               f"{r1['vocab']} ({r0['val nats/token']:.3f} → {r1['val nats/token']:.3f}) "
               f"{'while' if up_nats == down_bpb else 'and'} bits/byte {'falls' if down_bpb else 'rises'} "
               f"({r0['bits/byte']:.3f} → {r1['bits/byte']:.3f}): only bits/byte scores the same text. Wall time "
               f"{'grows' if wall > 1 else 'shrinks'} {wall:.2f}× against {flop:.2f}× the FLOPs"
               + (": the softmax over more logits costs time the matmul count leaves out." if wall > 1.1 * flop
                  else ": at this size fixed costs (the first run's warm-up, evaluations) swamp the FLOPs."
                  if wall < 0.9 * flop else "."))
        by_bpb = [r["vocab"] for r in sorted(rows[b], key=lambda r: r["bits/byte"])]
        by_ppl = [r["vocab"] for r in sorted(rows[b], key=lambda r: r["ppl/token"])]
        ranks[b] = by_bpb
        metrics.update({f"best_vocab_{b}": by_bpb[0], f"ppl_agrees_{b}": by_bpb == by_ppl})
        d.text(f"Best in bits per byte: **{by_bpb[0]}** (ranking {' < '.join(by_bpb)}). Per-token perplexity ranks "
               f"them {' < '.join(by_ppl)}: {'the same order' if by_bpb == by_ppl else 'a different order'}.")
    p1 = plotting.lines(ctx.plot_path("bpb_vs_bytes"), curves["steps"], "MB of training text seen",
                        "val bits/byte", "Fixed steps: validation bits per byte", markers=True)
    d.image(p1, "Fixed steps, plotted against the text each model has read (fixed val windows, mean bytes/token)")
    d.text(curve_text(curves["steps"], "for the same number of steps a bigger vocabulary reaches further right: each "
                      "token carries more bytes of text", cfg.eval_iters))
    p2 = plotting.lines(ctx.plot_path("bpb_vs_flops"), curves["compute"], "training TFLOP (matmuls)",
                        "val bits/byte", "Fixed compute: validation bits per byte", markers=True)
    d.image(p2, "Fixed compute: every curve ends at the same training FLOPs")
    d.text(curve_text(curves["compute"], "every curve ends at the same training FLOPs, however many steps that "
                      "took", cfg.eval_iters))
    p3 = plotting.lines(ctx.plot_path("final_bpb"), {f"fixed {b}": (vocabs, [r["bits/byte"] for r in rows[b]])
                                                      for b in budgets}, "vocabulary size (tokens, log2 axis)",
                        "val bits/byte",
                        "Final bits per byte on the same validation text", logx=True, markers=True,
                        xticks=(vocabs, [label(v) for v in vocabs]))
    d.image(p3, "Final scores against vocabulary size (a bar chart from zero would hide differences of 0.1 bit)")
    moved = [f"{r['vocab']} gets {r['steps']} steps instead of {q['steps']} and scores "
             f"{abs(r['bits/byte'] - q['bits/byte']):.4f} bits/byte "
             f"{'better' if r['bits/byte'] < q['bits/byte'] else 'worse'}"
             for r, q in zip(rows["compute"], rows["steps"]) if r["steps"] != q["steps"]]
    d.text("What to look at: "
           + (f"the two lines meet at {label(cfg.compute_anchor)}, whose fixed-compute run is its fixed-step run. "
              if cfg.compute_anchor in vocabs else "")
           + "The vertical gap is what the budget changes: at fixed compute "
           + ("; ".join(moved) or "no vocabulary changes its step count")
           + f". The lowest point of each line is its best vocabulary: {ranks['steps'][0]} at fixed steps, "
           f"{ranks['compute'][0]} at fixed compute.")
    d.section("Conclusion")
    out = []
    for b, what in (("steps", "fixed steps"), ("compute", "fixed compute")):
        by = {r["vocab"]: r["bits/byte"] for r in rows[b]}
        line = f"At {what} the best vocabulary is **{ranks[b][0]}**"
        if "16k" in by and "32k" in by:
            line += (f"; 32k vs 16k: {by['32k']:.4f} vs {by['16k']:.4f} bits/byte "
                     f"({'32k' if by['32k'] < by['16k'] else '16k'} better by {abs(by['32k'] - by['16k']):.4f})")
        out.append(line + ".")
    d.text(" ".join(out) + " Per-token perplexity " + ("agrees with bits per byte in both comparisons."
           if metrics["ppl_agrees_steps"] and metrics["ppl_agrees_compute"] else
           "would have ranked them differently in at least one comparison: a smaller vocabulary has shorter, easier "
           "tokens, so its per-token loss looks better than the bits it spends on the text."))
    return metrics


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
