"""The shared library every day builds on, in layers (`ls common/` shows them):

    nn/      the model library: attention, positions, norms, MLPs, the block, GPT, KV caches, generation
    data/    dataset registry and downloads, tokenizers, batches and loaders, corpora, synthetic tasks
    train/   the training loop, schedules, checkpoints, optimizers written out by hand
    lab/     measurement and maths tools: numerics, Jacobians, curvature, scaling fits, benchmarks
    run/     the harness a day runs in: runner, configs, tracking, plotting, atomic writes, errors
    course/  the course machinery: `make` commands, curriculum, progress, reports, reproduce

`nn`, `data`, `train` and `lab` import each other and the leaves of `run` (atomic, errors,
progress_bar) only; `common/` never imports `days/` (common/tests/test_layering.py checks both).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root
