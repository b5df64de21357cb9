import dataclasses
from dataclasses import dataclass

import pytest

from common.run.config import ConfigError, config_hash, resolve


@dataclass
class Cfg:
    steps: int = 100
    lr: float = 1e-3
    name: str = "baseline"
    compile: bool = False


PRESETS = {"nano": dict(steps=3), "gpu": dict(steps=5000, lr=6e-4)}


def test_defaults_preset_override_layering():
    assert resolve(Cfg) == Cfg()
    assert resolve(Cfg, PRESETS, "nano").steps == 3
    c = resolve(Cfg, PRESETS, "gpu", ["lr=3e-4", "compile=true", "name=x"])
    assert (c.steps, c.lr, c.compile, c.name) == (5000, 3e-4, True, "x")
    assert isinstance(c, Cfg)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"Unknown config key 'stpes'.*valid keys: steps, lr, name, compile"):
        resolve(Cfg, PRESETS, None, ["stpes=5"])


def test_unknown_key_in_preset_is_caught():
    with pytest.raises(ConfigError, match="from preset bad"):
        resolve(Cfg, {"bad": dict(nope=1)}, "bad")


@pytest.mark.parametrize("item", ["steps=abc", "lr=fast", "compile=maybe"])
def test_bad_value_names_the_key(item):
    with pytest.raises(ConfigError, match=f"Bad value for config key '{item.split('=')[0]}'"):
        resolve(Cfg, {}, None, [item])


@pytest.mark.parametrize("item", ["steps", "=3", "a b=3"])
def test_malformed_override(item):
    with pytest.raises(ConfigError, match="key=value"):
        resolve(Cfg, {}, None, [item])


def test_unknown_preset():
    with pytest.raises(ConfigError, match="Unknown preset 'huge'; valid presets: nano, gpu"):
        resolve(Cfg, PRESETS, "huge")


def test_config_hash_is_stable_and_sensitive():
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash(Cfg()) != config_hash(Cfg(steps=101))
    assert len(config_hash(Cfg())) == 10


@dataclass
class Inner:
    n_layer: int = 2
    lr: float = 0.1


@dataclass
class Outer:
    steps: int = 5
    model: Inner = dataclasses.field(default_factory=Inner)


def test_nested_configs_take_dotted_overrides():
    c = resolve(Outer, {"gpu": {"model": {"n_layer": 6}}}, "gpu", ["model.lr=0.5", "steps=7"])
    assert (c.steps, c.model.n_layer, c.model.lr) == (7, 6, 0.5) and isinstance(c.model, Inner)
    with pytest.raises(ConfigError, match=r"Unknown config key 'model.n_layers'.*model.n_layer"):
        resolve(Outer, {}, None, ["model.n_layers=3"])
