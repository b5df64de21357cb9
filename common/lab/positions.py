"""Length-generalisation probes for position schemes: train a small GPT at one length, score it at others.

Day 9 trains each `pos` variant of `GPTConfig` at `train_len` tokens and scores it at 1-4x that length;
day 36 reuses the same pieces to go to 32x and compare RoPE bases. Unlike `common/data/synthetic.py`,
which only makes the copy-task batches, this file owns the experiment around them:

- `make_model`: the same initial weights for every variant (the seed is reset first);
- `fit`: a short training run through the day's `ctx.train`, with the day's lr and batch size;
- `train_copy`: `make_model` + `fit` on the copy task, the example at a random offset of the window;
- `copy_accuracy_at`: token / whole-copy accuracy with the example at the *end* of an L-token window,
  so everything before it is filler at absolute positions the model may never have seen.

The functions take a day's flat config by duck typing (as `gpt_config_for` does); they read
`train_len`, `n_layer`, `n_head`, `n_embd`, `n_copy`, `copy_vocab`, `batch_size`, `eval_batches` and
whatever `train_config_for` shares with the config (lr, ...).
"""

from __future__ import annotations

import torch

from common.data.synthetic import CopyBatches, copy_accuracy, copy_batch
from common.lab import determinism
from common.nn.model import GPT, gpt_config
from common.train import train_config_for


def make_model(cfg, pos, vocab, seed, **overrides):
    """A GPT with position scheme `pos`, block_size = cfg.train_len; the same init for every variant.
    `overrides` go to `gpt_config` (e.g. rope_base)."""
    determinism.seed_everything(seed)  # same init and same batches for every variant
    return GPT(gpt_config("nano", vocab_size=vocab, block_size=cfg.train_len, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, n_embd=cfg.n_embd, pos=pos, **overrides))


def fit(cfg, ctx, model, tb, vb, steps, tag):
    """`steps` training steps of `model` on batches `tb` (warm-up 5%, no mid-run evaluation)."""
    tc = train_config_for(cfg, max_iters=steps, warmup_iters=max(1, steps // 20), eval_interval=0,
                          eval_iters=cfg.eval_batches, log_interval=max(1, steps // 30))
    return ctx.train(model.to(ctx.device), tb, vb, tc, run=tag)


def train_copy(cfg, ctx, pos, steps, tag=None, **overrides):
    """(model in eval mode, TrainResult): `steps` steps of the copy task at cfg.train_len tokens.

    The example (2 * n_copy tokens) sits at a random offset of the window, so the model must copy
    from n_copy + 1 back at every position it trains on, not from one memorised absolute position."""
    n, V = cfg.n_copy, cfg.copy_vocab
    pad = cfg.train_len - 2 * n
    tb = CopyBatches(n, V, cfg.batch_size, device=ctx.device, max_left_pad=pad)
    vb = CopyBatches(n, V, cfg.batch_size, device=ctx.device, seed=1, max_left_pad=pad)
    model = make_model(cfg, pos, V, ctx.seed, **overrides)
    res = fit(cfg, ctx, model, tb, vb, steps, tag or f"copy/{pos}")
    return model.eval(), res


@torch.no_grad()
def copy_accuracy_at(model, length, n_copy, vocab_size, n_batches, batch_size=64, device=None):
    """(token accuracy, whole-copy accuracy) with the copy example at the end of `length`-token windows.

    `n_batches` batches of `batch_size` examples from a generator seeded with `length` (the same
    examples for every model); the mean over batches. Positions before the example are FILL."""
    g = torch.Generator().manual_seed(length)
    accs = []
    for _ in range(n_batches):
        x, y, mask = copy_batch(batch_size, n_copy, vocab_size, generator=g, device=device,
                                left_pad=length - 2 * n_copy)
        accs.append(copy_accuracy(model(x)[0], y, mask))
    return tuple(sum(a[i] for a in accs) / len(accs) for i in (0, 1))
