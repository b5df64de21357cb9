"""Day 36: RoPE vs ALiBi, revisited: the rotation maths checked in numbers, and copying at up to 32x the
training length.

Day 9 (days/day09) trained every position scheme for 600 steps at 64 tokens and scored it at 1, 2 and
4x that length. This day reuses its machinery (`common/lab/positions.py`: the same model, the same
copy task at a random offset) but trains 5x longer, to give ALiBi the time to learn to copy, and scores
far further out: up to 2048 tokens, with the example at the end and only filler before it. Around that
experiment it computes the maths of the two schemes:
  * RoPE: the per-pair wavelengths 2 pi base^(2i/d) against the training length; a check that
    <R_m q, R_n k> depends on m - n only (in float64, float32 and bfloat16 angles); and how a score can
    change with distance (RoFormer's bound, and the score of a key that equals the query);
  * ALiBi: each head's factor exp(-m_h * distance) on the softmax weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from common.lab.positions import copy_accuracy_at, train_copy
from common.nn.positional import alibi_slopes, apply_rope
from common.run import plotting, runner

DAY = 36
KEY_METRICS = ["copy_acc_rope_2048", "copy_acc_alibi_2048", "copy_kept_rope", "copy_kept_alibi", "best_at_longest",
               "rope_offset_err_f32"]
METRIC_KINDS = {"rope_offset_err_*": ("tolerance", 0.2)}  # float rounding of cos/sin: last digits may move


@dataclass
class Config:
    variants: str = "rope,alibi,rope:1e6,rope@600"  # pos[:rope_base][@steps]; rope_base defaults to 1e4
    train_len: int = 64              # training context, as on day 9
    eval_lens: str = "64,128,256,512,1024,2048"  # day 9 stopped at 256
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64                 # head_dim 16: 8 rotating pairs per head
    batch_size: int = 32
    copy_steps: int = 3000           # day 9's 600 left ALiBi far from copying (see its deliverable)
    lr: float = 3e-3
    copy_vocab: int = 32             # 30 symbols + separator + filler
    n_copy: int = 16                 # symbols to copy: the answer is always n_copy + 1 tokens back
    eval_examples: int = 32          # copy examples scored per length
    eval_tokens: int = 8192          # at most this many tokens per evaluation batch (bounds the T x T scores)
    eval_batches: int = 2            # fixed val batches for the training loop's own evaluation


PRESETS = {
    "nano": dict(variants="rope,alibi,rope:1e6,rope@60", train_len=16, eval_lens="16,32,64", n_layer=1, n_head=2,
                 n_embd=32, batch_size=8, copy_steps=30, n_copy=4, copy_vocab=10, eval_examples=8, eval_tokens=256,
                 eval_batches=1),
    "cpu": {},
    "gpu": dict(train_len=128, eval_lens="128,256,512,1024,2048,4096,8192", n_layer=2, n_head=8, n_embd=128,
                batch_size=64, copy_steps=5000, n_copy=32, copy_vocab=66, eval_examples=128, eval_tokens=65536),
}


def fmt_base(b):
    """10000.0 -> '10^4', 500.0 -> '500' (a string the tables do not reformat as a number)."""
    k = round(math.log10(b))
    return f"10^{k}" if b == 10.0 ** k else f"{b:g}"


def parse_variant(spec, default_steps):
    """A variant `pos[:base][@steps]` -> (pos, GPTConfig overrides, training steps, metric key).

    >>> parse_variant("rope:1e6@600", 3000)
    ('rope', {'rope_base': 1000000.0}, 600, 'rope_base1e6_600steps')
    """
    rest, _, steps = spec.partition("@")
    pos, _, base = rest.partition(":")
    over = {"rope_base": float(base)} if base else {}
    key = pos + (f"_base{base}" if base else "") + (f"_{steps}steps" if steps else "")
    return pos, over, int(steps) if steps else default_steps, key


# ----------------------------------------------------------------------------- the rotation maths


def inv_freq(head_dim, base, dtype=torch.float64):
    """theta_i = base^(-2i/head_dim), i < head_dim/2: the angle per position of pair i (as rope_cos_sin)."""
    return base ** (-torch.arange(0, head_dim, 2, dtype=dtype) / head_dim)


def rope_relative_score(q, k, delta, base=10000.0):
    """<R_m q, R_n k> for every offset m - n in `delta`, from q and k alone, without rotating anything.

    Pair i of the rotate-half layout is the complex number z_i = q[i] + i q[i + d/2] (w_i for k); R_m
    multiplies it by e^(i m theta_i), so the score is Re sum_i z_i conj(w_i) e^(i (m - n) theta_i).
    q, k (d,); delta (N,) -> (N,), in q's dtype.
    """
    # >>> exercise day36.rope_relative: Re sum_i z_i conj(w_i) exp(i delta theta_i), pairs (x[i], x[i + d/2])
    d = q.shape[-1]
    q1, q2, k1, k2 = *q.chunk(2, dim=-1), *k.chunk(2, dim=-1)  # (d/2,) each
    a, b = q1 * k1 + q2 * k2, q2 * k1 - q1 * k2  # z conj(w) = a + i b
    ang = delta.to(q.dtype)[:, None] * inv_freq(d, base, q.dtype)  # (N, d/2)
    return (a * ang.cos() - b * ang.sin()).sum(-1)  # (N,)
    # <<< exercise day36.rope_relative


def rope_decay_bound(distances, head_dim, base=10000.0):
    """RoFormer's long-term decay (its section 3.4.3), normalised to 1 at distance 0.

    With S_j = sum_{i<j} e^(i Delta theta_i), summation by parts bounds the score at offset Delta by
    max_i |h_(i+1) - h_i| * sum_{j=1}^{d/2} |S_j|; this returns (1/(d/2)) sum_j |S_j| over its value at
    Delta = 0, (d/2 + 1) / 2. distances (N,) -> (N,) float64.
    """
    # >>> exercise day36.rope_decay: mean over j of |sum_{i<j} exp(i Delta theta_i)|, divided by its value at 0
    ang = distances.double()[:, None] * inv_freq(head_dim, base)  # (N, d/2)
    partial = torch.polar(torch.ones_like(ang), ang).cumsum(-1)  # S_1 .. S_(d/2), (N, d/2) complex
    n = head_dim // 2
    return partial.abs().mean(-1) / ((n + 1) / 2)
    # <<< exercise day36.rope_decay


def matching_key_score(distances, head_dim, base=10000.0):
    """E <R_m q, R_n q> / E <q, q> for a random q (i.i.d. entries): mean_i cos(Delta theta_i).
    The score a key with the query's own content gets, Delta tokens back, relative to distance 0."""
    return (distances.double()[:, None] * inv_freq(head_dim, base)).cos().mean(-1)


def log_binned(x, y, n_bins=24):
    """(bin centres, mean of y per bin) over log-spaced bins of the positive distances x: a readable trend of a
    curve that oscillates at every step."""
    edges = torch.unique(torch.logspace(0, math.log10(x.max().item() + 1), n_bins + 1).floor())
    xs, ys = [], []
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist()):
        sel = (x >= lo) & (x < hi)
        if sel.any():
            xs.append(math.sqrt(lo * (hi - 1)))
            ys.append(y[sel].double().mean().item())
    return xs, ys


def offset_check(head_dim, length, base, angle_dtype, seed=0):
    """max over m, n < length of |<R_m q, R_n k> - rope_relative_score(q, k, m - n)| / (|q| |k|),
    with the rotation tables computed in `angle_dtype` (the model computes them in float32)."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, head_dim, generator=g, dtype=torch.float64)
    ang = torch.outer(torch.arange(length, dtype=angle_dtype), inv_freq(head_dim, base, angle_dtype))  # (L, d/2)
    cos, sin = ang.cos().double(), ang.sin().double()
    s = apply_rope(q.expand(length, -1), cos, sin) @ apply_rope(k.expand(length, -1), cos, sin).T  # (L, L)
    m = torch.arange(length)
    ref = rope_relative_score(q, k, torch.arange(-(length - 1), length))  # offsets -(L-1) .. L-1
    return ((s - ref[m[:, None] - m[None, :] + length - 1]).abs().max() / (q.norm() * k.norm())).item()


def rope_section(cfg, ctx, bases, lens):
    d, hd, L = ctx.deliverable, cfg.n_embd // cfg.n_head, lens[-1]
    d.section("RoPE: one rotation per pair of features")
    rows, slow = [], {}
    for b in bases:
        th = inv_freq(hd, b)
        for i, t in enumerate(th.tolist()):
            wl = 2 * math.pi / t
            rows.append({"base": fmt_base(b), "pair i": i, "θ_i (rad / token)": t, "wavelength 2π·base^(2i/d)": wl,
                         f"turns within {cfg.train_len} tokens": cfg.train_len / wl, f"turns within {L}": L / wl})
        slow[b] = sum(2 * math.pi / t > cfg.train_len for t in th.tolist())
    d.table(rows)
    d.text(f"What to look at: head_dim {hd} gives {hd // 2} pairs per head. A pair whose wavelength exceeds the "
           f"training length never turns through a full circle in training, so at longer distances it reaches "
           "angles the model has not seen: "
           + "; ".join(f"base {fmt_base(b)}: {n} of {hd // 2} pairs" for b, n in slow.items())
           + ". A larger base can only add pairs to that slow group: every wavelength but pair 0's grows with it.")
    errs = {dt: offset_check(hd, L, bases[0], dt) for dt in (torch.float64, torch.float32, torch.bfloat16)}
    d.table([{"angles computed in": str(dt).removeprefix("torch."),
              f"max |⟨R_m q, R_n k⟩ − f(m−n)| / (|q||k|), m, n < {L}": f"{e:.2e}"} for dt, e in errs.items()])
    d.text("f(m−n) is `rope_relative_score`: the closed form q·R_(n−m)·k, which needs no positions at all. "
           f"What to look at: with float64 tables the scores match it to {errs[torch.float64]:.0e}, so the score "
           f"is a function of the offset alone; float32 tables (what the model uses) leave {errs[torch.float32]:.1e}"
           + f", and bfloat16 tables {errs[torch.bfloat16]:.2g}, "
           + (f"{errs[torch.bfloat16] / errs[torch.float32]:,.0f}× worse" if errs[torch.bfloat16] > errs[torch.float32]
              else "no worse")
           + ": bfloat16 keeps 8 significant bits of every angle t·θ_i"
           + (f", and a position near {L} is itself rounded to a multiple of {2 ** (math.floor(math.log2(L - 1)) - 7)}."
              if L - 1 > 256 else " (positions up to 256 are still exact integers)."))
    dist = torch.arange(1, L + 1)
    series = {}
    for b in bases:
        series[f"bound, base {fmt_base(b)}"] = log_binned(dist, rope_decay_bound(dist, hd, b))
        series[f"key = query, base {fmt_base(b)}"] = log_binned(dist, matching_key_score(dist, hd, b))
    series["bound, d=128, base 10^4 (a Llama-size head)"] = log_binned(dist, rope_decay_bound(dist, 128))
    styles = {k: dict(dashes=(4, 2)) for k in series if k.startswith("key")}
    p = plotting.lines(ctx.plot_path("rope_decay"), series, "distance m − n (tokens, log scale)",
                       "relative to distance 0 (mean over log-spaced bins)",
                       f"RoPE with head_dim {hd}: how a score can change with distance", logx=True, markers=True,
                       hline=(0.0, "zero"), vline=(cfg.train_len, "training length"), styles=styles)
    d.image(p, "RoPE's long-term decay: RoFormer's bound on |score| and the expected score of a key equal to the "
            "query, each averaged over bins of distance (the raw curves oscillate with the fast pairs)")
    b0 = rope_decay_bound(dist, hd, bases[0])
    half = next((int(x) for x, v in zip(dist, b0) if v < 0.5), None)
    far = slice(cfg.train_len - 1, L)  # distances from the training length on
    wide = rope_decay_bound(dist, 128)[far].mean() < b0[far].mean()
    mk = matching_key_score(dist, hd, bases[0])
    neg = {b: next((int(x) for x, v in zip(dist, matching_key_score(dist, hd, b)) if v < 0), None) for b in bases}
    d.text(f"What to look at: the solid lines are RoFormer's bound (how large a score can be at that distance, for "
           f"content of bounded variation); for this model (base {fmt_base(bases[0])}) it is "
           f"{b0[cfg.train_len - 1]:.2f} at "
           f"the training length and {b0[-1]:.2f} at {L}, "
           + (f"first below half at distance {half}." if half else f"never below half within {L} tokens.")
           + f" The dashed lines are the expected score of a key identical to the query: it is "
           f"{mk[cfg.train_len - 1]:.2f} at the training length and {mk[-1]:.2f} at {L}, against "
           f"{mk.min():.2f} at its lowest: with {hd // 2} pairs the decay is not monotone. "
           + "It first drops below 0 (where a key equal to the query scores below an unrelated one, on average) at "
           + ", ".join(f"distance {neg[b]} for base {fmt_base(b)}" if neg[b] else f"no distance up to {L} for base "
                       f"{fmt_base(b)}" for b in bases) + "."
           + " Beyond the training "
           f"length the bound of the 128-wide head (64 pairs) is on average {'lower' if wide else 'not lower'} than "
           f"this model's" + (": more pairs average out more." if wide else "."))
    return {f"rope_slow_pairs_base{b:.0f}": slow[b] for b in bases} | {
        f"rope_key_query_negative_at_base{b:.0f}": neg[b] or 0 for b in bases} | {
        "rope_offset_only_f64": errs[torch.float64] < 1e-12,  # rounding-level: its digits vary between machines
        "rope_offset_err_f32": float(f"{errs[torch.float32]:.4g}"),
        "rope_offset_err_bf16": float(f"{errs[torch.bfloat16]:.4g}")}


def alibi_section(cfg, ctx, lens):
    d, L, gap = ctx.deliverable, lens[-1], cfg.n_copy + 1
    d.section("ALiBi: a fixed distance penalty per head")
    slopes = alibi_slopes(cfg.n_head)
    d.table([{"head": h, "slope m_h": m, "half-weight distance ln2/m_h": math.log(2) / m,
              f"e^(−m·{gap}) (copy distance)": math.exp(-m * gap),
              f"e^(−m·{cfg.train_len})": math.exp(-m * cfg.train_len), f"e^(−m·{L})": math.exp(-m * L)}
             for h, m in enumerate(slopes)])
    d.text(f"What to look at: the slopes are fixed by the head count ({cfg.n_head} heads; `alibi_slopes`, a "
           "geometric sequence): no parameters, nothing learned. So the half-weight distances run from "
           f"{math.log(2) / slopes[0]:.1f} to "
           f"{math.log(2) / slopes[-1]:.0f} tokens; the last three columns are the factor at the distance the copy "
           f"answer sits, at the training length and at the longest evaluation length.")
    dist = torch.arange(1, L + 1).double()
    p = plotting.lines(ctx.plot_path("alibi_factor"),
                       {f"head {h}, m = 1/{1 / m:g}": (dist.tolist(), (-m * dist).exp().tolist())
                        for h, m in enumerate(slopes)}, "distance i − j (tokens, log scale)",
                       "factor e^(−m_h·distance) on the softmax weight", "ALiBi: what each head's bias does",
                       logx=True, vline=[(gap, f"copy distance ({gap})"), (cfg.train_len, "training length")])
    d.image(p, "ALiBi multiplies a key's softmax weight by e^(−m_h·distance): one soft window per head")
    keep = [h for h, m in enumerate(slopes) if math.exp(-m * gap) > 0.5]
    d.text(f"What to look at: the bias −m_h·(i−j) adds to the score, so it multiplies a key's unnormalised weight "
           f"by e^(−m_h·distance). The copy answer sits {gap} tokens back, where "
           + (f"head(s) {', '.join(map(str, keep))} keep more than half the weight" if keep else
              "every head has cut the weight below half")
           + f"; the steepest head halves it every {math.log(2) / slopes[0]:.1f} tokens. At {L} tokens the flattest "
           f"head still gives {math.exp(-slopes[-1] * L):.2g} of the weight, so in a long window of filler its "
           "attention is spread over many more keys than in training.")
    return {"alibi_heads_reaching_copy": len(keep)}


# ----------------------------------------------------------------------------- the copy task at long lengths


def eval_plan(length, examples, max_tokens):
    """(batch size, number of batches) that score at least `examples` examples of `length` tokens with
    at most `max_tokens` tokens per batch (at least one example per batch)."""
    bs = max(1, min(examples, max_tokens // length))
    return bs, -(-examples // bs)


def tied_best(acc, L):
    """The variant key(s) with the highest accuracy at length L, '+'-joined when tied; 'none' if none ran at L."""
    scores = {k: a[L] for k, a in acc.items() if L in a}
    return "+".join(k for k, v in scores.items() if v == max(scores.values())) or "none"


def copy_section(cfg, ctx, variants, lens):
    res, info = {}, {}
    for spec in variants:
        pos, over, steps, key = parse_variant(spec, cfg.copy_steps)
        t0 = time.perf_counter()
        model, tr = train_copy(cfg, ctx, pos, steps, tag=f"copy/{key}", **over)
        t1 = time.perf_counter()
        res[key] = {L: None if pos == "learned" and L > cfg.train_len else
                    copy_accuracy_at(model, L, cfg.n_copy, cfg.copy_vocab,
                                     *eval_plan(L, cfg.eval_examples, cfg.eval_tokens)[::-1], device=ctx.device)
                    for L in lens}
        info[key] = (spec, tr.train_log["loss"][-1], t1 - t0, time.perf_counter() - t1, steps, over, pos)
        for L, v in res[key].items():
            if v is not None:
                ctx.tracker.log(f"copy/{key}/eval", v[0], L)
    d, chance = ctx.deliverable, 1 / (cfg.copy_vocab - 2)
    d.section("Copy accuracy at up to " + f"{lens[-1] // cfg.train_len}x the training length")
    d.text(f"{cfg.n_copy} symbols from {cfg.copy_vocab - 2} (chance ≈ {chance:.3f}); every variant trains at "
           f"{cfg.train_len} tokens from the same initial weights on the same batches, for {cfg.copy_steps} steps "
           "unless its name ends in @steps (day 9 trained 600). A variant is `pos[:rope_base][@steps]`. Each cell: "
           f"token accuracy / whole-copy accuracy over {cfg.eval_examples} examples placed at the end of the window.")
    d.table([{"variant": info[k][0], "steps": info[k][4],
              **{f"L={L}": "n/a" if v is None else f"{v[0]:.3f} / {v[1]:.2f}" for L, v in res[k].items()},
              "final train loss": round(info[k][1], 4), "train (s)": round(info[k][2], 1),
              "eval (s)": round(info[k][3], 1)} for k in res])
    acc = {k: {L: v[0] for L, v in r.items() if v is not None} for k, r in res.items()}  # token accuracy
    L1, Lm = lens[0], lens[-1]
    learned = [k for k in res if acc[k].get(L1, 0) >= 0.9]
    drop = {k: next((L for L, a in acc[k].items() if a < acc[k][L1] / 2), None)
            for k in learned}  # the first length below half the training-length accuracy
    d.text("What to look at: the first column is the training length, where "
           + (f"{', '.join(info[k][0] for k in learned)} copy (token accuracy ≥ 0.9)" if learned else
              "no variant reaches 0.9") + "; everything right of it has filler at positions and distances beyond "
           "training. " + " ".join(f"{info[k][0]} falls below half its training-length accuracy at L={L}." if L else
                                   f"{info[k][0]} stays above half of it up to L={lens[-1]}." for k, L in drop.items())
           + " The examples per length are fixed, so the tokens scored grow with L and the attention work with L².")
    series = {info[k][0]: (list(acc[k]), list(acc[k].values())) for k in res}
    p = plotting.lines(ctx.plot_path("copy_accuracy_vs_length"), series, "evaluation length (tokens, log scale)",
                       "copy token accuracy", f"Copy task, trained at {cfg.train_len} tokens, scored at the end of L",
                       logx=True, markers=True, hline=(chance, "chance"),
                       vline=[(cfg.train_len, "training length"), (4 * cfg.train_len, "day 9's longest (4x)")])
    d.image(p, "RoPE vs ALiBi: copy accuracy vs evaluation length")
    d.text("What to look at: " + "; ".join(
        f"{name} goes from {y[0]:.3f} at {x[0]} to {y[-1]:.3f} at {x[-1]}"
        + (f" (keeps {y[-1] / y[0]:.0%} of it)" if y[0] >= 0.9 else " (only partly learned at the training length)"
           if y[0] > 2 * chance else " (never learned the task)")
        for name, (x, y) in series.items()) + ".")
    out = {f"copy_acc_{k}_{L}": round(a, 4) for k in res for L, a in acc[k].items()}
    longs = [k for k in res if Lm in acc[k]]
    best = max(longs, key=lambda k: acc[k][Lm]) if longs else "none"
    out["best_at_train_len"] = tied_best(acc, L1)
    out["best_at_longest"] = tied_best(acc, Lm)
    out |= {f"copy_kept_{k}": round(acc[k][Lm] / acc[k][L1], 4) for k in longs if acc[k].get(L1, 0) > 0}
    ropes = {k: info[k][5].get("rope_base", 10000.0) for k in learned if info[k][6] == "rope"}
    dist, hd = torch.arange(1, Lm + 1), cfg.n_embd // cfg.n_head
    neg = {b: next((int(x) for x, v in zip(dist, matching_key_score(dist, hd, b)) if v < 0), None)
           for b in set(ropes.values())}
    d.text(f"**Observation.** Best at {L1} tokens: {out['best_at_train_len']}; best at {Lm}: {out['best_at_longest']}"
           + (f" ({acc[best][Lm]:.3f})." if longs else ".")
           + (" For the RoPE variants, the first length below half the training-length accuracy, next to the "
              "distance where a key equal to the query first scores below an unrelated one on average (Men et al. "
              "2024 tie the usable context to that distance): " + "; ".join(
                  f"{info[k][0]}: {drop[k] or f'none up to {Lm}'} vs {neg[b] or f'none up to {Lm}'}"
                  for k, b in ropes.items()) + "." if ropes else ""))
    return out


def main(cfg: Config, ctx: runner.Context) -> dict:
    variants = cfg.variants.split(",")
    lens = [int(x) for x in cfg.eval_lens.split(",")]
    bases = list(dict.fromkeys(parse_variant(v, 0)[1].get("rope_base", 10000.0) for v in variants
                               if v.startswith("rope"))) or [10000.0]
    metrics = rope_section(cfg, ctx, bases, lens)
    metrics |= alibi_section(cfg, ctx, lens)
    metrics |= copy_section(cfg, ctx, variants, lens)
    return metrics


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
