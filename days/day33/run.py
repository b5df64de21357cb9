"""Day 33: long sequences — what attention costs from 512 to 8k tokens (32k on a GPU), and three ways around it.

Three measurements, one process, variants interleaved (`common.lab.bench.compare`):
1. the attention op alone, forward and forward + backward, at (B, H, T, D) with B*T fixed: softmax
   attention written out (`attention_reference`, (B, H, T, T) scores) and fused (`attention_sdpa`), a
   sliding window with global tokens as a mask over the full scores and as a band
   (`sliding_window_attention`), and linear attention in its quadratic and its chunked form;
2. a whole small GPT (RoPE, so any length runs) with each attention: training and prefill tokens/s vs T;
3. the crossover: the closed-form FLOPs (`flops_per_token`) say attention's share of a forward pass
   passes one half at T* ≈ 6C (≈ 2T* for a kernel that skips the masked half; `causal_skip` measures
   whether SDPA does); the measured share is layers x the op's time / the model's time;
4. what a long context keeps in memory, in closed form: KV cache, ring buffer, linear-attention state.
Paths that materialise (B, H, T, T) tensors are skipped where their estimated peak passes the budget.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from common.lab import bench
from common.nn.attention import (
    attention_reference,
    attention_sdpa,
    linear_attention,
    linear_attention_reference,
    sliding_window_attention,
    window_mask,
)
from common.nn.kv_cache import kv_cache_bytes
from common.nn.model import GPT, attention_flops_per_token, flops_per_token, gpt_config
from common.run import plotting, runner
from common.run.errors import UserError
from common.run.tracking import progress

DAY = 33
KEY_METRICS = ["linear_attn_speedup", "linear_vs_sdpa_speedup", "banded_vs_mask_speedup", "predicted_crossover_T",
               "measured_crossover_T"]
# Clock-measured (or clock-chosen) numbers move with the machine's load; peak memory is sampled by a thread.
METRIC_KINDS = {"*_speedup": "timing", "measured_crossover_T": "timing", "sdpa_causal_time_ratio": "timing",
                "train_tokens_per_s_*": "timing", "prefill_tokens_per_s_*": "timing", "manual_fwd_peak_mib": "timing"}
# (forward, train) float32 (B, H, T, T) tensors alive at the peak, measured once with bench.PeakMemory on
# the CPU: written-out softmax keeps scores, masked scores, exps and weights (7 with autograd's saved
# ones); the quadratic form of linear attention keeps its kernel matrix before and after masking.
SCORE_COPIES = {"softmax, manual": (4, 7), "linear, quadratic form": (2, 2)}


@dataclass
class Config:
    seq_lens: str = "512,1024,2048,4096,8192"  # the seed's lengths
    target_len: int = 4096       # where the curriculum's linear-attention speed-up is read
    tokens: int = 4096           # B*T per call, B = max(1, tokens // T): tokens/s compare across T
    n_layer: int = 2             # the model of part 2 (and C of the crossover)
    n_head: int = 4
    n_embd: int = 128            # head_dim 32, day 3's attention shape
    vocab_size: int = 65         # random character ids: speed does not depend on the text
    window: int = 256            # sliding window: each query sees its last `window` keys ...
    n_global: int = 4            # ... and the first n_global tokens
    chunk: int = 64              # linear attention's chunk length
    rounds: int = 3              # interleaved timing rounds -> median
    min_time_s: float = 0.05     # each round times calls for at least this long
    mem_budget_mib: int = 1536   # cap on the estimated (B, H, T, T) tensors of the materialising paths


PRESETS = {"nano": dict(seq_lens="64,128,256", target_len=128, tokens=256, n_layer=1, n_head=2, n_embd=32,
                        window=16, n_global=2, chunk=16, rounds=2, min_time_s=0.0),
           "cpu": {},
           "gpu": dict(seq_lens="512,1024,2048,4096,8192,16384,32768", tokens=32768, n_layer=4, n_head=8, n_embd=512,
                       window=1024, rounds=5, min_time_s=0.2, mem_budget_mib=40_000)}


def attention_ops(cfg: Config) -> dict:
    """name -> f(q, k, v): causal self-attention, five ways (q, k, v: (B, H, T, D))."""
    w, g = cfg.window, cfg.n_global
    return {"softmax, manual": lambda q, k, v: attention_reference(q, k, v, is_causal=True),
            "softmax, SDPA": lambda q, k, v: attention_sdpa(q, k, v, is_causal=True),
            f"window {w}+{g}, mask (SDPA)": lambda q, k, v: attention_sdpa(
                q, k, v, mask=window_mask(q.shape[-2], q.shape[-2], w, g, q.device)),
            f"window {w}+{g}, banded": lambda q, k, v: sliding_window_attention(q, k, v, w, g),
            "linear, quadratic form": lambda q, k, v: linear_attention_reference(q, k, v),
            "linear, chunked": lambda q, k, v: linear_attention(q, k, v, cfg.chunk)}


def over_budget(copies: float, B: int, H: int, T: int, budget_mib: float) -> str | None:
    """A skip reason when `copies` float32 (B, H, T, T) tensors would pass the budget, else None."""
    need = copies * B * H * T * T * 4 / 2**20
    return f"skipped: ≈{need:,.0f} MiB of (B,H,T,T) tensors > {budget_mib:,} MiB" if need > budget_mib else None


def timed(calls: dict, cfg: Config, dev) -> dict:
    """{name: {"t": median seconds per call, "peak_mib": rise of one call}} for callables, interleaved."""
    rows = {}
    for name, call in calls.items():
        with bench.PeakMemory(dev) as mem:  # the first call, which also warms up
            call()
        rows[name] = {"peak_mib": bench.mib(mem.delta_bytes)}
    for name, t in bench.compare(calls, rounds=cfg.rounds, repeats=1, warmup=0, device=dev, per_round=True,
                                 min_time=cfg.min_time_s).items():
        rows[name]["t"] = t.median
    return rows


def bench_ops(cfg: Config, ctx, T: int, train: bool) -> dict:
    """Part 1 at one length: {op: row}, a row with "t" and "peak_mib", or with "skip"."""
    B, H, D = max(1, cfg.tokens // T), cfg.n_head, cfg.n_embd // cfg.n_head
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(B, H, T, D, generator=g).to(ctx.device).requires_grad_(train) for _ in range(3))
    rows, calls = {}, {}
    for name, fn in attention_ops(cfg).items():
        skip = over_budget(SCORE_COPIES.get(name, (0, 0))[train], B, H, T, cfg.mem_budget_mib)
        if skip:
            rows[name] = {"skip": skip}
            continue

        def call(fn=fn):
            if train:
                fn(q, k, v).sum().backward()
                q.grad = k.grad = v.grad = None
            else:
                with torch.no_grad():
                    fn(q, k, v)
        calls[name] = call
    rows.update(timed(calls, cfg, ctx.device))
    return {n: {**rows[n], "B": B, "T": T} for n in attention_ops(cfg)}


def causal_skip(cfg: Config, ctx, T: int) -> float:
    """Time of SDPA's causal call over its full (unmasked) call at length T: about 1/2 if the kernel skips
    the blocks above the diagonal, about 1 if it computes them and masks."""
    B, H, D = max(1, cfg.tokens // T), cfg.n_head, cfg.n_embd // cfg.n_head
    q, k, v = (torch.randn(B, H, T, D, generator=torch.Generator().manual_seed(T)).to(ctx.device) for _ in range(3))
    with torch.no_grad():
        t = timed({c: (lambda c=c: attention_sdpa(q, k, v, is_causal=c)) for c in (True, False)}, cfg, ctx.device)
    return t[True]["t"] / t[False]["t"]


def model_variants(cfg: Config) -> dict:
    """name -> GPTConfig: the same RoPE model with softmax (fused / written out), window or linear attention."""
    base = dict(vocab_size=cfg.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                block_size=max(int(t) for t in cfg.seq_lens.split(",")), pos="rope")
    return {"softmax, SDPA": gpt_config("baby", **base),
            "softmax, manual": gpt_config("baby", **base, attn_backend="manual"),
            f"window {cfg.window}+{cfg.n_global}": gpt_config("baby", **base, window=cfg.window, n_global=cfg.n_global),
            "linear": gpt_config("baby", **base, attn="linear")}


def bench_models(cfg: Config, ctx, T: int) -> dict:
    """Part 2 at one length: {variant: {"train": row, "prefill": row}} (a row as in `bench_ops`)."""
    B = max(1, cfg.tokens // T)
    g = torch.Generator().manual_seed(T)
    x = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g).to(ctx.device)
    out, calls = {}, {}
    for name, mcfg in model_variants(cfg).items():
        torch.manual_seed(ctx.seed)
        model = GPT(mcfg).to(ctx.device)
        opt = model.configure_optimizer(0.1, 1e-4, device_type=ctx.device.type)
        copies = SCORE_COPIES["softmax, manual"] if mcfg.attn_backend == "manual" else (0, 0)
        out[name] = {}
        for mode, n_copies in (("prefill", copies[0]), ("train", copies[1] * cfg.n_layer)):
            skip = over_budget(n_copies, B, cfg.n_head, T, cfg.mem_budget_mib)
            if skip:
                out[name][mode] = {"skip": skip}
            elif mode == "prefill":
                calls[(name, mode)] = lambda m=model: _prefill(m, x[:, :-1])
            else:
                calls[(name, mode)] = lambda m=model, o=opt: _train_step(m, o, x)
    for (name, mode), row in timed(calls, cfg, ctx.device).items():
        out[name][mode] = row
    return {n: {mode: {**row, "B": B, "T": T} for mode, row in modes.items()} for n, modes in out.items()}


def _prefill(model, idx):
    model.eval()
    with torch.no_grad():
        model(idx)


def _train_step(model, opt, x):
    model.train()
    model(x[:, :-1], x[:, 1:])[1].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def crossover_length(mcfg) -> float:
    """The context T* at which attention's forward FLOPs (scores + weighted sum, all T keys) equal the rest.

    Per token, the forward is a constant (2 FLOPs per matmul weight) plus L x attention_flops_per_token,
    which is linear in T for softmax attention (4 T C per layer): T* = constant / (L x 4 C) ≈ 6C
    (12 C^2 weights per layer) plus V / (2 L) for the output head.
    """
    per_key = mcfg.n_layer * attention_flops_per_token(mcfg, 1)
    rest = flops_per_token(mcfg, 1, training=False) - per_key
    return rest / per_key


def attention_share(mcfg, T: int, keys_fraction: float = 1.0) -> float:
    """Attention's fraction of the forward FLOPs per token at context T, when `keys_fraction` of the keys
    are computed (1: every key, as `flops_per_token` counts; 1/2: a causal kernel that skips the masked half)."""
    attn = keys_fraction * mcfg.n_layer * attention_flops_per_token(mcfg, T)
    return attn / (flops_per_token(mcfg, T, training=False) - (1 - keys_fraction) * mcfg.n_layer
                   * attention_flops_per_token(mcfg, T))


def log_crossing(xs, ys, level=0.5):
    """The first x where the piecewise-linear (in log x) curve through (xs, ys) reaches `level`, or None."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if y0 < level <= y1:
            f = (level - y0) / (y1 - y0)
            return math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0)))
    return None


def same_results(cfg: Config, T: int) -> dict:
    """The fast forms against their references on one seeded batch: max |difference| of each pair."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, cfg.n_head, T, cfg.n_embd // cfg.n_head, generator=g) for _ in range(3))
    masked = attention_reference(q, k, v, mask=window_mask(T, T, cfg.window, cfg.n_global))
    banded = sliding_window_attention(q, k, v, cfg.window, cfg.n_global)
    lin = linear_attention(q, k, v, cfg.chunk) - linear_attention_reference(q, k, v)
    return {"banded vs masked": (banded - masked).abs().max().item(), "chunked vs quadratic": lin.abs().max().item()}


def tok_s(row) -> float:
    return row["B"] * row["T"] / row["t"] if "t" in row else math.nan


def cell(row) -> str:
    return f"{tok_s(row):,.0f}" if "t" in row else "skipped"


def trend(ratio: float) -> str:
    """Words for a change in tokens/s over the sweep (a quadratic op at fixed B*T falls as 1/T)."""
    return "falls" if ratio < 0.7 else "rises" if ratio > 1.4 else "stays about level"


def slope(ts, ys) -> float | None:
    """Exponent p of tokens/s ∝ T^p between the first and last measured length (None if fewer than 2)."""
    pts = [(t, y) for t, y in zip(ts, ys) if y == y]
    if len(pts) < 2:
        return None
    (t0, y0), (t1, y1) = pts[0], pts[-1]
    return math.log(y1 / y0) / math.log(t1 / t0)


def write_ops(d, ctx, cfg, ops, seq_lens, plot_path) -> None:
    names = list(attention_ops(cfg))
    for mode, title in (("forward", "forward (no grad)"), ("train", "forward + backward")):
        res = ops[mode]
        d.section(f"The attention op, {title}: tokens/s")
        d.table([{"op": n, **{f"T={T}": cell(res[T][n]) for T in seq_lens}} for n in names])
        sl = {n: slope(seq_lens, [tok_s(res[T][n]) for T in seq_lens]) for n in names}
        quad = [f"{n} ({sl[n]:+.2f})" for n in names if sl[n] is not None and sl[n] < -0.6]
        flat = [f"{n} ({sl[n]:+.2f})" for n in names if sl[n] is not None and sl[n] >= -0.6]
        Tm = seq_lens[-1]
        best = max((n for n in names if "t" in res[Tm][n]), key=lambda n: tok_s(res[Tm][n]))
        d.text("What to look at: with B·T fixed, a quadratic op's time per call grows as B·T² = tokens·T, so its "
               "tokens/s fall as 1/T (exponent −1 from the first to the last length measured), while a linear "
               "op's stay flat (exponent 0). Measured exponents: "
               + (f"falling like 1/T: {', '.join(quad)}" if quad else "none falls like 1/T")
               + (f"; flat or slowly falling: {', '.join(flat)}" if flat else "")
               + f". At T={Tm} the fastest is **{best}** ({cell(res[Tm][best])} tokens/s).")
        if mode == "forward":
            series = {n: (seq_lens, [tok_s(res[T][n]) for T in seq_lens]) for n in names
                      if any("t" in res[T][n] for T in seq_lens)}
            p = plotting.lines(plot_path, series, "sequence length T (tokens, log scale)", "tokens/s (log scale)",
                               f"Causal attention forward, {cfg.n_head} heads x {cfg.n_embd // cfg.n_head}, "
                               f"B·T = {cfg.tokens}", logx=True, logy=True, markers=True,
                               xticks=(seq_lens, seq_lens))
            d.image(p, "forward tokens/s of each attention op vs sequence length (median of interleaved rounds)")
            T0, (wm, wb) = seq_lens[0], (f"window {cfg.window}+{cfg.n_global}, {k}" for k in ("mask (SDPA)", "banded"))
            ch = {n: tok_s(res[Tm][n]) / tok_s(res[T0][n]) for n in ("softmax, SDPA", "linear, chunked", wm, wb)}
            lin, sm = (tok_s(res[Tm][n]) for n in ("linear, chunked", "softmax, SDPA"))
            sd_, li_ = ch["softmax, SDPA"], ch["linear, chunked"]
            d.text(f"What to look at: from T={T0} to T={Tm} the fused softmax line (SDPA) {trend(sd_)} "
                   f"(x{sd_:.2f} in tokens/s) and the chunked linear line {trend(li_)} (x{li_:.2f}); "
                   f"at T={Tm} linear runs at {lin / sm:.2f}x SDPA's tokens/s"
                   + (" (it has overtaken it)" if lin > sm else " (still behind)") + ". Of the two windows, the mask "
                   f"version, which computes every score and then hides most of them, {trend(ch[wm])} (x{ch[wm]:.2f}), "
                   f"and the banded one, which computes only its band, {trend(ch[wb])} (x{ch[wb]:.2f}).")
    d.text("Peak memory rise of one call, MiB (forward / forward + backward), sampled as the process's resident "
           "size" + (" on the CPU (0 = no rise the sampler saw)" if ctx.device.type == "cpu" else "") + ":")
    d.table([{"op": n, **{f"T={T}": " / ".join(f"{ops[m][T][n]['peak_mib']:,.0f}" if "t" in ops[m][T][n] else "—"
                                               for m in ("forward", "train")) for T in seq_lens}} for n in names])
    fw = ops["forward"]

    def last(name):  # (T, peak MiB, estimated MiB of its (B,H,T,T) copies) at the longest length it ran
        T = max(T for T in seq_lens if "t" in fw[T][name])
        return T, fw[T][name]["peak_mib"], SCORE_COPIES[name][0] * fw[T][name]["B"] * cfg.n_head * T * T * 4 / 2**20
    (Tm_, pm, em), (Tq, pq, eq) = last("softmax, manual"), last("linear, quadratic form")
    wm, Tm = f"window {cfg.window}+{cfg.n_global}, mask (SDPA)", seq_lens[-1]
    small = max(ops[m][T][n]["peak_mib"] for m in ops for T in seq_lens
                for n in ("softmax, SDPA", f"window {cfg.window}+{cfg.n_global}, banded", "linear, chunked"))
    d.text(f"What to look at: the written-out softmax rises to {pm:,.0f} MiB at T={Tm_}, against ≈{em:,.0f} MiB "
           f"estimated for {SCORE_COPIES['softmax, manual'][0]} float32 (B,H,T,T) tensors, and the quadratic form "
           f"of linear attention to {pq:,.0f} MiB at T={Tq} (≈{eq:,.0f} estimated): at fixed B·T such a tensor grows "
           f"in proportion to T, and both are skipped where the estimate passes the budget. The mask version rises "
           f"to {fw[Tm][wm]['peak_mib']:,.0f} MiB at T={Tm}, {fw[Tm][wm]['peak_mib'] * 2**20 / Tm ** 2:.1f} bytes "
           "per (T,T) entry: one mask shared by every head and sequence, and the working copies made of it, "
           f"quadratic in T but not multiplied by B·H. Fused softmax, banded window and chunked linear attention "
           f"never rise above {small:,.0f} MiB: they keep no T x T tensor at all.")


def write_models(d, cfg, models, seq_lens, plot_path) -> None:
    names = list(model_variants(cfg))
    d.section("A whole model: training and prefill tokens/s vs T")
    d.text(f"GPT with RoPE, {cfg.n_layer} layers x {cfg.n_embd} wide, {cfg.n_head} heads, vocabulary {cfg.vocab_size} "
           f"(random token ids), float32, B = max(1, {cfg.tokens} // T). Train = forward + backward + AdamW step; "
           f"prefill = one forward without grad over the whole sequence. The window model uses its band when "
           f"T > 2 x window = {2 * cfg.window}, else its mask.")
    d.table([{"model": n, "measure": what, **{f"T={T}": (cell(models[T][n][mode]) if key == "tok" else
                                                       (f"{models[T][n][mode]['peak_mib']:,.0f}"
                                                        if "t" in models[T][n][mode] else "—")) for T in seq_lens}}
             for n in names for mode, key, what in (("train", "tok", "train tokens/s"),
                                                    ("prefill", "tok", "prefill tokens/s"),
                                                    ("train", "mem", "train peak MiB"))])
    Tm = seq_lens[-1]
    tr = {n: tok_s(models[Tm][n]["train"]) for n in names}
    ran = {n: v for n, v in tr.items() if v == v}
    first = {n: tok_s(models[seq_lens[0]][n]["train"]) for n in names}
    sm = "softmax, SDPA"
    keep = {n: ran[n] / first[n] for n in ran}
    d.text(f"What to look at: from T={seq_lens[0]} to T={Tm} the softmax (SDPA) model keeps {keep[sm]:.0%} of its "
           "training tokens/s" + "".join(f", {n} keeps {keep[n]:.0%}" for n in ran if n != sm)
           + f". At T={Tm} the fastest to train is **{max(ran, key=ran.get)}**"
           + "".join(f"; {n} is skipped there (its (B,H,T,T) tensors pass the budget)" for n in names if n not in ran)
           + ". The MLP and projections cost the same per token at every T: only attention's share changes.")
    series, styles = {}, {}
    for i, n in enumerate(names):
        for mode in ("train", "prefill"):
            ys = [tok_s(models[T][n][mode]) for T in seq_lens]
            if any(y == y for y in ys):  # one colour per model, prefill dashed
                series[f"{n}, {mode}"] = (seq_lens, ys)
                styles[f"{n}, {mode}"] = dict(color=f"C{i}", **({"dashes": (4, 2)} if mode == "prefill" else {}))
    p = plotting.lines(plot_path, series, "sequence length T (tokens, log scale)", "tokens/s (log scale)",
                       "Whole-model tokens/s: train (solid) and prefill (dashed)", logx=True, logy=True,
                       markers=True, styles=styles, xticks=(seq_lens, seq_lens))
    d.image(p, "training and prefill tokens/s of the same model with four attentions")
    pre = {n: tok_s(models[Tm][n]["prefill"]) for n in names}
    ratio = {n: pre[n] / tr[n] for n in names if pre[n] == pre[n] and tr[n] == tr[n]}
    above = all(r > 1 for r in ratio.values())
    bent = [n for n in ran if keep[n] < 0.7]
    quad, lin_bent = [n for n in bent if "softmax" in n], [n for n in bent if "softmax" not in n]
    d.text(f"What to look at: at T={Tm} prefill runs at " + ", ".join(f"{r:.1f}x ({n})" for n, r in ratio.items())
           + " the training tokens/s of the same model"
           + (": every dashed line sits above its solid one, since a training step also runs the backward (about "
              "twice the forward) and the optimizer. " if above else ". ")
           + (f"Training curves that fall by more than 30% over the sweep: {', '.join(bent)}"
              + (f" ({', '.join(quad)}: attention quadratic in T)" if quad else "")
              + (f" ({', '.join(lin_bent)}: attention linear in T, so the fall is overhead per chunk or a busy "
                 "machine; see the load in Setup)" if lin_bent else "") + "."
              if bent else "No training curve falls by more than 30% over the sweep."))


def write_crossover(d, cfg, ops, models, seq_lens, plot_path, skip: float) -> dict:
    """Part 3: attention's predicted (closed-form FLOPs) and measured (time) share of a forward pass."""
    mcfg, sm, L = model_variants(cfg)["softmax, SDPA"], "softmax, SDPA", cfg.n_layer
    t_star = crossover_length(mcfg)
    rows, measured = [], []
    for T in seq_lens:
        op, pre = ops["forward"][T][sm], models[T][sm]["prefill"]
        share = L * op["t"] / pre["t"] if "t" in op and "t" in pre else math.nan
        measured.append(share)
        rows.append({"T": T, "predicted, all T keys": f"{attention_share(mcfg, T):.1%}",
                     "predicted, causal half": f"{attention_share(mcfg, T, 0.5):.1%}", "measured": f"{share:.1%}",
                     f"attention ms ({L} x op)": f"{L * op.get('t', math.nan) * 1e3:.2f}",
                     "model prefill ms": f"{pre.get('t', math.nan) * 1e3:.2f}"})
    t_meas = log_crossing(seq_lens, measured)
    C, V = cfg.n_embd, cfg.vocab_size
    d.section("Where the time goes: the quadratic term against the linear ones")
    d.text(f"Per token and layer, the forward's matmuls cost 2 x 12C² FLOPs (q, k, v, output projection and a 4C "
           f"MLP) at every length, and softmax attention 4TC (scores and weighted sum over T keys), so attention "
           f"passes half of the forward at T* = 6C + V/(2L) = {6 * C} + {V / (2 * L):g} = **{t_star:,.0f}** "
           f"(`crossover_length`, from `flops_per_token`). A causal kernel that skips the masked blocks computes "
           f"about half the keys, which moves the crossing to ≈ 2T* = {2 * t_star:,.0f}. Measured share = "
           f"{L} x (time of the SDPA op at the model's B, H, T, D) / (time of the SDPA model's prefill).")
    d.table(rows)
    if t_meas is None:
        where = (f"the measured share stays {'above' if measured[0] >= 0.5 else 'below'} one half over the whole "
                 "range, so its crossing is outside it")
    else:
        near, at = min((("T*", t_star), ("2T*", 2 * t_star)), key=lambda p: abs(math.log(t_meas / p[1])))
        where = (f"the measured share crosses one half at T ≈ {t_meas:,.0f}, nearer {near} ({at:,.0f}), "
                 f"at {t_meas / at:.2f}x it")
    d.text(f"What to look at: {where}. Measured separately, SDPA's causal call takes {skip:.2f}x the time of an "
           f"unmasked one at T={cfg.target_len}, so this kernel "
           + ("skips most of the masked half: the causal-half prediction is the one it can follow (and the MFU "
              "rows at the end, which count all T keys, overstate the softmax model's utilisation). " if skip < 0.7
              else "does not skip the masked half: the all-keys prediction is the one it can follow. ")
           + "The predicted shares are FLOPs; the measured one is time, so it also "
           "weighs how fast each part runs: the fused attention kernel and the big matmuls reach different "
           "fractions of the machine's peak, and norms, RoPE and the other elementwise ops (left out of the FLOP "
           "count) add to the rest of the model.")
    series = {"predicted, all T keys": (seq_lens, [attention_share(mcfg, T) for T in seq_lens]),
              "predicted, causal half": (seq_lens, [attention_share(mcfg, T, 0.5) for T in seq_lens]),
              "measured (time)": (seq_lens, measured)}
    vlines = [(t_star, f"T* = {t_star:,.0f}"), (2 * t_star, f"2T* = {2 * t_star:,.0f}")]
    p = plotting.lines(plot_path, series, "sequence length T (tokens, log scale)", "attention's share of a forward",
                       "Attention's share of the forward pass, predicted and measured", logx=True, markers=True,
                       hline=(0.5, "half"), vline=vlines, xticks=(seq_lens, seq_lens))
    d.image(p, "attention's share of a forward pass vs T: closed-form FLOPs and measured time")
    d.text(f"What to look at: the FLOP curves rise towards 1 as 4TC outgrows 24C²; the measured one goes from "
           f"{measured[0]:.0%} at T={seq_lens[0]} to {measured[-1]:.0%} at T={seq_lens[-1]}, "
           f"{'above' if measured[-1] > attention_share(mcfg, seq_lens[-1], 0.5) else 'below'} the causal-half "
           "prediction there. Where attention is a small share, a faster attention barely moves the model's "
           "tokens/s; where it is most of the cost, the window and linear variants above pay.")
    return {"predicted_crossover_T": round(t_star), "measured_crossover_T": None if t_meas is None else round(t_meas),
            "sdpa_causal_time_ratio": round(skip, 3)}


def write_memory(d, cfg, seq_lens) -> dict:
    """What a long context keeps in memory, in closed form (batch 1, float32)."""
    var = model_variants(cfg)
    sm, win = var["softmax, SDPA"], var[f"window {cfg.window}+{cfg.n_global}"]
    hs = cfg.n_embd // cfg.n_head
    state = cfg.n_layer * cfg.n_head * (hs * hs + hs) * 4  # S (hs x hs) and z (hs) per head and layer
    mib = lambda b: b / 2**20  # noqa: E731
    rows = [{"T": T, "softmax KV cache MiB": f"{mib(kv_cache_bytes(sm, T)):.3g}",
             "window KV cache MiB (ring buffer)": f"{mib(kv_cache_bytes(win, T)):.3g}",
             "linear-attention state MiB": f"{mib(state):.3g}",
             "one layer's (H,T,T) scores MiB": f"{mib(cfg.n_head * T * T * 4):,.4g}"} for T in seq_lens]
    d.section("What a long context holds in memory (closed form, batch 1, float32)")
    d.table(rows)
    Tm = seq_lens[-1]
    d.text(f"What to look at: at T={Tm} decoding with softmax attention keeps {mib(kv_cache_bytes(sm, Tm)):.3g} MiB of "
           f"keys and values, growing by {kv_cache_bytes(sm, 1):,} bytes per token; the window keeps at most "
           f"window + n_global = {cfg.window + cfg.n_global} tokens ({mib(kv_cache_bytes(win, Tm)):.3g} MiB) at any "
           f"length; linear attention keeps a fixed state of {mib(state):.3g} MiB (a {hs}x{hs} matrix and a "
           f"{hs}-vector per head and layer). The written-out score matrix of a single layer is the quadratic one: "
           f"{mib(cfg.n_head * Tm * Tm * 4):,.4g} MiB at T={Tm}, which is why fused kernels never store it.")
    return {"kv_mib_softmax_at_max": round(mib(kv_cache_bytes(sm, Tm)), 4),
            "kv_mib_window_at_max": round(mib(kv_cache_bytes(win, Tm)), 4), "linear_state_mib": round(mib(state), 4)}


def write_target(d, ctx, cfg, ops) -> dict:
    """The curriculum's target, stated as timed: the op's forward at target_len, linear vs softmax."""
    T = cfg.target_len
    fw, tr = ops["forward"][T], ops["train"][T]
    lin, man, sd = fw["linear, chunked"], fw["softmax, manual"], fw["softmax, SDPA"]
    var = model_variants(cfg)
    flop = attention_flops_per_token(var["softmax, SDPA"], T) / attention_flops_per_token(var["linear"], T)
    speed = man["t"] / lin["t"] if "t" in man else None
    vs_sdpa = sd["t"] / lin["t"]
    vs_sdpa_train = tr["softmax, SDPA"]["t"] / tr["linear, chunked"]["t"]
    d.section(f"Target: linear attention vs softmax attention at T={T}")
    verdict = "not measured (the written-out softmax was skipped for memory)" if speed is None else \
        f"**{speed:.1f}x** (target ≥ 10: {'met' if speed >= 10 else 'missed'})"
    d.text(f"Timed: the attention op's forward pass alone (no grad), causal, float32, on {ctx.device.type}, at "
           f"B={lin['B']}, H={cfg.n_head}, T={T}, D={cfg.n_embd // cfg.n_head}; median over {cfg.rounds} "
           "interleaved rounds. Softmax attention is the textbook form, `attention_reference` (scores, mask, "
           f"softmax, weighted sum; {man.get('t', math.nan) * 1e3:.1f} ms per call); linear attention is "
           f"`linear_attention(chunk={cfg.chunk})` ({lin['t'] * 1e3:.1f} ms). `linear_attn_speedup` = {verdict}. "
           f"By FLOPs (all T keys against the chunked form, `attention_flops_per_token`) the ideal is {flop:.1f}x.")
    d.text(f"Against the fused softmax kernel (`F.scaled_dot_product_attention`, {sd['t'] * 1e3:.1f} ms), which "
           f"never stores the scores, linear attention is {vs_sdpa:.2f}x as fast in the "
           f"forward (`linear_vs_sdpa_speedup`) and {vs_sdpa_train:.2f}x in forward + backward. What to look at: "
           + (f"against SDPA linear attention gets less than its FLOP ratio ({flop:.1f}x, or half that against a "
              "kernel that skips the masked half), since a Python loop over chunks of small matmuls reaches a smaller "
              "fraction of the machine than one fused kernel" if 2 * vs_sdpa < flop else
              "against SDPA linear attention gets about its FLOP ratio or more")
           + (f"; against the written-out softmax it gets more than its FLOP ratio: that path writes and reads "
              f"{SCORE_COPIES['softmax, manual'][0]} (B,H,T,T) tensors, memory traffic the FLOP count does not see."
              if speed is not None and speed > flop else "."))
    out = {"linear_vs_sdpa_speedup": round(vs_sdpa, 3), "linear_vs_sdpa_train_speedup": round(vs_sdpa_train, 3),
           "attn_flop_ratio_at_target": round(flop, 3)}
    if speed is not None:
        out.update(linear_attn_speedup=round(speed, 3), sdpa_vs_manual_speedup=round(man["t"] / sd["t"], 3),
                   manual_fwd_peak_mib=round(man["peak_mib"], 1))
    return out


def main(cfg: Config, ctx: runner.Context) -> dict:
    seq_lens = sorted(int(t) for t in cfg.seq_lens.split(","))
    if cfg.target_len not in seq_lens:
        raise UserError(f"target_len={cfg.target_len} must be one of seq_lens={cfg.seq_lens}")
    ops, models = {"forward": {}, "train": {}}, {}
    for T in progress(seq_lens, desc="lengths"):
        for mode in ops:
            ops[mode][T] = bench_ops(cfg, ctx, T, mode == "train")
        models[T] = bench_models(cfg, ctx, T)
        for name, row in ops["forward"][T].items():
            if "t" in row:
                ctx.tracker.log(f"op_forward/{name.replace(' ', '_')}/tokens_per_s", tok_s(row), T)
    skip = causal_skip(cfg, ctx, cfg.target_len)
    load, same = os.getloadavg()[0], same_results(cfg, seq_lens[0])
    d = ctx.deliverable
    d.section("Setup")
    d.text(f"Causal self-attention with {cfg.n_head} heads x {cfg.n_embd // cfg.n_head} dims, float32, on "
           f"{ctx.device.type}; B = max(1, {cfg.tokens} // T): "
           + ", ".join(f"T={T}: B={max(1, cfg.tokens // T)}" for T in seq_lens)
           + f". Each time is the median over {cfg.rounds} interleaved rounds (every variant once per round, for "
           f"at least {cfg.min_time_s} s) after a warm-up call; tokens/s = B·T / time. Window: the last "
           f"{cfg.window} keys and the first {cfg.n_global} tokens; linear attention: elu+1 features, chunks of "
           f"{cfg.chunk}. Paths that store (B,H,T,T) tensors are skipped past {cfg.mem_budget_mib:,} MiB "
           f"(estimated copies at the peak, forward and train: {SCORE_COPIES}). Machine load (1-min average) at "
           f"the end of the sweep: {load:.1f} on {os.cpu_count()} cores; above the core count, other processes "
           f"share the CPU and every timing is inflated. Same results, T={seq_lens[0]}: banded window vs masked "
           f"max |diff| {same['banded vs masked']:.1e}, chunked vs quadratic linear attention "
           f"{same['chunked vs quadratic']:.1e}.")
    write_ops(d, ctx, cfg, ops, seq_lens, ctx.plot_path("op_forward_tokens_per_s"))
    metrics = write_target(d, ctx, cfg, ops)
    write_models(d, cfg, models, seq_lens, ctx.plot_path("model_tokens_per_s"))
    metrics.update(write_crossover(d, cfg, ops, models, seq_lens, ctx.plot_path("attention_share"), skip))
    metrics.update(write_memory(d, cfg, seq_lens))
    Tm, fw = seq_lens[-1], ops["forward"][seq_lens[-1]]
    band, mask = (fw[f"window {cfg.window}+{cfg.n_global}, {k}"]["t"] for k in ("banded", "mask (SDPA)"))
    metrics.update(banded_vs_mask_speedup=round(mask / band, 3),
                   window_vs_sdpa_speedup=round(fw["softmax, SDPA"]["t"] / band, 3),
                   banded_matches_mask=same["banded vs masked"] < 1e-4,
                   linear_chunked_matches_quadratic=same["chunked vs quadratic"] < 1e-4)
    for name, short in zip(model_variants(cfg), ("softmax_sdpa", "softmax_manual", "window", "linear")):
        for mode in ("train", "prefill"):
            if "t" in models[Tm][name][mode]:
                metrics[f"{mode}_tokens_per_s_{short}"] = round(tok_s(models[Tm][name][mode]), 1)
    for name in model_variants(cfg):
        row = models[cfg.target_len][name]["train"]
        if "t" in row:
            ctx.record_rate(f"{name} model, T={cfg.target_len} (timed)", tok_s(row),
                            SimpleNamespace(cfg=model_variants(cfg)[name]), cfg.target_len, "float32",
                            "float32 throughout: the day compares attentions, not precisions", cfg.rounds)
    if ctx.preset != "gpu":
        d.text(f"The `gpu` preset (lengths up to 32,768; {PRESETS['gpu']['n_layer']} layers x "
               f"{PRESETS['gpu']['n_embd']}, {PRESETS['gpu']['n_head']} heads, B·T = {PRESETS['gpu']['tokens']:,}) is "
               "pending, needs a CUDA GPU: run `make day 33 ARGS='--preset gpu'`.")
    return metrics


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
