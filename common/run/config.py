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
    return OmegaConf.to_object(conf)


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_hash(cfg) -> str:
    """Short stable hash of a config's values: equal configs, equal hashes."""
    blob = json.dumps(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
