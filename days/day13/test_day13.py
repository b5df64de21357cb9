"""Day 13: each init has the variance its formula says, Kaiming keeps ReLU activations at scale while
N(0, 0.01^2) vanishes, LayerNorm fixes the scale, μP's learning rates are what we state, and the run works."""

import math

import pytest
import torch

from common.run import runner
from days.day13 import run


@pytest.mark.parametrize("scheme", run.SCHEMES)
def test_empirical_weight_variance_matches_formula(scheme):
    torch.manual_seed(0)
    m = run.DeepMLP(200, 300, 3, 100, "relu", False, scheme)
    for i, lin in enumerate(m.layers):
        fan_in, fan_out = lin.in_features, lin.out_features
        want = {"xavier": 2 / (fan_in + fan_out), "kaiming": 2 / fan_in, "small": 1e-4,
                "mup": 1 / fan_in ** 2 if i == len(m.layers) - 1 else 1 / fan_in}[scheme]
        n = lin.weight.numel()  # sample variance of n Gaussians has relative std sqrt(2/n)
        assert lin.weight.var().item() == pytest.approx(want, rel=5 * math.sqrt(2 / n))
        assert abs(lin.weight.mean().item()) < 5 * math.sqrt(want / n)
        assert torch.all(lin.bias == 0)


def test_xavier_matches_torch_formula():
    """torch.nn.init.xavier_normal_ uses the same 2/(fan_in+fan_out); kaiming_normal_ (fan_in, relu) 2/fan_in."""
    w = torch.empty(400, 300)
    assert run.weight_var("xavier", 300, 400, False) == pytest.approx(torch.nn.init.calculate_gain("linear") ** 2
                                                                      * 2 / 700)
    torch.manual_seed(0)
    torch.nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert w.var().item() == pytest.approx(run.weight_var("kaiming", 300, 400, False), rel=0.03)


def _act_var(scheme, depth=20, norm=False, width=512):
    torch.manual_seed(0)
    m = run.DeepMLP(width, width, depth, 10, "relu", norm, scheme)
    keep = []
    with torch.no_grad():
        m(torch.randn(1024, width), keep)
    return [(h ** 2).mean().item() for h in keep]  # second moment: what the recursion Var(y) = n Var(w) E[x^2] carries


def test_kaiming_relu_keeps_scale_and_small_init_vanishes():
    k = _act_var("kaiming")
    # E[h^2] = fan_in * (2/fan_in) * E[x^2]/2 = E[x^2]: constant across depth. At finite width n the
    # log of E[h^2] does a random walk (per-layer variance about 5/n), hence the factor-4 band at depth 20.
    assert all(0.25 < v / k[0] < 4.0 for v in k)
    assert k[0] == pytest.approx(1.0, rel=0.15)  # x ~ N(0, 1): E[h1^2] = 512 * (2/512) * 1 / 2
    s = _act_var("small")
    # each layer multiplies E[h^2] by fan_in * 1e-4 / 2 = 0.0256
    ratios = [b / a for a, b in zip(s, s[1:6])]
    assert all(v == pytest.approx(512 * 1e-4 / 2, rel=0.2) for v in ratios)
    assert s[-1] < 1e-30 or s[-1] == 0.0
    x = _act_var("xavier")  # Xavier ignores the ReLU's 1/2: E[h^2] halves per layer
    assert x[10] / x[9] == pytest.approx(0.5, rel=0.2)


def test_layernorm_fixes_the_scale_whatever_the_init():
    for s in ("small", "xavier", "kaiming"):
        v = _act_var(s, depth=8, norm=True)
        # LayerNorm output has E[h^2] = var/(var + eps): 1 up to eps = 1e-5 over the (tiny) input variance
        assert all(x == pytest.approx(1.0, rel=3e-3) for x in v)


def test_mup_learning_rates():
    m = run.DeepMLP(16, 256, 3, 10, scheme="mup")
    groups = m.param_groups(1e-3, base_width=64)
    scaled = [g for g in groups if g["lr"] != 1e-3]
    assert len(scaled) == 1 and scaled[0]["lr"] == pytest.approx(1e-3 / 4) and len(scaled[0]["params"]) == 3
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in m.parameters())


def test_quick_run_end_to_end(tmp_path):
    s = runner.quick(run, tmp_path)
    met = s["metrics"]
    assert met["max_var_ratio_error"] < 0.3
    assert met["act_std_ratio_kaiming"] > 0.3 and met["act_std_ratio_small"] < 1e-3
    assert (tmp_path / "deliverable.md").is_file()
    for name in ("act_std_relu", "act_std_tanh", "grad_std_relu", "hist_tanh", "grid"):
        assert (tmp_path / "plots" / f"day13_{name}.png").is_file()
