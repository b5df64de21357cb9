"""Configs: one flat dataclass per experiment, named presets, `key=value` overrides.

Every day declares a `@dataclass Config` with its defaults (the `cpu` size: a 2-core laptop) and a
dict of named presets that override some fields:

    PRESETS = {"nano": dict(steps=5), "cpu": {}, "gpu": dict(steps=5000, n_embd=384)}

`resolve(Config, PRESETS, "gpu", ["steps=100", "lr=3e-4"])` builds the config: defaults, then the
preset, then the command-line overrides, with types checked by OmegaConf against the dataclass.
An unknown key or a badly typed value raises `ConfigError` with one sentence that lists the valid
keys, which the runner prints before exiting non-zero.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from common.run.errors import UserError

PRESET_NAMES = ("nano", "cpu", "gpu")  # nano: tests (seconds); cpu: laptop default; gpu: seed sizes


class ConfigError(UserError):
    """A config problem the learner can fix from the command line."""


def _flat_keys(node, prefix: str = "") -> list[str]:
    """All leaf keys of a (possibly nested) config, dotted: ["lr", "model.n_layer", ...]."""
    keys = []
    for k in node:
        v = node[k] if not OmegaConf.is_missing(node, k) else None
        if OmegaConf.is_dict(v):
            keys += _flat_keys(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


def _valid_keys(base) -> str:
    return ", ".join(_flat_keys(base))


def parse_overrides(items: list[str]) -> list[str]:
    """Check the `key=value` shape; the values are parsed by OmegaConf against the dataclass."""
    for item in items:
        key, eq, _ = item.partition("=")
        if not eq or not key or not key.replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"Override {item!r} is not of the form key=value (e.g. steps=100).")
    return items


def resolve(cls, presets: dict[str, dict] | None = None, preset: str | None = None,
            overrides: list[str] | dict | None = None):
    """Defaults < preset < overrides, type-checked; returns an instance of `cls`."""
    presets = presets or {}
    base = OmegaConf.structured(cls)
    layers = []
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"Unknown preset {preset!r}; valid presets: {', '.join(presets) or 'none'}.")
        layers.append(("preset " + preset, OmegaConf.create(presets[preset])))
    if overrides:
        if isinstance(overrides, dict):
            layers.append(("overrides", OmegaConf.create(overrides)))
        else:
            layers.append(("overrides", OmegaConf.from_dotlist(parse_overrides(list(overrides)))))
    conf = base
    for where, layer in layers:
        valid = set(_flat_keys(base))
        for key in _flat_keys(layer):
            if key not in valid and not any(v.startswith(key + ".") for v in valid):
                raise ConfigError(f"Unknown config key {key!r} (from {where}); valid keys: {_valid_keys(base)}.")
        try:
            conf = OmegaConf.merge(conf, layer)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None) or "?"
            reason = str(e).splitlines()[0].rstrip(".")
            raise ConfigError(f"Bad value for config key {key!r} (from {where}): {reason}.") from None
    cfg = OmegaConf.to_object(conf)
    validate(cfg)
    return cfg


# Ranges for the field names the days share, checked after every resolve: (test, what is allowed).
# A day's own field with one of these names means the same thing, so one table serves all days.
def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


RULES = {
    **{k: (_positive, "a number > 0") for k in ("lr", "adam_lr", "lr_low", "lr_high", "diverge_lr")},
    **{k: (_non_negative, "a number >= 0") for k in ("min_lr", "weight_decay", "grad_clip", "clip", "warmup_iters",
                                                    "warmup", "eval_interval", "patience", "tie_margin")},
    **{k: (_positive, "a whole number >= 1") for k in (
        "batch_size", "block_size", "n_layer", "n_head", "n_embd", "max_iters", "steps", "eval_iters",
        "effective_batch", "rounds", "runs", "iters", "n_runs", "vocab_size", "train_steps")},
    "dropout": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "n_kv_head": (lambda v: v is None or v > 0, "empty (= n_head) or a whole number >= 1"),
}


def validate(cfg) -> None:
    """One ConfigError sentence naming the key, its value and what is allowed, for the first bad value."""
    values = to_dict(cfg) if dataclasses.is_dataclass(cfg) else {}
    for key, value in values.items():
        rule = RULES.get(key)
        if rule and isinstance(value, (int, float)) and not isinstance(value, bool) and not rule[0](value):
            raise ConfigError(f"Config key {key!r} = {value!r} is out of range: use {rule[1]}.")
    n_embd, n_head, n_kv = values.get("n_embd"), values.get("n_head"), values.get("n_kv_head")
    if isinstance(n_embd, int) and isinstance(n_head, int) and n_embd % n_head:
        raise ConfigError(f"Config key 'n_head' = {n_head} must divide n_embd = {n_embd} (each head gets "
                          f"n_embd / n_head dimensions); e.g. n_head={_divisor_near(n_embd, n_head)}.")
    if isinstance(n_kv, int) and isinstance(n_head, int) and n_head % n_kv:
        raise ConfigError(f"Config key 'n_kv_head' = {n_kv} must divide n_head = {n_head}.")


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_hash(cfg) -> str:
    """Short stable hash of a config's values: equal configs, equal hashes."""
    blob = json.dumps(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
