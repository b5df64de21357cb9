"""Day 8: fused vs unfused ops — LayerNorm, bias+GELU and an MLP block, eager vs torch.compile.

Unfused: eager PyTorch, one kernel (one trip through memory) per op: our from-scratch
`layer_norm_reference` / `gelu_reference` (many small ops) and the library ops `F.layer_norm` /
`F.gelu` (one kernel each). Fused: `torch.compile` of the from-scratch code; inductor merges the
elementwise ops and reductions into a few loops (C++/OpenMP on CPU, Triton on CUDA). Each variant
is timed for `steps` forward+backward steps in interleaved chunks; compile time is measured
separately (first call minus a steady step). Bytes moved: every ATen op an eager step runs is
counted (inputs read + outputs written) with a dispatch mode; the fused ideal is the compulsory
traffic: read the inputs twice (forward, backward), write the output and the input gradients once.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from common.lab import bench
from common.nn.layers import gelu_reference, layer_norm_reference
from common.run import plotting, runner
from common.run.tracking import progress

DAY = 8
# How `make reproduce` compares each metric: everything not listed is exact (deterministic).
# Timings, and choices made by a clock, move with the machine's load: reported as ratios only.
METRIC_KINDS = {
    "*_speedup_vs_eager": "timing",
    "*_speedup_vs_reference": "timing",
    "*_compile_s": "timing",
    "copy_bandwidth_gb_s": "timing",
    "*_break_even_steps": "timing",
}


@dataclass
class Config:
    feature_dim: int = 256            # C: the width that LayerNorm normalises and the bias spans
    rows: str = "256,2048,16384"      # tensor sizes rows x C = 64K, 512K, 4M elements
    ops: str = "layernorm,bias_gelu"
    mlp_rows: int = 256               # MLP block C -> 4C -> C at this many rows (matmul-bound); 0 = off
    steps: int = 200                  # timed forward+backward steps per variant and size (the seed's 200)
    chunks: int = 4                   # the steps are timed in this many interleaved chunks
    warmup: int = 5
    compile_backend: str = "inductor"  # inductor fuses; "aot_eager" traces only (the nano smoke test)
    cold_compile: bool = True         # bypass inductor's on-disk caches, so compile time is a cold compile
    dtype: str = "float32"


PRESETS = {
    "nano": dict(feature_dim=32, rows="16,64", mlp_rows=8, steps=8, chunks=2, warmup=1, compile_backend="aot_eager"),
    "cpu": {},
    "gpu": dict(feature_dim=1024, rows="1024,8192,65536", mlp_rows=8192, steps=200, dtype="bfloat16"),
}


def ln_reference(x, w, b):
    return layer_norm_reference(x, w, b)


def ln_torch(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b)


def bias_gelu_reference(x, bias):
    return gelu_reference(x + bias)


def bias_gelu_torch(x, bias):
    return F.gelu(x + bias)


def mlp_reference(x, w1, b1, w2, b2):
    return gelu_reference(x @ w1.t() + b1) @ w2.t() + b2


def mlp_torch(x, w1, b1, w2, b2):
    return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


OPS = {"layernorm": (ln_reference, ln_torch), "bias_gelu": (bias_gelu_reference, bias_gelu_torch),
       "mlp": (mlp_reference, mlp_torch)}


def make_inputs(op, rows, C, dtype, device):
    g = torch.Generator().manual_seed(rows)
    shapes = {"layernorm": [(rows, C), (C,), (C,)], "bias_gelu": [(rows, C), (C,)],
              "mlp": [(rows, C), (4 * C, C), (4 * C,), (C, 4 * C), (C,)]}[op]
    scale = [1.0] + [C ** -0.5] * (len(shapes) - 1)
    return [(torch.randn(s, generator=g) * a).to(device, dtype).requires_grad_() for s, a in zip(shapes, scale)]


def library_fused(op):
    """A vendor fused kernel (apex / Transformer Engine) for this op, or why there is none."""
    if not torch.cuda.is_available():
        return "skipped: needs CUDA (apex / Transformer Engine kernels)"
    if op != "layernorm":
        return "skipped: no standalone library kernel for this op"
    if importlib.util.find_spec("apex"):
        from apex.normalization import fused_layer_norm_affine
        return lambda x, w, b: fused_layer_norm_affine(x, w, b, (x.shape[-1],))
    return "skipped: apex not installed"


def step_fn(fn, inputs, grad_out):
    def step():
        fn(*inputs).backward(grad_out)
        for t in inputs:
            t.grad = None
    return step


def measure(cfg, ctx, op, rows):
    """Time every variant of `op` at `rows` x C; returns {variant: row dict} and the compile time."""
    dev, dtype = ctx.device, getattr(torch, cfg.dtype)
    ref, fast = OPS[op]
    inputs = make_inputs(op, rows, cfg.feature_dim, dtype, dev)
    expected = ref(*inputs).detach()
    grad_out = torch.randn_like(expected)
    compiled_name = f"compiled ({'Triton' if dev.type == 'cuda' else 'C++/OpenMP'})"
    compiled = torch.compile(ref, backend=cfg.compile_backend, dynamic=False)
    t0 = time.perf_counter()
    step_fn(compiled, inputs, grad_out)()
    bench.sync(dev)
    first = time.perf_counter() - t0
    fns = {"reference (eager)": ref, "torch eager": fast, compiled_name: compiled}
    lib = library_fused(op)
    if not isinstance(lib, str):
        fns["library fused"] = lib
    out = {n: {"skip": lib} for n in ["library fused"] if isinstance(lib, str)}
    steps = {n: step_fn(f, inputs, grad_out) for n, f in fns.items()}
    io = sum(t.numel() * t.element_size() for t in inputs)
    compulsory = 3 * io + 2 * expected.numel() * expected.element_size()
    with FlopCounterMode(display=False) as fc:
        steps["torch eager"]()
    for n, f in fns.items():
        err = (f(*inputs).detach().float() - expected.float()).abs().max().item()  # grad mode: no recompile
        moved, n_ops = compulsory, None
        if "eager" in n:
            with bench.ByteCounter() as bc:
                steps[n]()
            moved, n_ops = bc.bytes, bc.ops
        out[n] = {"bytes": moved, "aten_ops": n_ops, "err": err, "timing": bench.Timing()}
        bench.time_fn(steps[n], warmup=cfg.warmup, repeats=0, device=dev)
    per = max(1, cfg.steps // cfg.chunks)  # interleaved chunks: machine noise hits every variant alike
    for n, t in bench.compare(steps, rounds=cfg.chunks, repeats=per, warmup=0, device=dev).items():
        out[n]["timing"].times += t.times
    compile_s = max(0.0, first - out[compiled_name]["timing"].median)
    return out, compiled_name, compile_s, fc.get_total_flops(), compulsory


def copy_bandwidth(ctx, n_elems):
    """GB/s of a plain tensor copy (read + write): the memory roofline of this machine."""
    x = torch.randn(n_elems, device=ctx.device)
    y = torch.empty_like(x)
    t = bench.time_fn(lambda: y.copy_(x), warmup=3, repeats=20, device=ctx.device).median
    return 2 * x.numel() * x.element_size() / t / 1e9


def main(cfg: Config, ctx: runner.Context) -> dict:
    C = cfg.feature_dim
    jobs = [(op, int(r)) for op in cfg.ops.split(",") for r in cfg.rows.split(",")]
    jobs += [("mlp", cfg.mlp_rows)] if cfg.mlp_rows else []
    t0 = time.perf_counter()
    torch.compile(lambda x: x * 2, backend=cfg.compile_backend)(torch.ones(8, device=ctx.device))
    startup = time.perf_counter() - t0  # one-time import / compiler start-up, not charged to any op
    res = {}
    with bench.ColdCompile(cfg.cold_compile):
        for op, rows in progress(jobs, desc="ops x sizes"):
            res[(op, rows)] = measure(cfg, ctx, op, rows)
    bw = copy_bandwidth(ctx, max(r for _, r in jobs) * C)
    timing_rows, compile_rows, series, metrics = [], [], {}, {}
    for (op, rows), (out, cname, compile_s, flops, compulsory) in res.items():
        n_el = rows * C
        base, refe, comp = (out[n]["timing"].mean for n in ("torch eager", "reference (eager)", cname))
        for n, r in out.items():
            if "skip" in r:
                timing_rows.append({"op": op, "elements": n_el, "variant": n, "step time": r["skip"]})
                continue
            t = r["timing"]
            timing_rows.append({"op": op, "elements": n_el, "variant": n,
                                "step time": f"{bench.fmt_seconds(t.mean)} ± {bench.fmt_seconds(t.std)}",
                                "× vs torch eager": round(base / t.mean, 2),
                                "bytes/elem": round(r["bytes"] / n_el, 1),
                                "GB/s": round(r["bytes"] / t.mean / 1e9, 2), "ATen ops": r["aten_ops"] or "—",
                                "max |Δ| vs reference": f"{r['err']:.1e}"})
            ctx.tracker.log(f"{op}/{n}/step_ms", 1e3 * t.mean, n_el)
        saved = {k: v - comp for k, v in (("torch", base), ("reference", refe))}
        even = {k: (math.ceil(compile_s / v) if v > 0 else "never") for k, v in saved.items()}
        compile_rows.append({"op": op, "elements": n_el, "compile time (s)": round(compile_s, 2),
                             "saved/step vs torch eager": bench.fmt_seconds(saved["torch"]) if saved["torch"] > 0
                             else "none (slower)", "break-even steps vs torch eager": even["torch"],
                             "break-even steps vs reference": even["reference"],
                             "matmul GFLOP/step": round(flops / 1e9, 3),
                             "FLOP/byte (compulsory)": round(flops / compulsory, 2)})
        for k, v in (("torch eager", base), ("reference eager", refe)):
            xs, ys = series.setdefault(f"{op}: {k} / compiled", ([], []))
            xs.append(n_el)
            ys.append(v / comp)
        metrics[f"{op}_{n_el}_speedup_vs_eager"] = round(base / comp, 3)
        metrics[f"{op}_{n_el}_speedup_vs_reference"] = round(refe / comp, 3)
        metrics[f"{op}_{n_el}_compile_s"] = round(compile_s, 2)
    d = ctx.deliverable
    d.section("Setup")
    d.text(f"Feature width C = {C}, {cfg.dtype}, {ctx.device}. Each step = forward + backward (gradients for the "
           f"input and the parameters), {cfg.steps} timed steps per variant in {cfg.chunks} interleaved chunks after "
           f"{cfg.warmup} warm-up steps; mean ± std over the steps. `torch.compile(backend={cfg.compile_backend!r}, "
           f"dynamic=False)` of the from-scratch function, one compile per op and size, "
           f"{'cold (on-disk caches off)' if cfg.cold_compile else 'caches on'}; the first compile of the process "
           f"also paid {startup:.1f} s of one-time start-up, not charged to any op. Triton: "
           f"{'used by inductor on CUDA' if ctx.device.type == 'cuda' else 'skipped: needs CUDA'}. Machine load "
           f"(1-min average) after the timings: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; above the core "
           "count, OpenMP threads wait on each other and compiled and eager kernels suffer unequally.")
    d.section("Step time, bytes moved and bandwidth")
    d.table(timing_rows)
    d.text(f"Bytes/elem: eager rows count every ATen op's reads + writes (a dispatch mode); compiled rows show the "
           f"compulsory traffic (inputs read twice, output and gradients written once), a lower bound on what the "
           f"fused kernels move. A plain copy on this machine reaches {bw:.1f} GB/s (read + write).")
    d.text(look_timing(res))
    d.section("Compile time and break-even")
    d.table(compile_rows)
    never = sorted({c["op"] for c in compile_rows if c["break-even steps vs torch eager"] == "never"})
    vs_ref = [c["break-even steps vs reference"] for c in compile_rows if c["op"] in never
              and c["break-even steps vs reference"] != "never"]
    no_mm = sorted({op for (op, _), r in res.items() if r[3] == 0})  # r[3]: the matmul FLOPs of one step
    d.text("What to look at: break-even = compile time ÷ time saved per step. "
           + (f"'never' ({', '.join(never)}) means the compiled step is not faster than the library op, so no number "
              "of steps repays the compile" + (f"; against the slower from-scratch code it pays back after "
                                               f"{min(vs_ref):,} to {max(vs_ref):,} steps. " if vs_ref else ". ")
              if never else "Every op repays its compile against the library op. ")
           + (f"The FLOP columns are 0 for {', '.join(no_mm)} because FlopCounterMode counts only matmul FLOPs; "
              "their few elementwise operations per element are not counted." if no_mm else ""))
    p = plotting.lines(ctx.plot_path("speedup_vs_size"), series, "tensor size (elements, log scale)",
                       "speed-up of the compiled step (×, log scale)",
                       "Fused (torch.compile) vs eager, forward + backward",
                       logx=True, logy=True, markers=True, hline=(1.0, "break-even"))
    d.image(p, "Speed-up of the fused step over each eager variant vs tensor size (above the dashed line: "
               "compiled is faster)")
    vs = {k: [y for name, (_, ys) in series.items() if name.endswith(f"{k} / compiled") for y in ys]
          for k in ("torch eager", "reference eager")}
    d.text(f"What to look at: the y axis is logarithmic, so a ratio r above the dashed line and 1/r below it are "
           f"equally far from it. Against the library ops (the 'torch eager' lines) the compiled step runs at "
           f"{min(vs['torch eager']):.2f}–{max(vs['torch eager']):.2f}× their speed, against the from-scratch code "
           f"at {min(vs['reference eager']):.2f}–{max(vs['reference eager']):.2f}×: fusion "
           + ("beats the library as well." if min(vs["torch eager"]) > 1 else
              "recovers what the many small ops lose, but does not always beat a library kernel that is "
              "already fused." if min(vs["reference eager"]) > 1 else
              "does not win everywhere at these sizes; see the rows below 1."))
    metrics["copy_bandwidth_gb_s"] = round(bw, 2)
    metrics.update(conclude(ctx, res, compile_rows, bw))
    return metrics


def look_timing(res) -> str:
    """'What to look at' for the step-time table: who wins against the library op, and the columns fixed by design."""
    wins, n, ref_wins, ops = 0, 0, 0, {}
    for (op, _), (out, cname, *_) in res.items():
        n += 1
        lib, ref, comp = (out[k]["timing"].mean for k in ("torch eager", "reference (eager)", cname))
        wins += comp < lib
        ref_wins += comp < ref
        ops.setdefault(op, (out["reference (eager)"]["aten_ops"], out["torch eager"]["aten_ops"]))
    return ("What to look at: *× vs torch eager* above 1 means faster than the library op. The compiled step beats "
            f"it in {wins} of {n} op/size rows and beats the from-scratch eager code in {ref_wins} of {n}. The "
            "reference rows' *max |Δ|* is 0 by construction (they are what the others are compared with), and "
            "their ATen op counts against the library's ("
            + ", ".join(f"{op} {a} vs {b}" for op, (a, b) in ops.items())
            + ") are the trips through memory that fusion removes.")


def conclude(ctx, res, compile_rows, bw) -> dict:
    """The "when to fuse" conclusion, computed from the measurements."""
    lines, metrics = [], {}
    for op in [o for o in OPS if any(k[0] == o for k in res)]:
        sizes = sorted(r for o, r in res if o == op)
        out, cname, _, flops, compulsory = res[(op, sizes[-1])]
        speed = {n: [res[(op, r)][0][n]["timing"].mean / res[(op, r)][0][cname]["timing"].mean for r in sizes]
                 for n in ("reference (eager)", "torch eager")}
        span = {n: f"{min(v):.2f}–{max(v):.2f}×" if len(v) > 1 else f"{v[0]:.2f}×" for n, v in speed.items()}
        traffic = {n: out[n]["bytes"] / compulsory for n in speed}
        gflops = flops / out["torch eager"]["timing"].mean / 1e9
        bound = (f"{flops / compulsory:.1f} FLOP per compulsory byte against this machine's ridge of "
                 f"≈{gflops / bw:.1f} (eager {gflops:.1f} GFLOP/s ÷ {bw:.1f} GB/s copy), so "
                 f"{'compute' if flops / compulsory > gflops / bw else 'memory'}-bound" if flops else
                 "no matmul FLOPs (a few arithmetic operations per 4-byte element), so memory-bound")
        even = [c for c in compile_rows if c["op"] == op][-1]
        pay = (f"the {even['compile time (s)']} s compile is repaid after {even['break-even steps vs torch eager']} "
               "steps against the library op" if even["break-even steps vs torch eager"] != "never"
               else "compiling never pays back against the library op")
        lines.append(f"- **{op}**: fused = {span['reference (eager)']} the speed of the from-scratch eager code "
                     f"(which moves {traffic['reference (eager)']:.1f}× the compulsory bytes) and "
                     f"{span['torch eager']} that of the eager library ops ({traffic['torch eager']:.1f}×); "
                     f"{bound}; at {sizes[-1] * ctx.cfg.feature_dim:,} elements the fused step moves its compulsory "
                     f"bytes at {100 * compulsory / out[cname]['timing'].mean / 1e9 / bw:.0f}% of the copy bandwidth "
                     f"and {pay}.")
        metrics[f"{op}_break_even_steps"] = even["break-even steps vs torch eager"]
    ctx.deliverable.section("When to fuse (computed)")
    ctx.deliverable.text("\n".join(lines))
    return metrics


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
