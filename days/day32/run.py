"""Day 32: grouped-query attention (GQA) — the toggle between MHA, GQA and MQA, and the KV cache it sizes.

`GPTConfig.n_kv_head` is the one switch: n_head key/value heads is MHA, 1 is MQA, anything that
divides n_head in between is GQA, where each K/V head serves a group of n_head / n_kv_head query
heads. The run (1) checks the memory model of the KV cache, bytes = 2 · layers · kv_heads · head_dim
· seq · batch · dtype bytes (`common.nn.kv_cache.kv_cache_bytes`), against the tensors of a cache
filled by a real prefill (exactly) and against measured memory as the sequence grows (in a fresh
process, so nothing else the run allocated blurs the numbers); (2) checks that GQA with
n_kv_head = n_head is MHA bit for bit, and that any GQA model is an MHA model whose K/V heads are
repeated (`as_mha`); (3) trains every group count for the same steps and compares validation loss.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from common import data
from common.lab import bench
from common.nn.kv_cache import KVCache, kv_bytes_per_token, kv_cache_bytes
from common.nn.model import GPT, GPTConfig, count_params_formula, gpt_config_for
from common.run import plotting, runner
from common.train import evaluate, full_split_loss, train_config_for

DAY = 32
KEY_METRICS = ["kv_bytes_reduction", "kv_model_exact", "gqa_equals_mha", "gqa_equals_repeated_mha", "val_gap_gqa"]
METRIC_KINDS = {"tokens_per_s_*": "timing", "mem_*": "timing"}  # RSS / allocator readings move between runs
MiB = 2**20


@dataclass
class Config:
    n_layer: int = 4
    n_head: int = 8
    n_embd: int = 128             # head_dim 16
    n_kv_head: int = 2            # the GQA setting the target compares with MHA: groups of 4 query heads
    pos: str = "rope"             # RoPE, as GQA models use; it also lets the prefill run past block_size
    block_size: int = 64          # training context
    batch_size: int = 32
    max_iters: int = 300          # training steps, the same for every group count
    lr: float = 3e-3
    eval_interval: int = 50
    eval_iters: int = 10
    val_chars: int = 0            # characters of the val split in the final score (0 = all of it)
    mem_seqs: str = "256,512,1024,2048,4096"  # prefill lengths of the memory sweep
    mem_batch: int = 4            # sequences per prefill in the memory sweep
    context: int = 2048           # the context of the target (KV bytes of MHA / of the GQA setting)


PRESETS = {"nano": dict(n_layer=2, n_head=4, n_embd=32, block_size=32, batch_size=8, max_iters=30, lr=1e-2,
                        eval_interval=15, eval_iters=2, val_chars=4_000, mem_seqs="64,128,256", mem_batch=2,
                        context=256),
           "cpu": {},
           # the seed's Shakespeare width (384) with 8 query heads of 48; GPU memory is read from the allocator
           "gpu": dict(n_layer=6, n_head=8, n_embd=384, block_size=256, batch_size=64, max_iters=2000, lr=1e-3,
                       eval_interval=250, eval_iters=20, mem_seqs="1024,2048,4096,8192,16384", mem_batch=8)}


def kv_counts(n_head: int, setting: int) -> list[int]:
    """The group counts compared: n_head (MHA), n_head/2, n_head/4, 1 (MQA) where they divide, and the setting."""
    picks = {n_head, n_head // 2, n_head // 4, 1, setting}
    return sorted((g for g in picks if g >= 1 and n_head % g == 0), reverse=True)


def attention_kind(cfg) -> str:
    """The toggle, named: MHA when every query head has its own K/V head, MQA with one, else GQA-<groups>."""
    g = cfg.n_kv_head or cfg.n_head
    return "MHA" if g == cfg.n_head else "MQA" if g == 1 else f"GQA-{g}"


def repeat_kv_heads(w: torch.Tensor, n_kv_head: int, n_rep: int) -> torch.Tensor:
    """The K (or V) rows of a qkv projection, (n_kv_head * hs, ...) -> (n_kv_head * n_rep * hs, ...).

    The rows are n_kv_head blocks of head_dim rows, one per K/V head; each block is repeated n_rep times
    in place, so the new head h is old head h // n_rep, the grouping `repeat_kv` uses on activations.
    Works for weights (rows of n_embd) and biases (1-D) alike.
    """
    # >>> exercise day32.repeat_kv_heads: rows split into K/V heads, each head repeated n_rep times in place, flattened
    heads = w.reshape(n_kv_head, -1, *w.shape[1:])  # (Hkv, hs, C) or (Hkv, hs)
    return heads.repeat_interleave(n_rep, dim=0).reshape(-1, *w.shape[1:])  # (Hkv * n_rep * hs, ...)
    # <<< exercise day32.repeat_kv_heads


def as_mha(model: GPT) -> GPT:
    """An MHA model that computes what the GQA/MQA `model` computes: each K/V head copied to every query
    head of its group. It has more parameters and an n_head / n_kv_head times bigger cache, and the same outputs."""
    cfg = model.cfg
    H, Hkv, hs = cfg.n_head, cfg.n_kv_head or cfg.n_head, cfg.n_embd // cfg.n_head
    mha = GPT(dataclasses.replace(cfg, n_kv_head=None)).to(next(model.parameters()).device)
    state = model.state_dict()
    for name, t in state.items():
        if name.endswith(("attn.qkv.weight", "attn.qkv.bias")):
            q, k, v = t.split([H * hs, Hkv * hs, Hkv * hs], dim=0)  # rows [W_q; W_k; W_v]
            state[name] = torch.cat([q, repeat_kv_heads(k, Hkv, H // Hkv), repeat_kv_heads(v, Hkv, H // Hkv)])
    mha.load_state_dict(state)
    return mha.train(model.training)


# ------------------------------------------------------------------------------- the memory sweep

def release_freed_memory() -> bool:
    """Make glibc hand every freed block of 128 KiB or more back to the OS at once (mallopt), so the
    process's resident memory follows the tensors alive. By default glibc raises that threshold after
    the first big free and then reuses freed memory without the RSS moving. False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 128 * 1024)) and bool(libc.mallopt(-1, 128 * 1024))  # MMAP_, TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


def _in_use(dev: torch.device) -> int:
    if dev.type == "cuda":
        return torch.cuda.memory_allocated(dev)
    import psutil
    return psutil.Process().memory_info().rss


def measure_kv_memory(base: dict, counts: list[int], seqs: list[int], batch: int, device: str, seed: int) -> dict:
    """For every group count and prefill length: the filled cache's tensor bytes, the rise of memory in use
    that stays after the prefill (the cache; activations are freed) and the peak rise during it.

    Runs in a fresh process (`memory_sweep`); CUDA reads the allocator, the CPU the resident set size."""
    dev = torch.device(device)
    tuned = release_freed_memory() if dev.type == "cpu" else False
    torch.manual_seed(seed)
    rows = []
    for g in counts:
        cfg = GPTConfig(**{**base, "n_kv_head": g, "block_size": max(seqs)})  # RoPE tables for max(seqs) up front
        model = GPT(cfg).to(dev).eval()
        with torch.no_grad():
            for i, T in enumerate([seqs[0]] + seqs):  # prefill 0 warms up lazy initialisation, unrecorded
                idx = torch.randint(0, cfg.vocab_size, (batch, T), device=dev)
                gc.collect()
                before = _in_use(dev)
                with bench.PeakMemory(dev) as pm:
                    cache = KVCache.for_model(model, batch, T)
                    model(idx, kv_cache=cache)
                retained = _in_use(dev) - before
                if i:
                    rows.append({"n_kv_head": g, "seq": T, "cache_bytes": cache.nbytes(), "retained": retained,
                                 "peak": pm.delta_bytes})
                del cache, idx
        del model
    return {"rows": rows, "allocator_tuned": tuned, "device": str(dev)}


def memory_sweep(*args) -> dict:
    """`measure_kv_memory` in a new process: the parent's training left its own allocations and freed
    memory behind, and the glibc setting must not leak into the parent (or into a test session)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure_kv_memory, *args).result()


# ------------------------------------------------------------------------------- training

def train_variant(g: int, cfg: Config, ctx: runner.Context, tr, va, vocab: int):
    """A model with g K/V heads from the seed, trained for cfg.max_iters steps: (model, result, val loss)."""
    mcfg = gpt_config_for(cfg, vocab_size=vocab, n_kv_head=g)
    torch.manual_seed(ctx.seed)
    model = GPT(mcfg).to(ctx.device)
    tc = train_config_for(cfg, warmup_iters=max(1, cfg.max_iters // 20))
    res = ctx.train(model, *data.split_batches(tr, va, cfg.block_size, cfg.batch_size, ctx.device), tc,
                    run=attention_kind(mcfg))
    scored = va[: cfg.val_chars] if cfg.val_chars else va
    return model, res, full_split_loss(model, scored, cfg.block_size, 256, ctx.device)


def main(cfg: Config, ctx: runner.Context) -> dict:
    counts = kv_counts(cfg.n_head, cfg.n_kv_head)
    tok, tr, va = data.char_corpus()
    mcfgs = {g: gpt_config_for(cfg, vocab_size=tok.vocab_size, n_kv_head=g) for g in counts}
    metrics = memory_report(cfg, ctx, mcfgs, counts)
    trained = {g: train_variant(g, cfg, ctx, tr, va, tok.vocab_size) for g in counts}
    metrics.update(toggle_report(cfg, ctx, mcfgs, trained, tr, va))
    metrics.update(quality_report(cfg, ctx, mcfgs, trained))
    return metrics


def memory_report(cfg: Config, ctx: runner.Context, mcfgs: dict, counts: list[int]) -> dict:
    """Section 1: the memory model against the filled cache and measured memory; the target."""
    d, dev = ctx.deliverable, ctx.device
    seqs = sorted(int(s) for s in cfg.mem_seqs.split(","))
    hs = cfg.n_embd // cfg.n_head
    mha_cfg, gqa_cfg = mcfgs[cfg.n_head], mcfgs[cfg.n_kv_head]
    at_ctx = {g: KVCache.for_model(GPT(c), 1, cfg.context).nbytes() for g, c in ((cfg.n_head, mha_cfg),
                                                                                (cfg.n_kv_head, gqa_cfg))}
    reduction = at_ctx[cfg.n_head] / at_ctx[cfg.n_kv_head]
    base = {k: v for k, v in dataclasses.asdict(mha_cfg).items() if k != "n_kv_head"}
    sweep = memory_sweep(base, counts, seqs, cfg.mem_batch, str(dev), ctx.seed)
    rows = sweep["rows"]
    for r in rows:
        r["model"] = kv_cache_bytes(mcfgs[r["n_kv_head"]], r["seq"], cfg.mem_batch)
    exact = all(r["cache_bytes"] == r["model"] for r in rows)
    d.section("The KV cache: memory model against a real prefill")
    d.text(f"Every group count of a {cfg.n_layer}-layer model with {cfg.n_head} query heads of {hs} dims "
           f"(n_embd {cfg.n_embd}, float32). Model: bytes = 2 · layers · n_kv_head · head_dim · seq · batch · 4 = "
           f"`kv_bytes_per_token(cfg)` · seq · batch, with {kv_bytes_per_token(mha_cfg):,} bytes per token for MHA. "
           f"Measured: a `KVCache` sized to the prompt, filled by one prefill of {cfg.mem_batch} random sequences "
           "through the (untrained) model, in a fresh process"
           + ("; on a CPU, memory is the process's resident set (RSS), with glibc told to return freed blocks "
              "to the OS at once (`release_freed_memory`)" if sweep["device"] == "cpu" and sweep["allocator_tuned"]
              else "; on a CPU without glibc the RSS keeps freed memory, so the measured columns may run low"
              if sweep["device"] == "cpu" else "; on CUDA, memory is what the caching allocator has handed out")
           + ". \"Retained\" is the rise that stays after the prefill (the cache is alive, activations are freed); "
           "\"peak\" the highest rise during it.")
    d.table([{"attention": attention_kind(mcfgs[r["n_kv_head"]]), "n_kv_head": r["n_kv_head"], "seq": r["seq"],
              "model MiB": r["model"] / MiB, "cache tensors MiB": r["cache_bytes"] / MiB,
              "retained MiB": r["retained"] / MiB, "peak rise MiB": r["peak"] / MiB,
              "peak − model MiB": (r["peak"] - r["model"]) / MiB} for r in rows], floatfmt=".3f")
    big = [r for r in rows if r["model"] >= 4 * MiB]  # page rounding and small temporaries fade here
    err = max(abs(r["retained"] - r["model"]) / r["model"] for r in big or rows)
    longest = [r for r in rows if r["seq"] == seqs[-1]]
    act = [(r["peak"] - r["model"]) / MiB for r in longest]
    spread = (max(act) - min(act)) / max(max(act), 1e-9)
    d.text("What to look at: the filled cache's tensors hold "
           + ("exactly the modelled bytes in every row" if exact else "NOT the modelled bytes in some rows")
           + (f". Where the cache is at least 4 MiB, the retained memory is within {err:.1%} of the model. " if big
              else f". No cache here reaches 4 MiB, too little for the process's memory to resolve (the retained "
              f"memory is off by up to {err:.0%}); the default sizes measure caches up to tens of MiB. ")
           + f"At seq {seqs[-1]} the peak rise minus the cache is {min(act):.1f}–{max(act):.1f} MiB for every group "
           f"count (spread {spread:.0%})"
           + (": the activations of the prefill, which do not depend on n_kv_head. So the differences between "
              "group counts are the cache's, and the cache falls in proportion to n_kv_head." if spread < 0.15 else
              ": more than the prefill's activations alone would explain; the sampled peak (every 5 ms on a CPU) "
              "can miss a short-lived allocation, so trust the retained column more."))
    series, styles = {}, {}
    for i, g in enumerate(counts):
        mine = [r for r in rows if r["n_kv_head"] == g]
        name = f"{attention_kind(mcfgs[g])} (n_kv_head={g})"
        series[f"{name}: model"] = ([r["seq"] for r in mine], [r["model"] / MiB for r in mine])
        seen = [r for r in mine if r["retained"] > 0]  # a log axis: a rise of zero has no point
        if seen:
            series[f"{name}: retained"] = ([r["seq"] for r in seen], [r["retained"] / MiB for r in seen])
        styles[f"{name}: model"] = dict(color=f"C{i}", alpha=0.5, lw=4)
        styles[f"{name}: retained"] = dict(color=f"C{i}", dashes=(4, 2), marker="o")
    p = plotting.lines(ctx.plot_path("kv_bytes"), series, "sequence length (tokens)", "KV cache (MiB)",
                       f"KV cache vs length, batch {cfg.mem_batch}: model (wide) and measured (dashed)",
                       logx=True, logy=True, styles=styles, xticks=(seqs, seqs))
    d.image(p, "KV-cache bytes against sequence length, per group count")
    d.text(f"What to look at: every line doubles with the sequence length (slope 1 on log–log axes) and the lines "
           f"sit a factor 2 apart per halving of n_kv_head: at seq {seqs[-1]} the model gives "
           + ", ".join(f"{r['model'] / MiB:.2f}" for r in longest) + " MiB for n_kv_head = "
           + ", ".join(str(r["n_kv_head"]) for r in longest) + ". The measured points "
           + ("lie on the model's lines where the cache is at least 4 MiB." if big and err < 0.1 else
              "stray from the model by more than 10% somewhere: see the table."))
    pk = {f"{attention_kind(mcfgs[g])}": ([r["seq"] for r in rows if r["n_kv_head"] == g],
                                         [r["peak"] / MiB for r in rows if r["n_kv_head"] == g]) for g in counts}
    p = plotting.lines(ctx.plot_path("peak_memory"), pk, "sequence length (tokens)", "peak memory rise (MiB)",
                       f"Peak memory of one prefill (cache + activations), batch {cfg.mem_batch}",
                       markers=True, xticks=(seqs, seqs))
    d.image(p, "Measured peak memory of a prefill against sequence length")
    growth = longest[0]["peak"] / max(1, next(r["peak"] for r in rows if r["seq"] == seqs[-2])) if len(seqs) > 1 else 0
    d.text(f"What to look at: from seq {seqs[-2] if len(seqs) > 1 else seqs[-1]} to {seqs[-1]} MHA's peak grows "
           f"{growth:.2f}x for {seqs[-1] / seqs[-2] if len(seqs) > 1 else 1:g}x the tokens"
           + (" (too small a rise to read)" if longest[0]["peak"] < 4 * MiB else
              ": about linearly, since the prefill's attention runs in fused SDPA kernels that never hold the "
              "seq × seq score matrix" if growth < 1.25 * (seqs[-1] / seqs[-2] if len(seqs) > 1 else 1) else
              ": faster than linearly, so something quadratic (a score matrix) is held")
           + f". At seq {seqs[-1]} "
           f"MHA's peak is {longest[0]['peak'] / MiB:.1f} MiB against {longest[-1]['peak'] / MiB:.1f} MiB for "
           f"{attention_kind(mcfgs[counts[-1]])}: a difference of "
           f"{(longest[0]['peak'] - longest[-1]['peak']) / MiB:.1f} MiB, where the model's caches differ by "
           f"{(longest[0]['model'] - longest[-1]['model']) / MiB:.1f} MiB.")
    d.text(f"**Target** (KV-cache bytes of MHA / of the GQA setting, n_kv_head = {cfg.n_kv_head}, at "
           f"{cfg.context} tokens, ≥ 2): {at_ctx[cfg.n_head]:,} / {at_ctx[cfg.n_kv_head]:,} bytes = "
           f"**{reduction:g}x**, {'met' if reduction >= 2 else 'missed'}; in general n_head / n_kv_head.")
    return {"kv_bytes_reduction": round(reduction, 4), "kv_model_exact": exact,
            "mem_retained_max_err": round(err, 4), "mem_activation_spread": round(spread, 4)}


def toggle_report(cfg: Config, ctx: runner.Context, mcfgs: dict, trained: dict, tr, va) -> dict:
    """Section 2: GQA at n_kv_head = n_head is MHA bit for bit, and a trained GQA model is a repeated MHA."""
    d, dev = ctx.deliverable, ctx.device
    mha_cfg, gqa_cfg = mcfgs[cfg.n_head], mcfgs[cfg.n_kv_head]
    torch.manual_seed(ctx.seed)
    m_none = GPT(dataclasses.replace(mha_cfg, n_kv_head=None)).to(dev).eval()
    torch.manual_seed(ctx.seed)
    m_full = GPT(mha_cfg).to(dev).eval()  # n_kv_head = n_head: "GQA with one query head per group"
    x = va[: cfg.block_size * 4].view(4, cfg.block_size).to(dev)
    with torch.no_grad():
        same = torch.equal(m_none(x)[0], m_full(x)[0]) and all(
            torch.equal(a, b) for a, b in zip(m_none.state_dict().values(), m_full.state_dict().values()))
    gqa_model = trained[cfg.n_kv_head][0]
    mha_copy = as_mha(gqa_model).eval()
    with torch.no_grad():
        diff = (mha_copy(x)[0] - gqa_model.eval()(x)[0]).abs().max().item()
    vb = {"val": data.split_batches(tr, va, cfg.block_size, cfg.batch_size, dev)[1].fixed(cfg.eval_iters)}
    rep_loss, own_loss = evaluate(mha_copy, vb, dev)["val"], evaluate(gqa_model, vb, dev)["val"]
    d.section("The toggle: MHA, GQA and MQA are one layer")
    d.text(f"`n_kv_head` = n_head, n_head / k or 1 selects MHA, GQA or MQA; nothing else in the model changes. "
           f"Two checks. (a) A model built with n_kv_head = n_head = {cfg.n_head} and one built with n_kv_head = None "
           f"(plain MHA) from the same seed: weights and logits are "
           + ("**bit-identical**" if same else "**different** (a bug)")
           + f". (b) The trained {attention_kind(gqa_cfg)} model converted by `as_mha`, which repeats each K/V head's "
           f"rows of the qkv weight for the {cfg.n_head // cfg.n_kv_head} query heads of its group: an MHA model with "
           f"{mha_copy.num_params():,} parameters instead of {gqa_model.num_params():,} and a "
           f"{cfg.n_head // cfg.n_kv_head}x bigger cache, whose logits differ by at most {diff:.1e} and whose val CE "
           f"on {cfg.eval_iters} fixed batches is {rep_loss:.6f} against {own_loss:.6f}. What to look at: "
           + ("GQA is MHA with its K/V heads tied within each group" + (", bit for bit here." if diff == 0 else
              "; the equality holds to float32 rounding (SDPA's grouped and plain paths add in other orders).")
              if diff < 1e-4 else "the outputs differ: the grouping is wrong."))
    return {"gqa_equals_mha": same, "gqa_equals_repeated_mha": diff < 1e-4}


def quality_report(cfg: Config, ctx: runner.Context, mcfgs: dict, trained: dict) -> dict:
    """Section 3: validation loss and speed of every group count at equal steps."""
    d, counts = ctx.deliverable, list(trained)
    d.section("Quality and speed at equal steps")
    vals = {g: trained[g][2] for g in counts}
    d.table([{"attention": attention_kind(mcfgs[g]), "n_kv_head": g, "query heads per K/V head": cfg.n_head // g,
              "params": trained[g][0].num_params(), "params (formula)": count_params_formula(mcfgs[g]),
              "KV bytes/token": kv_bytes_per_token(mcfgs[g]),
              f"KV MiB at {cfg.context} (batch 1)": kv_cache_bytes(mcfgs[g], cfg.context) / MiB,
              "train tokens/s": f"{trained[g][1].tokens_per_s:,.0f}", "val CE": vals[g]} for g in counts])
    best = min(vals, key=vals.get)
    span = max(vals.values()) - min(vals.values())
    monotone = all(vals[a] <= vals[b] for a, b in zip(counts, counts[1:]))  # counts fall: loss should not
    d.text(f"What to look at: after {cfg.max_iters} steps from the same seed and data order, the lowest val CE is "
           f"{attention_kind(mcfgs[best])}'s ({vals[best]:.4f}) and the whole range is {span:.4f} nats"
           + (", so with one seed at this size the group count makes "
              "little difference to quality while the cache shrinks n_head / n_kv_head-fold." if span < 0.03 else
              ": fewer K/V heads cost measurable quality here, the trade the group count tunes." if monotone else
              ", but the order does not follow the group count, so with one seed much of it is noise.")
           + " Tokens/s are timed one run after the other, so machine load moves them as much as the group count.")
    h = {attention_kind(mcfgs[g]): (trained[g][1].history["step"], trained[g][1].history["val"]) for g in counts}
    p = plotting.lines(ctx.plot_path("val_loss"), h, "step", "val cross-entropy (nats/char)",
                       "Group counts at equal steps, same seed and data order", markers=True)
    d.image(p, "Validation loss during training, per group count")
    last = {k: v[1][-1] for k, v in h.items()}
    d.text(f"What to look at: the curves {'overlap' if max(last.values()) - min(last.values()) < 0.03 else 'part'}; "
           f"at the last evaluation they span {min(last.values()):.3f}–{max(last.values()):.3f} nats.")
    return {**{f"val_loss_kv{g}": round(vals[g], 4) for g in counts},
            "val_gap_gqa": round(vals[cfg.n_kv_head] - vals[cfg.n_head], 4),
            **{f"tokens_per_s_kv{g}": round(trained[g][1].tokens_per_s, 1) for g in counts}}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
