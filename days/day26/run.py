"""Day 26: validation — a val loop with early stopping, the best checkpoint kept, and perplexity.

A model trained on a deliberately small slice of Tiny Shakespeare over-fits: its training loss keeps
falling while the validation loss turns up. The `gpu` preset trains the seed's ~50M-parameter model
on TinyStories instead (SentencePiece BPE, `dataset=tinystories`) and reports `val_ppl`, the
perplexity the seed's target is about. Evaluating every few steps, the loop keeps the best
checkpoint and stops after `patience` evaluations without improvement. Losses are reported three
ways: cross-entropy in nats per token, perplexity exp(CE), and bits per byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common import data
from common.data import corpus
from common.nn.model import GPT, gpt_config_for
from common.run import plotting, runner
from common.run.errors import UserError
from common.train import best_path, full_split_loss, load_checkpoint, train, train_config_for

DAY = 26


@dataclass
class Config:
    dataset: str = "tinyshakespeare"  # characters of Tiny Shakespeare | tinystories: SentencePiece BPE tokens
    vocab_size: int = 8000        # tinystories only: the BPE vocabulary trained on its train lines
    train_chars: int = 60_000     # a small slice, so that the model over-fits within the budget (0 = all)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 32
    max_iters: int = 3000
    lr: float = 3e-3
    eval_interval: int = 50
    eval_iters: int = 10
    patience: int = 4


PRESETS = {"nano": dict(train_chars=3_000, n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=300,
                        eval_interval=10, eval_iters=2, patience=2, lr=1e-2),
           "cpu": {},
           # the seed's target: ~50M parameters (8 x 640, 8k vocabulary: 44M) on TinyStories, val perplexity <= 30
           "gpu": dict(dataset="tinystories", train_chars=0, n_layer=8, n_head=10, n_embd=640, block_size=256,
                       batch_size=64, max_iters=5000, lr=6e-4, eval_interval=100, eval_iters=20)}


def load(cfg: Config, ctx: runner.Context):
    """(train ids, val ids, vocab size, bytes per token, what a token is) for the configured dataset."""
    if cfg.dataset == "tinyshakespeare":
        tok, tr, va = data.char_corpus()
        text_bytes = len(data.load_text("tinyshakespeare").encode("utf-8"))
        return tr, va, tok.vocab_size, text_bytes / (tr.numel() + va.numel()), "character"
    if cfg.dataset == "tinystories":
        td = corpus.token_data(cfg.vocab_size, cache=ctx.cache_dir("tokens"), sources="tinystories")
        return td.train_tensor(), td.val_tensor(), td.vocab_size, td.val_bytes_per_token, "BPE token"
    raise UserError(f"Unknown dataset {cfg.dataset!r}; use tinyshakespeare or tinystories.")


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, dev = ctx.deliverable, ctx.device
    tr, va, vocab, bytes_per_token, unit = load(cfg, ctx)
    tr = tr[: cfg.train_chars] if cfg.train_chars else tr
    mcfg = gpt_config_for(cfg, vocab_size=vocab)
    torch.manual_seed(ctx.seed)
    model = GPT(mcfg).to(dev)
    tc = train_config_for(cfg, warmup_iters=50, weight_decay=0.0)
    ckpt = ctx.out / "checkpoints" / "day26_ckpt.pt"
    res = train(model, *data.split_batches(tr, va, cfg.block_size, cfg.batch_size, dev), tc, dev, ctx.tracker,
                ckpt_path=ckpt, show_progress=not ctx.quick)
    ctx.record_throughput("train", res, model, cfg.block_size)
    h = res.history
    bpb = [v / math.log(2) / bytes_per_token for v in h["val"]]
    d.section("Training with early stopping")
    d.text(f"{model.num_params():,} parameters trained on {cfg.dataset}: "
           + (f"the first {cfg.train_chars:,} {unit}s only" if cfg.train_chars else f"all {tr.numel():,} {unit}s")
           + f" (val split: {va.numel():,} {unit}s); evaluation every {cfg.eval_interval} steps on "
           f"{cfg.eval_iters} fixed batches, patience {cfg.patience}.")
    d.table([{"step": s, "train CE (nats)": t, "val CE (nats)": v, "val perplexity": math.exp(v), "val bits/byte": b,
              "best": "★" if s == res.best_step else ""}
             for s, t, v, b in zip(h["step"], h["train"], h["val"], bpb)])
    i_best = h["step"].index(res.best_step) if res.best_step in h["step"] else min(range(len(h["val"])),
                                                                                    key=h["val"].__getitem__)
    rises = h["val"][-1] > h["val"][i_best]
    gap0, gap1 = h["val"][0] - h["train"][0], h["val"][-1] - h["train"][-1]
    d.text(f"What to look at: train CE {'falls' if h['train'][-1] < h['train'][0] else 'moves'} from "
           f"{h['train'][0]:.3f} to {h['train'][-1]:.3f} nats, while val CE bottoms out at {h['val'][i_best]:.3f} "
           f"(★, step {h['step'][i_best]})" + (f" and then rises to {h['val'][-1]:.3f}" if rises else "")
           + f": the train–val gap {'grows' if gap1 > gap0 else 'shrinks'} from {gap0:.3f} to {gap1:.3f} nats"
           + (" as the model memorises its small slice. " if gap1 > gap0 else ". ")
           + f"Perplexity = exp(CE) and bits/byte = CE / ln 2 / bytes per {unit} are the same number in other "
           "units, so the ★ row is also the best in those columns.")
    p = plotting.lines(ctx.plot_path("perplexity"), {"train": (h["step"], [math.exp(v) for v in h["train"]]),
                       "val": (h["step"], [math.exp(v) for v in h["val"]])}, "step", "perplexity (exp of CE)",
                       "Over-fitting a small slice: validation perplexity turns up" if rises else
                       "Train and validation perplexity", markers=True,
                       vline=(h["step"][i_best], f"best val, checkpoint kept (step {h['step'][i_best]})"))
    d.image(p, "Train and validation perplexity; early stopping ends the run after the val minimum")
    d.text(f"What to look at: up to the dotted line val perplexity falls from {math.exp(h['val'][0]):.2f} to "
           f"{math.exp(h['val'][i_best]):.2f}; after it train "
           f"{'keeps falling' if h['train'][-1] < h['train'][i_best] else 'moves'} "
           f"({math.exp(h['train'][i_best]):.2f} → {math.exp(h['train'][-1]):.2f}) while val "
           + (f"climbs back ({math.exp(h['val'][i_best]):.2f} → {math.exp(h['val'][-1]):.2f}): what the model still "
              "learns is specific to the training slice." if rises else "no longer improves.")
           + ("" if len(h["step"]) - 1 > i_best else " Here the best evaluation is the last one: no turn yet."))
    best = GPT(mcfg).to(dev)
    saved = load_checkpoint(best_path(ckpt), best)
    full_best = full_split_loss(best, va, cfg.block_size, 64, dev)
    full_last = full_split_loss(model, va, cfg.block_size, 64, dev)
    stop = (f"stopped early at step {res.final_iter}, {cfg.patience} evaluations after the best (step {res.best_step})"
            if res.stopped_early else f"ran all {cfg.max_iters} steps without triggering early stopping")
    bpb_best = full_best / math.log(2) / bytes_per_token
    d.text(f"The run {stop}. On the whole val split the kept best checkpoint (step {saved['iter']}) scores CE "
           f"{full_best:.4f} nats = perplexity {math.exp(full_best):.2f} = {bpb_best:.3f} bits/byte, against "
           f"{full_last:.4f} ({math.exp(full_last):.2f}) for the last weights. One {unit} is "
           f"{bytes_per_token:.2f} bytes of text on average, so bits/byte = CE / ln 2 / {bytes_per_token:.2f}.")
    metrics = {"stopped_early": res.stopped_early, "best_step": res.best_step, "stopped_at": res.final_iter,
               "best_val_ce": round(full_best, 4), "best_val_ppl": round(math.exp(full_best), 3),
               "best_val_bpb": round(full_best / math.log(2) / bytes_per_token, 4), "last_val_ce": round(full_last, 4)}
    if cfg.dataset == "tinystories":  # the seed's target: perplexity per BPE token on TinyStories
        metrics["val_ppl"] = metrics["best_val_ppl"]
    else:
        d.text("Seed target (validation perplexity ≤ 30 for a ~50M model on TinyStories): pending, needs a CUDA GPU: "
               "run `make day 26 ARGS='--preset gpu'`. The character-level perplexity above measures another "
               "tokenisation and is not comparable with it.")
    return metrics


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
