"""Day 8: fused and unfused variants agree, the byte counter counts right, compile is optional."""

from types import SimpleNamespace

import pytest
import torch

from common.lab.bench import ByteCounter, ColdCompile
from common.run import runner
from days.day08 import run
from days.day08.run import OPS, Config, library_fused, make_inputs, measure, step_fn


def grads(fn, inputs):
    out = fn(*inputs)
    return [out, *torch.autograd.grad(out, inputs, torch.ones_like(out))]


@pytest.mark.parametrize("op", list(OPS))
def test_reference_and_library_variants_agree_in_value_and_gradient(op):
    inputs = make_inputs(op, 6, 16, torch.float64, "cpu")
    ref, fast = OPS[op]
    for a, b in zip(grads(ref, inputs), grads(fast, inputs)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_byte_counter_counts_reads_and_writes_but_not_views():
    x, y = torch.randn(1000), torch.randn(1000)
    with ByteCounter() as bc:
        z = x + y  # reads 2 x 4000 bytes, writes 4000
        z.view(10, 100).t()  # views move nothing
    assert bc.ops == 1 and bc.bytes == 3 * 4000


def test_library_layer_norm_moves_about_the_compulsory_bytes_and_the_reference_many_more():
    rows, C = 512, 64
    per_elem = {}
    for name, fn in zip(("reference", "library"), OPS["layernorm"]):
        inputs = make_inputs("layernorm", rows, C, torch.float32, "cpu")
        out = fn(*inputs)
        step = step_fn(fn, inputs, torch.ones_like(out))
        with ByteCounter() as bc:
            step()
        per_elem[name] = bc.bytes / (rows * C)
    # one fused forward kernel (read x, write y) + one backward kernel (read dy and x, write dx) = 20 B/elem
    assert 20 <= per_elem["library"] < 24
    assert per_elem["reference"] > 5 * per_elem["library"]


def test_cold_compile_switches_the_caches_off_and_restores_them():
    import torch._functorch.config as fconf
    import torch._inductor.config as iconf
    before = (iconf.fx_graph_cache, fconf.enable_autograd_cache)
    with ColdCompile(True):
        assert not iconf.fx_graph_cache and not fconf.enable_autograd_cache
    assert (iconf.fx_graph_cache, fconf.enable_autograd_cache) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only expectation")
def test_library_fused_kernels_are_skipped_without_cuda():
    assert library_fused("layernorm") == "skipped: needs CUDA (apex / Transformer Engine kernels)"


def test_measure_reports_compulsory_bytes_and_equal_outputs():
    cfg = Config(feature_dim=16, steps=2, chunks=1, warmup=1, compile_backend="aot_eager")
    out, cname, compile_s, flops, compulsory = measure(cfg, SimpleNamespace(device=torch.device("cpu")), "layernorm", 8)
    assert compulsory == 4 * (3 * (8 * 16 + 2 * 16) + 2 * 8 * 16)  # inputs x, w, b read twice; y, grads once
    assert flops == 0 and compile_s >= 0 and "skip" in out["library fused"]
    for name in ("reference (eager)", "torch eager", cname):
        assert len(out[name]["timing"].times) == 2 and out[name]["err"] < 1e-5


@pytest.mark.slow
def test_inductor_fused_layer_norm_matches_eager():
    fn = OPS["layernorm"][0]
    inputs = make_inputs("layernorm", 64, 32, torch.float32, "cpu")
    compiled = torch.compile(fn, dynamic=False)
    for a, b in zip(grads(compiled, inputs), grads(OPS["layernorm"][1], inputs)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_quick_run(tmp_path):
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["copy_bandwidth_gb_s"] > 0
    assert all(m[f"{op}_{n}_speedup_vs_eager"] > 0 for op in ("layernorm", "bias_gelu") for n in (512, 2048))
    assert m["mlp_256_compile_s"] >= 0 and "layernorm_break_even_steps" in m
    text = (tmp_path / "deliverable.md").read_text()
    assert "When to fuse (computed)" in text and "skipped: needs CUDA" in text and "bytes/elem" in text
    assert (tmp_path / "plots" / "day08_speedup_vs_size.png").is_file()
