"""Day 39: latent attention (MLA), a top-k MoE, and the choice of variants for later sprints.

Every attention and MLP variant of the sprint is a value of the one `GPTConfig`
(`common/nn/model.py`): MHA, GQA and MQA by `n_kv_head`, DeepSeek-style latent attention by
`attn="mla"` with `kv_lora_rank` and `rope_head_dim`, a sliding window with global tokens by
`window`/`n_global`, and a mixture of experts by `n_expert`. The day trains each on the same
character-level Tiny Shakespeare stream for the same number of steps (same seed, same batches), then
measures what the choice needs: parameters, KV-cache bytes per token (closed form, checked against
the allocated cache), training tokens/s, validation loss, and retention (the needle hit rate of
days 37-38 at one and two training lengths). The memo at the end is computed from that table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common import data
from common.lab import retrieval
from common.nn.kv_cache import KVCache, kv_bytes_per_token, kv_cache_bytes
from common.nn.model import GPT, count_params_formula, gpt_config_for, variant_fields
from common.run import plotting, runner
from common.run.errors import UserError
from common.train import full_split_loss, train_config_for

DAY = 39
METRIC_KINDS = {"tps_*": "timing"}
KEY_METRICS = ["mla_kv_bytes_reduction", "mla_val_loss_gap", "chosen_default", "chosen_inference"]


@dataclass
class Config:
    variants: str = "mha,gqa,mqa,mla,sliding,moe"  # any of VARIANTS, comma-separated; mha is the baseline
    n_layer: int = 4
    n_head: int = 8
    n_embd: int = 128
    block_size: int = 128
    batch_size: int = 16
    max_iters: int = 500
    lr: float = 2e-3
    eval_iters: int = 10
    val_chars: int = 0        # score the first val_chars of the val split (0 = all of it)
    kv_groups: int = 2        # gqa: key/value heads
    mla_rank: int = 56        # mla: latent features per token and layer; 56 + 8 = 64 is 1/4 of MHA's 2 x 8 x 16
    mla_rope_dim: int = 8     # mla: the decoupled rotated key
    sliding_window: int = 32  # sliding: keys each query sees
    sliding_global: int = 4   # sliding: first tokens every query sees
    moe_experts: int = 4      # moe: experts (top-2, each half as wide: the dense MLP's active FLOPs)
    long_context: int = 32768  # the context the KV-cache column is priced at
    quality_tol: float = 0.02  # a variant "keeps quality" when its val loss is within this of MHA's
    hit_tol: float = 0.1       # ... and its needle hit rate at most this much (absolute) below MHA's
    ret_steps: int = 1600     # retention: steps of the needle-task model trained per variant (0 = skip)
    ret_len: int = 64         # retention: longest training prompt, and the length it is scored at
    ret_width: int = 128      # retention: the needle model's width (2 layers, n_head heads)
    ret_trials: int = 32      # retention: prompts per depth
    ret_depths: str = "0,0.5,1"  # retention: needle depths scored (0 = first, 1 = just before the query)


PRESETS = {"nano": dict(n_layer=2, n_head=4, n_embd=32, block_size=32, batch_size=4, max_iters=30, eval_iters=2,
                        val_chars=4000, ret_steps=10, ret_len=48, ret_width=32, ret_trials=2,
                        mla_rank=8, mla_rope_dim=4, sliding_window=8, sliding_global=2, lr=1e-2),
           "cpu": {},
           "gpu": dict(n_layer=8, n_head=8, n_embd=512, block_size=512, batch_size=32, max_iters=3000, lr=1e-3,
                       mla_rank=224, mla_rope_dim=32, sliding_window=128, eval_iters=40, ret_steps=3000, ret_len=256,
                       ret_width=256, ret_trials=50)}


def variant_overrides(name: str, cfg: Config) -> dict:
    """The GPTConfig fields of variant `name` at this run's knobs (`common.nn.model.variant_fields`)."""
    try:
        return variant_fields(name, kv_groups=cfg.kv_groups, mla_rank=cfg.mla_rank, mla_rope_dim=cfg.mla_rope_dim,
                              window=cfg.sliding_window, n_global=cfg.sliding_global, n_expert=cfg.moe_experts)
    except ValueError as e:
        raise UserError(f"{e}.") from None


def retention(name: str, cfg: Config, device, seed: int) -> dict:
    """Needle exact-match rate by depth ({depth: rate}) at `ret_len` of a small model of variant `name` trained on the
    needle task.

    The recipe of days 37-38 (`common.lab.retrieval`): 2 layers, `n_head` heads, `ret_width` wide, ALiBi,
    loss on the answer digits. ALiBi because with RoPE these models learned the copy late and unevenly
    within a CPU budget; MLA then needs no decoupled rotated key (`rope_head_dim=0`), as ALiBi only biases
    the scores.
    """
    task = retrieval.RetrievalTask(train_len=cfg.ret_len, min_len=16, warm_len=cfg.ret_len, warm_steps=0)
    fields = {**variant_overrides(name, cfg), **({"rope_head_dim": 0} if name == "mla" else {})}
    mcfg = task.model_config(pos="alibi", n_layer=2, n_head=cfg.n_head, n_embd=cfg.ret_width, **fields)
    model = retrieval.train_retrieval_model(mcfg, task, cfg.ret_steps, device, lr=3e-3, seed=seed).model
    depths = [float(x) for x in cfg.ret_depths.split(",")]
    acc = retrieval.needle_accuracy(model, task, [cfg.ret_len], depths, cfg.ret_trials, device, seed=seed)
    return {depth: acc[(cfg.ret_len, depth)] for depth in depths}


ATTENTION_FIELDS = {"n_kv_head", "attn", "kv_lora_rank", "rope_head_dim", "window", "n_global"}


def changes_attention(name: str, cfg: Config) -> bool:
    """Whether variant `name` attends differently from MHA (an MLP-only variant such as moe does not)."""
    return name == "mha" or bool(ATTENTION_FIELDS & set(variant_overrides(name, cfg)))


def kv_reduction(base_cfg, cfg) -> float:
    """How many times smaller the KV cache per token is than the baseline's (inf for no cache)."""
    # >>> exercise day39.kv_reduction: ratio of the baseline's KV bytes per token to the variant's
    mine = kv_bytes_per_token(cfg)
    return kv_bytes_per_token(base_cfg) / mine if mine else math.inf
    # <<< exercise day39.kv_reduction


def choose(rows: list[dict], tol: float, hit_tol: float) -> dict:
    """The memo's decisions from the trade-off table (rows keyed by variant, mha among them).

    A variant *keeps quality* when its val loss is at most (1 + tol) x MHA's and, where retention was
    measured (`hit` not None), its needle hit rate is at most `hit_tol` below MHA's. Among the attention
    variants that keep quality, `default` has the lowest val loss and `inference` the fewest KV bytes per
    token. The MoE (an MLP variant) is adopted when it beats MHA's val loss by more than tol, else it
    stays an option (or is dropped when it does not keep quality).
    """
    # >>> exercise day39.choose: keep = loss and hit rate within tolerance of MHA's; pick default, inference, moe
    base = next(r for r in rows if r["variant"] == "mha")

    def keeps(r):
        hit_ok = r.get("hit") is None or base.get("hit") is None or r["hit"] >= base["hit"] - hit_tol
        return r["val_loss"] <= base["val_loss"] * (1 + tol) and hit_ok

    kept = [r for r in rows if keeps(r)]
    attention = [r for r in kept if r["variant"] != "moe"]
    default = min(attention, key=lambda r: (r["val_loss"], r["kv_bytes_per_token"]))
    inference = min(attention, key=lambda r: (r["kv_bytes_per_token"], r["val_loss"]))
    moe = next((r for r in rows if r["variant"] == "moe"), None)
    verdict = (None if moe is None else "adopt" if moe["val_loss"] < base["val_loss"] * (1 - tol)
               else "option" if keeps(moe) else "drop")
    return {"keeps": [r["variant"] for r in kept], "default": default["variant"], "inference": inference["variant"],
            "moe": verdict}
    # <<< exercise day39.choose


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, dev = ctx.deliverable, ctx.device
    names = [v.strip() for v in cfg.variants.split(",") if v.strip()]
    if "mha" not in names:
        raise UserError("variants must include mha: every other variant is compared with it.")
    tok, tr, va = data.char_corpus()
    base_cfg = gpt_config_for(cfg, vocab_size=tok.vocab_size, pos="rope")
    tc = train_config_for(cfg, warmup_iters=cfg.max_iters // 10, weight_decay=0.0, eval_interval=cfg.max_iters)
    rows, curves, models = [], {}, {}
    for name in names:
        mcfg = gpt_config_for(cfg, vocab_size=tok.vocab_size, pos="rope", **variant_overrides(name, cfg))
        torch.manual_seed(ctx.seed)
        model = GPT(mcfg).to(dev)
        assert model.num_params() == count_params_formula(mcfg)
        res = ctx.train(model, *data.split_batches(tr, va, cfg.block_size, cfg.batch_size, dev), tc, run=name)
        cache = KVCache.for_model(model, 1, cfg.block_size)
        assert cache.nbytes() == kv_cache_bytes(mcfg, cfg.block_size, rolling=False)  # closed form = allocated
        val = full_split_loss(model, va[: cfg.val_chars or None], cfg.block_size, 64, dev)
        curves[name] = (res.train_log["step"], res.train_log["loss"])
        models[name] = model
        rows.append({"variant": name, "params": model.num_params(), "kv_bytes_per_token": kv_bytes_per_token(mcfg),
                     "kv_reduction": kv_reduction(base_cfg, mcfg),
                     "kv_mib_long": kv_cache_bytes(mcfg, cfg.long_context, bytes_per_elem=2) / 2**20,
                     "tokens_per_s": res.tokens_per_s, "val_loss": val, "cfg": mcfg,
                     "by_depth": retention(name, cfg, dev, ctx.seed)
                     if cfg.ret_steps and changes_attention(name, cfg) else None})
        rows[-1]["hit"] = None if rows[-1]["by_depth"] is None else sum(rows[-1]["by_depth"].values()) / len(
            rows[-1]["by_depth"])
    by = {r["variant"]: r for r in rows}
    base = by["mha"]
    for r in rows:
        r["gap"] = (r["val_loss"] - base["val_loss"]) / base["val_loss"]
        r["tps_rel"] = r["tokens_per_s"] / base["tokens_per_s"]

    scored = (f"the first {cfg.val_chars:,} characters of the validation split" if cfg.val_chars
              else f"the whole validation split ({va.numel():,} characters)")
    d.section("The variants, trained alike")
    d.text(f"Each variant is the MHA baseline ({cfg.n_layer} layers × {cfg.n_embd} wide, {cfg.n_head} heads of "
           f"{cfg.n_embd // cfg.n_head}, RoPE) with the fields below changed, trained {cfg.max_iters} steps of "
           f"{cfg.batch_size} × {cfg.block_size} characters from the same seed and the same batches. Validation loss "
           f"is the mean cross-entropy over {scored}. KV bytes per token are the closed form of "
           f"`kv_bytes_per_token` in float32 (checked against the cache each model allocates); the long-context "
           f"column prices one {cfg.long_context:,}-token sequence in bfloat16, with the sliding window's cache "
           f"kept as a ring buffer of window + global tokens.")
    d.table([{"variant": r["variant"],
              "fields": ", ".join(f"{k}={v}" for k, v in variant_overrides(r["variant"], cfg).items()) or "—",
              "params": f"{r['params']:,}", "KV bytes/token": r["kv_bytes_per_token"],
              "KV × smaller": "no cache" if math.isinf(r["kv_reduction"]) else f"{r['kv_reduction']:.2f}",
              f"KV MiB @ {cfg.long_context // 1024}k": f"{r['kv_mib_long']:.3g}",
              "train tokens/s": f"{r['tokens_per_s']:,.0f}", "val loss": f"{r['val_loss']:.4f}",
              "vs MHA": f"{r['gap']:+.2%}",
              "needle hits": "—" if r["hit"] is None else f"{r['hit']:.0%}"} for r in rows])
    if cfg.ret_steps:
        d.text(f"*Needle hits* is retention: for each variant a second, small model (2 layers × {cfg.ret_width}, "
               f"{cfg.n_head} heads, ALiBi, the variant's fields; MLA without a rotated key, which ALiBi does not "
               f"need) is trained {cfg.ret_steps} steps on the needle task of days 37–38 (prompts of "
               f"16–{cfg.ret_len} characters, loss on the 4 answer digits), then scored by exact match on "
               f"{cfg.ret_trials} validation prompts of {cfg.ret_len} characters at each depth. Chance is 1 in "
               "10,000. It measures what a variant learns to retrieve in that budget: a rate near 0 can mean it "
               "learns the copy more slowly, not that it never could.")
        ret_rows = [r for r in rows if r["by_depth"] is not None]
        same = [r["variant"] for r in rows if r["by_depth"] is None]
        if same:
            d.text(f"Not scored: {', '.join(same)}, whose attention is MHA's (only the MLP changes), so the needle "
                   "task asks nothing new of it; its decision rests on the loss alone.")
        depths = list(ret_rows[0]["by_depth"])
        d.table([{"variant": r["variant"], **{f"depth {k:g}": f"{v:.0%}" for k, v in r["by_depth"].items()}}
                 for r in ret_rows])
        far = {r["variant"]: r["by_depth"][depths[0]] for r in ret_rows}
        near = {r["variant"]: r["by_depth"][depths[-1]] for r in ret_rows}
        d.text(f"What to look at: depth {depths[0]:g} puts the needle about {cfg.ret_len} characters before the "
               f"question, depth {depths[-1]:g} right before it. "
               + (f"The sliding window ({cfg.sliding_window} keys + {cfg.sliding_global} global) finds "
                  f"{near['sliding']:.0%} of the near needles and {far['sliding']:.0%} of the far ones, against "
                  f"MHA's {near['mha']:.0%} and {far['mha']:.0%}: a needle outside the window is out of reach of "
                  "the query, whatever the validation loss says. " if "sliding" in far else "")
               + (f"Below MHA at every depth: {', '.join(below)}; these learned the copy less well in the budget."
                  if (below := [r["variant"] for r in ret_rows if r["variant"] != "sliding" and all(
                      r["by_depth"][k] < by["mha"]["by_depth"][k] for k in depths)])
                  else "No other variant is below MHA at every depth."))
    best = min(rows, key=lambda r: r["val_loss"])
    smallest = min(rows, key=lambda r: r["kv_mib_long"])
    d.text(f"What to look at: the val-loss column spans {min(r['val_loss'] for r in rows):.4f}–"
           f"{max(r['val_loss'] for r in rows):.4f} ({best['variant']} lowest), while the KV cache per token spans "
           f"{min(r['kv_bytes_per_token'] for r in rows):,}–{max(r['kv_bytes_per_token'] for r in rows):,} bytes; "
           f"at {cfg.long_context // 1024}k tokens {smallest['variant']} needs the least cache "
           f"({smallest['kv_mib_long']:.3g} MiB against MHA's {base['kv_mib_long']:.3g}). Tokens/s are one run on a "
           "shared CPU: read them as rough ratios, not a ranking to a few percent.")
    p = plotting.lines(ctx.plot_path("loss"), curves, "step", "train loss (nats/char)",
                       "Training loss of each variant, same batches", logy=True)
    d.image(p, "Training loss per variant")
    last = {n: c[1][-1] for n, c in curves.items()}
    spread = max(last.values()) - min(last.values())
    d.text(f"What to look at: by the last logged step the train losses lie within {spread:.3f} nats of each other "
           f"({min(last, key=last.get)} lowest at {min(last.values()):.3f}, "
           f"{max(last, key=last.get)} highest at {max(last.values()):.3f}); "
           + ("the curves overlap, so at equal steps cutting the KV cache costs little in training loss."
              if spread < 0.05 else "the curves separate: the variants do not learn equally fast at equal steps."))
    metrics = {f"val_{r['variant']}": round(r["val_loss"], 4) for r in rows}
    metrics.update({f"tps_{r['variant']}": round(r["tokens_per_s"], 1) for r in rows})
    metrics.update({f"kv_bytes_{r['variant']}": r["kv_bytes_per_token"] for r in rows})
    metrics.update({f"hit_{r['variant']}": round(r["hit"], 4) for r in rows if r["hit"] is not None})

    if "mla" in by:
        m = by["mla"]
        red, gap = m["kv_reduction"], m["gap"]
        met = red >= 4 and gap <= cfg.quality_tol
        d.section("The MLA milestone")
        d.text(f"MLA caches {cfg.mla_rank} latent + {cfg.mla_rope_dim} rotated-key features per token and "
               f"layer, against 2 × {cfg.n_head} heads × {cfg.n_embd // cfg.n_head} for MHA: **{red:.2f}× smaller**"
               f" (target ≥ 4: {'met' if red >= 4 else 'missed'}). Its val loss is {m['val_loss']:.4f} against "
               f"{base['val_loss']:.4f}, a gap of **{gap:+.2%}** (target ≤ +{cfg.quality_tol:.0%}: "
               f"{'met' if gap <= cfg.quality_tol else 'missed'}). Together: milestone {'met' if met else 'missed'} "
               f"at {cfg.max_iters} steps, one seed.")
        metrics.update({"mla_kv_bytes_reduction": round(red, 4), "mla_val_loss_gap": round(gap, 4)})
    if "moe" in by:
        moe = models["moe"]
        loads = torch.stack([b.mlp.last_load for b in moe.blocks])  # (layers, experts), from the last forward
        d.section("The mixture of experts")
        d.text(f"{cfg.moe_experts} experts per block, top-2 routing, each expert half as wide as the dense MLP, "
               "so a token's active MLP FLOPs equal the dense model's while the MLP parameters grow "
               f"{cfg.moe_experts // 2}×: "
               f"{by['moe']['params']:,} parameters against {base['params']:,}. After training the share of routed "
               f"tokens per expert ranges {loads.min():.1%}–{loads.max():.1%} over layers (uniform: "
               f"{1 / cfg.moe_experts:.1%}): "
               + ("the load-balancing loss keeps every expert in use." if loads.min() >= 0.5 / cfg.moe_experts else
                  "some experts get far less than their share; a larger load-balancing weight or more steps would even "
                  "it out."))
        metrics["moe_load_max"] = round(loads.max().item(), 4)

    decision = choose(rows, cfg.quality_tol, cfg.hit_tol)
    measured = any(r.get("hit") is not None for r in rows if r["variant"] != "mha")
    d.section("The choice")
    d.table([{"variant": r["variant"], "KV × smaller": "no cache" if math.isinf(r["kv_reduction"]) else
              f"{r['kv_reduction']:.2f}", "val loss vs MHA": f"{r['gap']:+.2%}",
              "tokens/s vs MHA": f"{r['tps_rel']:.2f}",
              "needle hit rate": "—" if r.get("hit") is None else f"{r['hit']:.0%}",
              "keeps quality": "yes" if r["variant"] in decision["keeps"] else "no"} for r in rows])
    d.text(f"What to look at: *keeps quality* means val loss at most {cfg.quality_tol:.0%} above MHA's"
           + (f" and, where scored, a needle hit rate at most {cfg.hit_tol:.0%} (absolute) below MHA's"
              if measured else "")
           + f"; {len(decision['keeps'])} of {len(rows)} variants do ({', '.join(decision['keeps'])}).")
    moe_text = {"adopt": "adopt it: its val loss beats MHA's by more than the tolerance",
                "option": "keep it as an option, not a default: its gain (or loss) is inside the tolerance, and it "
                          "doubles the MLP's parameters",
                "drop": "drop it: it does not keep quality", None: "not compared in this run"}[decision["moe"]]
    d.text(f"**Decision.** Default attention for the training sprints (5–6: fine-tuning and evaluation, where "
           f"quality matters most): **{decision['default']}**, the lowest val loss among the attention variants that "
           f"keep quality. For inference-heavy work (sprint 9: serving, long contexts): **{decision['inference']}**, "
           f"the fewest KV bytes per token among them. Mixture of experts: {moe_text}. The rest stay config values "
           f"to ablate, not defaults. One seed and {cfg.max_iters} steps at {cfg.n_embd} wide: re-check the ranking "
           "at the GPU preset before relying on it (`make day 39 ARGS='--preset gpu'`). Day 40 turns this decision "
           "into `attention.yaml`.")
    metrics.update({"chosen_default": decision["default"], "chosen_inference": decision["inference"],
                    "moe_verdict": decision["moe"] or "n/a", "n_keep_quality": len(decision["keeps"])})
    return metrics


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
