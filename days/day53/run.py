"""Day 53: calibration — does 90% confidence mean right 90% of the time? Temperature scaling and ECE.

An MLP trained on MNIST past the point where its test NLL stops improving becomes overconfident: its
accuracy holds, but its top-1 probabilities run ahead of it. One temperature T, fitted on a validation
split by minimising NLL, divides the logits and pulls the confidences back; the argmax, so the accuracy,
does not move. The run reports expected calibration error (ECE, 15 equal-width bins), the reliability
diagram before and after, and the same analysis for the next-character predictions of our language
models (the Sprint 5 base model on held-out stories, and SFT on its own answers and on stories).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.data import instruct, mnist
from common.eval import calibration as C
from common.run import plotting, runner
from common.train import posttrain

DAY = 53
KEY_METRICS = ["ece_before", "ece_after", "temperature", "test_accuracy", "lm_ece_before", "lm_ece_after"]
METRIC_KINDS = {}


@dataclass
class Config:
    hidden: int = 512
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    n_train: int = 50_000     # the first n_train training images; the last 10,000 are the validation split
    n_bins: int = 15
    lm_tokens: int = 60_000   # held-out story characters scored for the LM part (half fit T, half test it)


PRESETS = {"nano": dict(hidden=32, epochs=2, n_train=2000, lm_tokens=2000), "cpu": {}, "gpu": {}}


def fit_temperature_grid(logits: torch.Tensor, labels: torch.Tensor, grid) -> float:
    """The temperature in `grid` with the lowest mean NLL of softmax(logits / T): the brute-force check on L-BFGS."""
    # >>> exercise day53.fit_temperature_grid: cross-entropy of logits / T for each T, return the argmin
    losses = [float(F.cross_entropy(logits / t, labels)) for t in grid]
    return float(grid[int(np.argmin(losses))])
    # <<< exercise day53.fit_temperature_grid


def ece_from_bins(bins: list[dict], n: int) -> float:
    """ECE from reliability bins: the count-weighted mean of |accuracy - confidence| over non-empty bins."""
    # >>> exercise day53.ece_from_bins: sum of count / n * |accuracy - confidence|, skipping empty bins
    return sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
    # <<< exercise day53.ece_from_bins


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


@torch.no_grad()
def logits_of(model, x, batch: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def train_classifier(cfg: Config, seed: int, log) -> tuple[nn.Module, list[dict], dict]:
    """The MLP trained with Adam on the first n_train images; per epoch: test accuracy, NLL and ECE."""
    x, y = mnist.load("train")
    xt, yt = mnist.load("test")
    x = (x.float() / 255 - 0.1307) / 0.3081
    xt = (xt.float() / 255 - 0.1307) / 0.3081
    split = {"train": (x[:cfg.n_train], y[:cfg.n_train]), "val": (x[-10_000:], y[-10_000:]), "test": (xt, yt)}
    torch.manual_seed(seed)
    model = mlp(cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    curve = []
    xtr, ytr = split["train"]
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        s = C.summary(logits_of(model, split["test"][0]), split["test"][1], n_bins=cfg.n_bins)
        tr = C.summary(logits_of(model, xtr[:10_000]), ytr[:10_000], n_bins=cfg.n_bins)
        curve.append({"epoch": epoch, "train accuracy": tr["accuracy"], "test accuracy": s["accuracy"],
                      "test NLL": s["nll"], "test ECE": s["ece"], "test confidence": s["confidence"]})
        log({f"mnist/{k.replace(' ', '_')}": v for k, v in curve[-1].items() if k != "epoch"}, step=epoch)
    return model, curve, split


@torch.no_grad()
def lm_logits(model, ids: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, next ids) for every position of `ids`, in disjoint windows of `block` (every position scored
    once; its context is what precedes it inside its window)."""
    n = (len(ids) - 1) // block * block
    x, y = ids[:n].view(-1, block), ids[1:n + 1].view(-1, block)
    out = torch.cat([model(x[i:i + 64])[0] for i in range(0, len(x), 64)])
    return out.reshape(-1, out.shape[-1]), y.reshape(-1)


@torch.no_grad()
def answer_logits(model, examples) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) at the positions SFT trains on (the assistant's answer and END) of `examples`."""
    logits, targets = [], []
    for ids, mask in posttrain.sft_sequences(examples, tools=False):
        ids_t = torch.tensor(ids)
        out = model(ids_t[None, :-1])[0][0]
        keep = torch.tensor(mask[1:])
        logits.append(out[keep])
        targets.append(ids_t[1:][keep])
    return torch.cat(logits), torch.cat(targets)


def calibrate(logits, labels, n_fit: int, n_bins: int) -> dict:
    """Fit T on the first n_fit rows, report before/after on the rest."""
    T = C.fit_temperature(logits[:n_fit], labels[:n_fit])
    before = C.summary(logits[n_fit:], labels[n_fit:], 1.0, n_bins)
    after = C.summary(logits[n_fit:], labels[n_fit:], T, n_bins)
    return {"T": T, "before": before, "after": after}


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, out = ctx.deliverable, {}
    model, curve, split = train_classifier(cfg, ctx.seed, ctx.tracker.log_dict)
    val_logits, test_logits = logits_of(model, split["val"][0]), logits_of(model, split["test"][0])
    yv, yt = split["val"][1], split["test"][1]
    T = C.fit_temperature(val_logits, yv)
    before, after = C.summary(test_logits, yt, 1.0, cfg.n_bins), C.summary(test_logits, yt, T, cfg.n_bins)
    grid = np.round(np.arange(0.5, 4.0001, 0.01), 2)
    T_grid = fit_temperature_grid(val_logits, yv, grid)

    d.section("The classifier and its training curve")
    d.text(f"MLP 784-{cfg.hidden}-{cfg.hidden}-10 (ReLU), Adam lr {cfg.lr}, batch {cfg.batch_size}, {cfg.epochs} "
           f"epochs on the first {cfg.n_train:,} MNIST training images; the last 10,000 training images are the "
           "validation split (temperature fitting); the 10,000 test images are only scored.")
    d.table(curve)
    best = min(curve, key=lambda r: r["test NLL"])
    p = plotting.lines(ctx.plot_path("training"),
                       {"test NLL (nats)": ([r["epoch"] for r in curve], [r["test NLL"] for r in curve]),
                        "test ECE": ([r["epoch"] for r in curve], [r["test ECE"] for r in curve]),
                        "test error": ([r["epoch"] for r in curve], [1 - r["test accuracy"] for r in curve])},
                       "epoch", "value", "MNIST MLP: error, NLL and ECE on the test split", markers=True)
    d.image(p, "Test error, NLL and ECE per epoch")
    last = curve[-1]
    d.text(f"Test NLL is lowest at epoch {best['epoch']} ({best['test NLL']:.4f}) and ends at {last['test NLL']:.4f}; "
           f"test accuracy ends at {last['test accuracy']:.2%} and train accuracy at {last['train accuracy']:.2%}. "
           f"ECE goes from {curve[0]['test ECE']:.4f} after epoch 1 to {last['test ECE']:.4f}.")

    d.section("Temperature scaling")
    rows = [{"": "before (T = 1)", **before}, {"": f"after (T = {T:.3f})", **after}]
    d.table(rows)
    d.text(f"T fitted by L-BFGS on the validation NLL: {T:.4f}; a grid search over [0.5, 4] in steps of 0.01 (this "
           f"day's exercise) picks {T_grid:.2f}. Accuracy is {before['accuracy']:.2%} before and "
           f"{after['accuracy']:.2%} after (T divides every logit, so no argmax changes). ECE goes from "
           f"{before['ece']:.4f} to {after['ece']:.4f}, NLL from {before['nll']:.4f} to {after['nll']:.4f}.")
    bins_b = C.reliability(*C.confidences(test_logits, yt), cfg.n_bins)
    bins_a = C.reliability(*C.confidences(test_logits, yt, T), cfg.n_bins)
    p = plotting.reliability(ctx.plot_path("reliability"), {f"before: ECE {before['ece']:.4f}": bins_b,
                                                            f"after T = {T:.2f}: ECE {after['ece']:.4f}": bins_a},
                             "MNIST test split: reliability before and after temperature scaling")
    d.image(p, "Reliability diagram of the MNIST classifier before and after temperature scaling")
    d.table([{"bin": f"({b['lo']:.2f}, {b['hi']:.2f}]", "count before": b["count"], "accuracy before": b["accuracy"],
              "confidence before": b["confidence"], "count after": a["count"], "accuracy after": a["accuracy"],
              "confidence after": a["confidence"]} for b, a in zip(bins_b, bins_a) if b["count"] or a["count"]])
    n_test = len(yt)
    out.update(ece_before=round(before["ece"], 5), ece_after=round(after["ece"], 5), temperature=round(T, 4),
               temperature_grid=T_grid, test_accuracy=round(before["accuracy"], 4),
               accuracy_after=round(after["accuracy"], 4), nll_before=round(before["nll"], 5),
               nll_after=round(after["nll"], 5), mce_before=round(before["mce"], 4), mce_after=round(after["mce"], 4),
               ece_from_bins_agrees=float(abs(ece_from_bins(bins_b, n_test) - before["ece"]) < 1e-12),
               best_nll_epoch=best["epoch"])

    # --- the language models' next-character predictions
    d.section("The same for our language models")
    base, sft = posttrain.models_for(ctx.preset, ctx.device, posttrain.cache_dir_for(ctx))
    _, val_ids = posttrain.pretraining_text(posttrain.recipes(ctx.preset)[0].corpus_chars)
    ids = val_ids[:cfg.lm_tokens + 1]
    block = base.model.cfg.block_size
    rows = []
    for name, m in (("base", base.model), ("sft", sft.model)):
        lg, tg = lm_logits(m, ids, block)
        r = calibrate(lg, tg, len(tg) // 2, cfg.n_bins)
        rows.append({"model": name, "text": "held-out stories", "T": r["T"], "accuracy": r["before"]["accuracy"],
                     "ECE before": r["before"]["ece"], "ECE after": r["after"]["ece"], "NLL before": r["before"]["nll"],
                     "NLL after": r["after"]["nll"]})
        if name == "base":
            lm_bins = (C.reliability(*C.confidences(lg[len(tg) // 2:], tg[len(tg) // 2:]), cfg.n_bins),
                       C.reliability(*C.confidences(lg[len(tg) // 2:], tg[len(tg) // 2:], r["T"]), cfg.n_bins))
    val = instruct.first_per_family(posttrain.sft_splits(posttrain.recipes(ctx.preset)[1])["val"],
                                    40 if ctx.quick else 200)
    lg, tg = answer_logits(sft.model, val)
    r = calibrate(lg, tg, len(tg) // 2, cfg.n_bins)
    rows.append({"model": "sft", "text": "its own answers (val prompts)", "T": r["T"],
                 "accuracy": r["before"]["accuracy"], "ECE before": r["before"]["ece"], "ECE after": r["after"]["ece"],
                 "NLL before": r["before"]["nll"], "NLL after": r["after"]["nll"]})
    d.table(rows)
    d.text(f"Each row fits T on the first half of its tokens and reports the second half ({len(ids) - 1:,} story "
           f"characters; {len(tg):,} answer tokens from {len(val):,} val prompts). Confidence is the probability of "
           "the top next character; accuracy is how often the top character is the one that follows.")
    p = plotting.reliability(ctx.plot_path("lm_reliability"),
                             {f"base LM, T = 1: ECE {rows[0]['ECE before']:.4f}": lm_bins[0],
                              f"T = {rows[0]['T']:.2f}: ECE {rows[0]['ECE after']:.4f}": lm_bins[1]},
                             "Next-character predictions on held-out stories (base model)")
    d.image(p, "Reliability of the base model's next-character predictions before and after temperature scaling")
    out.update(lm_ece_before=round(rows[0]["ECE before"], 5), lm_ece_after=round(rows[0]["ECE after"], 5),
               lm_temperature=round(rows[0]["T"], 4), sft_story_ece_before=round(rows[1]["ECE before"], 5),
               sft_story_temperature=round(rows[1]["T"], 4), sft_answer_ece_before=round(rows[2]["ECE before"], 5),
               sft_answer_ece_after=round(rows[2]["ECE after"], 5), sft_answer_temperature=round(rows[2]["T"], 4))
    if not math.isfinite(out["lm_ece_before"]):
        raise RuntimeError("non-finite ECE")
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
