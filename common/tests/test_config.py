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


@dataclass
class ModelCfg:
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    batch_size: int = 8
    max_iters: int = 10
    lr: float = 1e-3
    dropout: float = 0.0


@pytest.mark.parametrize("item, msg", [
    ("lr=-1", "'lr' = -1.0 is out of range: use a number > 0"),
    ("batch_size=0", "'batch_size' = 0 is out of range: use a whole number >= 1"),
    ("max_iters=0", "'max_iters' = 0 is out of range: use a whole number >= 1"),
    ("dropout=2", "'dropout' = 2.0 is out of range: use a probability in [0, 1)"),
    ("n_head=5", "'n_head' = 5 must divide n_embd = 64"),
])
def test_out_of_range_values_are_one_sentence(item, msg):
    with pytest.raises(ConfigError) as e:
        resolve(ModelCfg, {}, None, [item])
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_every_days_presets_pass_validation():
    import importlib

    from common import ROOT
    from common.run import runner
    from common.run.dayfiles import DayFiles, built_days

    for d in built_days(ROOT):
        m = importlib.import_module(DayFiles(ROOT, d).module)
        runner.resolved_presets(m.Config, m.PRESETS)  # raises on a bad value
