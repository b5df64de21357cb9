"""Tests of common/nn/layers.py: fast modules vs from-scratch references, gradients, shapes."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.nn.layers import (
    GELU,
    MLP,
    NORMS,
    Block,
    LayerNorm,
    RMSNorm,
    gelu_reference,
    layer_norm_reference,
    make_norm,
    mlp_hidden_dim,
    rms_norm_reference,
    swiglu,
)
from common.nn.model import GPTConfig


def randomised(module):
    """Give a norm random weights (and bias) so the affine part is tested too."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))
    return module


# ----------------------------------------------------------------------------- norms


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_matches_reference_and_torch(bias):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16) * 3 + 1
    ours = randomised(LayerNorm(16, bias=bias))
    ref = nn.LayerNorm(16, bias=bias)
    ref.load_state_dict(ours.state_dict())
    expected = layer_norm_reference(x, ours.weight, ours.bias, eps=1e-5)
    assert torch.allclose(ours(x), expected, atol=1e-5)
    assert torch.allclose(ref(x), expected, atol=1e-5)
    plain = layer_norm_reference(x)  # no affine: zero mean, unit (biased) variance per row
    assert torch.allclose(plain.mean(-1), torch.zeros(3, 5), atol=1e-5)
    assert torch.allclose(plain.var(-1, unbiased=False), torch.ones(3, 5), atol=1e-3)


def test_layer_norm_low_precision_is_computed_in_float32():
    # values of +-400: the squares (160000) overflow float16 (max 65504) unless upcast
    x = (torch.randn(4, 32) * 400).half()
    ln = LayerNorm(32)
    for y in (layer_norm_reference(x, ln.weight.half(), ln.bias.half()), ln.half()(x)):
        assert y.dtype == torch.float16 and torch.isfinite(y).all()
        assert torch.allclose(y.float(), layer_norm_reference(x.float()), atol=1e-2)
    xb = torch.randn(4, 32).bfloat16()
    assert layer_norm_reference(xb).dtype == torch.bfloat16


def test_rms_norm_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8) * 5
    norm = randomised(RMSNorm(8))
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert torch.allclose(norm(x), expected, atol=1e-5)
    assert torch.allclose(rms_norm_reference(x, norm.weight), expected, atol=1e-5)
    unit = rms_norm_reference(x)
    assert torch.allclose(unit.pow(2).mean(-1), torch.ones(2, 3), atol=1e-4)
    assert list(dict(norm.named_parameters())) == ["weight"]  # no bias
    assert rms_norm_reference(x.half()).dtype == torch.float16


def test_make_norm():
    ln = make_norm("layer", 4, bias=False)
    assert isinstance(ln, LayerNorm) and ln.bias is None
    assert isinstance(make_norm("rms", 4), RMSNorm) and set(NORMS) == {"layer", "rms"}
    with pytest.raises(ValueError):
        make_norm("batch", 4)


# ----------------------------------------------------------------------------- GELU


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate):
    x = torch.linspace(-8, 8, 1001)
    assert torch.allclose(gelu_reference(x, approximate), F.gelu(x, approximate=approximate), atol=1e-6)
    assert torch.allclose(GELU(approximate)(x), nn.GELU(approximate)(x))


def test_gelu_shape_and_approximation_gap():
    x = torch.linspace(-4, 4, 401)
    exact, tanh = gelu_reference(x), gelu_reference(x, "tanh")
    assert 0 < (exact - tanh).abs().max() < 1e-3  # different formulas, close values
    assert gelu_reference(torch.tensor(0.0)) == 0 and exact[-1] > 3.99 and abs(exact[0]) < 1e-3
    with pytest.raises(ValueError):
        gelu_reference(x, "sigmoid")


def test_gradcheck_references_float64():
    torch.manual_seed(0)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer_norm_reference, (x, w, b))
    assert torch.autograd.gradcheck(rms_norm_reference, (x, w))
    assert torch.autograd.gradcheck(lambda t: gelu_reference(t, "none"), (x,))
    assert torch.autograd.gradcheck(lambda t: gelu_reference(t, "tanh"), (x,))
    # and the analytic derivative of exact GELU: Phi(x) + x phi(x)
    g, = torch.autograd.grad(gelu_reference(x).sum(), x)
    phi = torch.exp(-x.detach() ** 2 / 2) / math.sqrt(2 * math.pi)
    assert torch.allclose(g, 0.5 * (1 + torch.erf(x.detach() / math.sqrt(2))) + x.detach() * phi)


# ----------------------------------------------------------------------------- MLP and block


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "swiglu"])
def test_mlp_shapes(act):
    hidden = mlp_hidden_dim(32, 4, act)
    mlp = MLP(32, hidden, bias=True, act=act)
    assert mlp(torch.randn(2, 5, 32)).shape == (2, 5, 32)
    assert mlp.fc.weight.shape == ((2 if act == "swiglu" else 1) * hidden, 32)
    assert mlp.proj.weight.shape == (32, hidden)


def test_mlp_hidden_dims_and_swiglu_formula():
    assert mlp_hidden_dim(384, 4, "gelu") == 1536
    assert mlp_hidden_dim(384, 4, "swiglu") == 1024  # 2/3 of 1536, already a multiple of 8
    assert mlp_hidden_dim(32, 4, "swiglu") == 88  # 85.3 rounded up to a multiple of 8
    torch.manual_seed(0)
    mlp = MLP(8, 16, act="swiglu")
    x = torch.randn(3, 8)
    gate, value = x @ mlp.fc.weight[:16].T, x @ mlp.fc.weight[16:].T
    expected = (gate * torch.sigmoid(gate) * value) @ mlp.proj.weight.T
    assert torch.allclose(mlp(x), expected, atol=1e-6)
    assert torch.allclose(swiglu(torch.cat((gate, value), -1)), F.silu(gate) * value)
    with pytest.raises(ValueError):
        MLP(8, 16, act="relu6")


def block_cfg(**kw):
    base = dict(n_embd=32, n_head=4, n_kv_head=None, bias=False, dropout=0.0, attn_backend="sdpa",
                pos="learned", rope_base=10000.0, block_size=16, norm="layer", mlp="gelu", mlp_ratio=4)
    return GPTConfig(**{**base, **kw})


@pytest.mark.parametrize("kw", [{}, {"norm": "rms", "mlp": "swiglu", "pos": "rope", "n_kv_head": 2},
                                {"bias": True, "pos": "alibi", "attn_backend": "manual"}])
def test_block_shapes_and_causality(kw):
    torch.manual_seed(0)
    block = Block(block_cfg(**kw)).eval()
    x = torch.randn(2, 10, 32)
    y = block(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 6:] += 1.0
    assert torch.allclose(block(x2)[:, :6], y[:, :6], atol=1e-6)


def test_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = Block(block_cfg(norm="rms")).eval()
    randomised(block.ln_1), randomised(block.ln_2)
    x = torch.randn(2, 5, 32)
    h = x + block.attn(block.ln_1(x))  # pre-norm: normalise the branch input, not the stream
    assert torch.allclose(block(x), h + block.mlp(block.ln_2(h)), atol=1e-6)
    block = Block(block_cfg())
    for p in (block.attn.proj.weight, block.mlp.proj.weight):
        nn.init.zeros_(p)  # both branches output 0: the block is the identity
    x = torch.randn(2, 5, 32)
    assert torch.equal(block(x), x)
