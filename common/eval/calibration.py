"""Calibration: do a model's probabilities mean what they say? ECE, reliability bins, temperature scaling.

    conf, correct = confidences(logits, labels)        # top-1 probability, and whether top-1 was right
    ece(conf, correct, n_bins=15)                      # expected calibration error, 0 = calibrated
    bins = reliability(conf, correct, n_bins=15)       # per bin: count, mean confidence, accuracy
    T = fit_temperature(val_logits, val_labels)        # one scalar, fitted by NLL on held-out data
    probs = softmax(test_logits / T)                   # same argmax, so accuracy is unchanged

A classifier is calibrated when, among the inputs it gives confidence p, a fraction p is right. ECE
(Naeini et al. 2015; Guo et al. 2017) bins the top-1 confidence into equal-width bins and averages the
gap |accuracy - confidence| weighted by each bin's share of the samples. Temperature scaling (Guo et al.)
divides every logit vector by one T > 0 fitted to minimise the negative log-likelihood on a validation
split: T > 1 softens an overconfident model. T changes no argmax, so accuracy is untouched.

The same functions take any (N, K) logits: an image classifier's ten classes or a language model's
next-token distribution over its vocabulary.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def confidences(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0):
    """(top-1 probability, top-1 correct) per row of `logits` (N, K) divided by `temperature`, as numpy arrays."""
    p = F.softmax(logits.float() / temperature, dim=-1)
    conf, pred = p.max(-1)
    return conf.numpy().astype(np.float64), (pred == labels).numpy().astype(np.float64)


def reliability(conf, correct, n_bins: int = 15) -> list[dict]:
    """Equal-width confidence bins over [0, 1]: lower and upper edge, count, mean confidence and accuracy
    (None for an empty bin). A confidence of exactly 1 falls in the last bin, of 0 in the first."""
    conf, correct = np.asarray(conf, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)   # bin b holds (e_b, e_b+1]
    out = []
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n,
                    "confidence": float(conf[m].mean()) if n else None,
                    "accuracy": float(correct[m].mean()) if n else None})
    return out


def ece(conf, correct, n_bins: int = 15) -> float:
    """Expected calibration error: sum over bins of (bin count / N) * |accuracy - mean confidence|."""
    n = len(conf)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in reliability(conf, correct, n_bins) if b["count"]))


def mce(conf, correct, n_bins: int = 15) -> float:
    """Maximum calibration error: the largest |accuracy - confidence| over non-empty bins."""
    return float(max(abs(b["accuracy"] - b["confidence"]) for b in reliability(conf, correct, n_bins) if b["count"]))


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of the labels under softmax(logits / T)."""
    return float(F.cross_entropy(logits.float() / temperature, labels))


def brier(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean squared distance between the probability vector and the one-hot label (sum over classes)."""
    p = F.softmax(logits.float() / temperature, dim=-1)
    return float(((p - F.one_hot(labels, p.shape[-1]).float()) ** 2).sum(-1).mean())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The T > 0 minimising the mean NLL of softmax(logits / T), by L-BFGS on log T (so T stays positive).

    The NLL is convex in 1/T for fixed logits, so the optimum is unique and L-BFGS finds it from T = 1."""
    logits, labels = logits.detach().float(), labels.detach()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def summary(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, n_bins: int = 15) -> dict:
    """Accuracy, mean confidence, ECE, MCE, NLL and Brier score at one temperature."""
    conf, correct = confidences(logits, labels, temperature)
    return {"accuracy": float(correct.mean()), "confidence": float(conf.mean()), "ece": ece(conf, correct, n_bins),
            "mce": mce(conf, correct, n_bins), "nll": nll(logits, labels, temperature),
            "brier": brier(logits, labels, temperature)}
