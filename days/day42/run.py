"""Day 42: supervised fine-tuning — a base model, the loss on the assistant's tokens only, and what it learns.

The sprint's base model (`common/train/posttrain.py`: Sprint 3's recipe at CPU size, RoPE, characters of
TinyStories) is pretrained once and cached. Before the real run, the sanity check every SFT recipe starts
with: fine-tune a copy on 200 examples until it has memorised them (loss near zero), which proves the mask,
the batches and the optimiser can fit at all. Then SFT on day 41's dataset, with train and val curves, the
loss decomposed by family and by part of the answer, exact match per family on seen and held-out phrasings,
and tool use: the same model answering held-out word problems with and without the calculator.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from common.data import instruct
from common.data.chat import MaskedBatches
from common.eval import calculator
from common.nn.model import GPT
from common.run import plotting, runner
from common.train import posttrain
from common.train.loop import TrainConfig, evaluate

DAY = 42
KEY_METRICS = ["overfit_loss", "sft_val_loss", "exact_match_val", "exact_match_test", "tool_use_accuracy",
               "no_tool_accuracy", "hostile_escapes"]
METRIC_KINDS = {"hostile_max_ms": "timing", "seconds_per_answer": "timing"}


@dataclass
class Config:
    overfit_n: int = 200       # the sanity check: examples memorised ...
    overfit_steps: int = 500   # ... in this many steps ...
    overfit_batch: int = 100   # ... of this many (batches of 32 for 300 steps left the loss at 0.18 in trials)
    overfit_lr: float = 1e-3
    n_decompose: int = 1200    # val sequences in the loss decomposition


PRESETS = {"nano": dict(overfit_n=16, overfit_steps=40, overfit_batch=8, n_decompose=64), "cpu": {}, "gpu": {}}


def masked_mean_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SFT's loss by hand: mean of -log p(y_t) over the positions where y_t != -1 (the ignore index).

    logits (B, T, V), y (B, T). Equal to F.cross_entropy(..., ignore_index=-1) and to GPT's own loss."""
    # >>> exercise day42.masked_mean_loss: log-softmax, pick the target's log-prob, average over y != -1 only
    keep = y != -1
    logp = F.log_softmax(logits.float(), dim=-1)
    picked = torch.gather(logp, -1, y.clamp(min=0)[..., None])[..., 0]  # (B, T)
    return -(picked * keep).sum() / keep.sum()
    # <<< exercise day42.masked_mean_loss


@torch.no_grad()
def token_losses(model: GPT, examples, tok=posttrain.TOKENIZER) -> list[dict]:
    """Per example: -log p of every predicted token, split into prompt, answer body and END.

    Teacher-forced on the direct rendering. Returns dicts with family, prompt (list of NLLs of prompt
    tokens after the first), body (answer characters) and end (the END marker's NLL)."""
    out = []
    for i in range(0, len(examples), 128):
        chunk = examples[i:i + 128]
        seqs = [tok.encode_spans(*(lambda r: (r[0], [r[1]]))(instruct.render(ex))) for ex in chunk]
        b = MaskedBatches(seqs, len(seqs), max(len(s[0]) for s in seqs), next(model.parameters()).device)
        x, _ = b.collate(seqs)
        logits, _ = model(x)
        nll = -torch.gather(F.log_softmax(logits.float(), -1), -1, torch.as_tensor(
            [s[0][1:] + [0] * (x.shape[1] + 1 - len(s[0])) for s in seqs], device=x.device)[..., None])[..., 0]
        for r, (ex, (ids, mask)) in enumerate(zip(chunk, seqs)):
            n = len(ids) - 1
            row = nll[r, :n].tolist()
            m = mask[1:]
            ans = [v for v, k in zip(row, m) if k]
            out.append({"family": ex.family, "prompt": [v for v, k in zip(row, m) if not k],
                        "body": ans[:-1], "end": ans[-1]})
    return out


def decompose(rows: list[dict]) -> dict:
    """The masked mean loss as a token-weighted sum: L = sum_f (n_f / N) L_f over families f, and
    L = (n_body / N) L_body + (n_end / N) L_end over the parts of the answer. Returns every term."""
    # >>> exercise day42.decompose: per family and per part, the mean NLL and the share of the N masked tokens
    fam: dict = {}
    for r in rows:
        fam.setdefault(r["family"], []).extend(r["body"] + [r["end"]])
    body = [v for r in rows for v in r["body"]]
    end = [r["end"] for r in rows]
    N = len(body) + len(end)
    total = (sum(body) + sum(end)) / N
    return {"total": total, "N": N,
            "families": {f: {"share": len(v) / N, "loss": sum(v) / len(v)} for f, v in sorted(fam.items())},
            "parts": {"answer characters": {"share": len(body) / N, "loss": sum(body) / max(1, len(body))},
                      "END": {"share": len(end) / N, "loss": sum(end) / len(end)}}}
    # <<< exercise day42.decompose


def overfit(base: GPT, examples, cfg: Config, ctx: runner.Context):
    """Fine-tune a copy of `base` on `examples` until memorised; (final loss on them, exact match, history)."""
    model = GPT(base.cfg).to(ctx.device)
    model.load_state_dict(base.state_dict())
    seqs = posttrain.sft_sequences(examples, tools=False)
    b = MaskedBatches(seqs, min(cfg.overfit_batch, len(seqs)), base.cfg.block_size, ctx.device,
                      posttrain.TOKENIZER.pad_id)
    whole = MaskedBatches(seqs, len(seqs), base.cfg.block_size, ctx.device, posttrain.TOKENIZER.pad_id)
    tc = TrainConfig(max_iters=cfg.overfit_steps, lr=cfg.overfit_lr, min_lr=cfg.overfit_lr, schedule="constant",
                     warmup_iters=10, weight_decay=0.0, eval_interval=max(1, cfg.overfit_steps // 10), eval_iters=1,
                     log_interval=10, dtype="float32")
    torch.manual_seed(ctx.seed)
    res = ctx.train(model, b, whole, tc, run="overfit")
    loss = evaluate(model, {"all": whole.fixed(1)}, ctx.device)["all"]
    em = posttrain.accuracy_by_family(posttrain.score(model.eval(), examples))["all"]
    return loss, em, res.history


def hostile_check() -> dict:
    """Every hostile input through the calculator tool: refused, in bounded time and memory."""
    times, peaks, escapes = [], [], []
    for text in calculator.HOSTILE:
        tracemalloc.start()
        t0 = time.perf_counter()
        out = calculator.run_tool(text)
        times.append(time.perf_counter() - t0)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        if not out.startswith("error:"):
            escapes.append(text)
    return {"n": len(calculator.HOSTILE), "escapes": escapes, "max_ms": max(times) * 1e3,
            "max_kib": max(peaks) / 1024}


def main(cfg: Config, ctx: runner.Context) -> dict:
    d = ctx.deliverable
    base_r, sft_r = posttrain.recipes(ctx.preset)
    cache = posttrain.cache_dir_for(ctx)
    t0 = time.perf_counter()
    base = posttrain.pretrain_base(base_r, ctx.device, seed=0, cache_dir=cache, tracker=ctx.tracker.scoped("base"),
                                   show_progress=not ctx.quick)
    base_s = time.perf_counter() - t0
    if base.result is not None:
        ctx.record_throughput("base", base.result, base.model, base_r.block_size)
    splits = posttrain.sft_splits(sft_r)

    d.section("The base model")
    d.text(f"{base_r.n_layer} layers of width {base_r.n_embd}, {base_r.n_head} heads, RoPE, LayerNorm, GELU, "
           f"{base.model.num_params():,} parameters, vocabulary of {posttrain.TOKENIZER.vocab_size} chat tokens; "
           f"{base_r.steps} steps of {base_r.batch_size} x {base_r.block_size} characters of TinyStories, "
           f"warm-up-stable-decay schedule at peak lr {base_r.lr:g}. Val loss {base.val_loss:.4f} nats per character "
           f"({base.val_loss / math.log(2):.3f} bits). "
           + ("Trained in this run" if base.result is not None else
              "Loaded from the cache (`.cache/posttrain`, written by the first run that needed it)")
           + f" ({base_s:.0f} s).")
    base_em = posttrain.accuracy_by_family(posttrain.score(base.model, splits["val"][:300]))["all"]

    # --- sanity check: memorise 200 -------------------------------------------------------------------
    few = splits["train"][:cfg.overfit_n]
    of_loss, of_em, of_hist = overfit(base.model, few, cfg, ctx)
    d.section(f"Sanity check: memorise {len(few)} examples")
    d.text(f"A copy of the base model, fine-tuned on {len(few)} training examples only ({cfg.overfit_steps} steps "
           f"of {min(cfg.overfit_batch, len(few))}, constant lr {cfg.overfit_lr:g}, no weight decay): masked loss on "
           "them "
           f"{of_hist['val'][0]:.3f} after {of_hist['step'][0]} steps, {of_loss:.4f} at the end; greedy exact match "
           f"on the same {len(few)}: {of_em:.1%}. What to look at: "
           + ("the loss is near zero and the answers come back verbatim, so mask, batches and optimiser can fit; "
              "a pipeline that failed here would fail the real run for reasons no amount of data fixes."
              if of_loss < 0.05 else "the loss did NOT reach near zero: something in the pipeline is wrong or the "
              "check is too short."))

    # --- SFT ---------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    sft = posttrain.train_sft(base, sft_r, ctx.device, seed=0, cache_dir=cache, tracker=ctx.tracker.scoped("sft"),
                              show_progress=not ctx.quick, splits=splits)
    sft_s = time.perf_counter() - t0
    if sft.result is not None:
        ctx.record_throughput("sft", sft.result, sft.model, base_r.block_size)
    tb, vb = posttrain.sft_batches(sft_r, base_r.block_size, ctx.device, splits)
    h = sft.history
    p = plotting.lines(ctx.plot_path("curves"), {"train (fixed batches)": (h["step"], h["train"]),
                                                 "val": (h["step"], h["val"])}, "step",
                       "masked cross-entropy (nats per answer token)", "SFT: loss on the assistant's tokens",
                       markers=True)
    d.section("SFT on day 41's dataset")
    d.text(f"{len(tb):,} training sequences ({len(splits['train']):,} examples answered directly, plus a calculator "
           f"trace for each with an expression), {len(vb):,} val; {sft_r.steps} steps of {sft_r.batch_size}, cosine "
           f"from lr {sft_r.lr:g}, no weight decay. "
           + ("Trained in this run" if sft.result is not None else "Loaded from the cache") + f" ({sft_s:.0f} s).")
    d.image(p, "Train and val loss on the assistant's tokens")
    gap = h["val"][-1] - h["train"][-1]
    d.text(f"What to look at: val ends at {h['val'][-1]:.4f} and train at {h['train'][-1]:.4f} (gap {gap:+.4f}). "
           + ("The curves run together: with thousands of fresh examples per family the model cannot memorise "
              "them in this many epochs, unlike the 200 above." if abs(gap) < 0.05 else
              "A gap this size means the model has begun to memorise its training examples.")
           + " Val here shares phrasings with train; the held-out phrasings are scored below.")

    # --- loss decomposition ----------------------------------------------------------------------------
    rows = token_losses(sft.model, splits["val"][:cfg.n_decompose])
    dec = decompose(rows)
    x, y = posttrain.sft_batches(sft_r, base_r.block_size, ctx.device,
                                 {"train": splits["val"][:cfg.n_decompose],
                                  "val": splits["val"][:cfg.n_decompose]})[0].collate(
        posttrain.sft_sequences(splits["val"][:cfg.n_decompose], tools=False))
    with torch.no_grad():
        model_loss = sft.model(x, y)[1].item()
        ours = masked_mean_loss(sft.model(x)[0], y).item()
    prompt_nll = np.mean([v for r in rows for v in r["prompt"]])
    base_rows = token_losses(base.model, splits["val"][:cfg.n_decompose])
    base_prompt_nll = np.mean([v for r in base_rows for v in r["prompt"]])
    d.section("The loss, decomposed")
    d.text(f"On {len(rows)} val examples answered directly, the masked loss is a token-weighted average of "
           f"its parts: L = sum over f of (n_f / N) L_f, with N = {dec['N']:,} answer tokens.")
    d.table([{"part": f, "share of answer tokens": v["share"], "mean NLL (nats)": v["loss"],
              "contribution": v["share"] * v["loss"]} for f, v in dec["families"].items()]
            + [{"part": k, "share of answer tokens": v["share"], "mean NLL (nats)": v["loss"],
                "contribution": v["share"] * v["loss"]} for k, v in dec["parts"].items()])
    fam_sum = sum(v['share'] * v['loss'] for v in dec['families'].values())
    d.text(f"What to look at: the family contributions sum to {fam_sum:.4f} "
           f"and the two parts to {sum(v['share'] * v['loss'] for v in dec['parts'].values()):.4f}; the model's own "
           f"loss on the same batch is {model_loss:.4f} and `masked_mean_loss` gives {ours:.4f}. Knowing when to stop "
           f"costs {dec['parts']['END']['loss']:.4f} nats per END token. The prompt tokens carry no loss: their "
           f"NLL is {prompt_nll:.3f} nats after SFT against {base_prompt_nll:.3f} for the base model. "
           + ("SFT made the prompts more predictable as a side effect (they are templated text the answers "
              "condition on)." if prompt_nll < base_prompt_nll else "SFT did not train them and they drifted."))

    # --- exact match ---------------------------------------------------------------------------------
    val_rec = posttrain.score(sft.model, splits["val"])
    test_rec = posttrain.score(sft.model, splits["test"])
    acc_val, acc_test = posttrain.accuracy_by_family(val_rec), posttrain.accuracy_by_family(test_rec)
    base_test = posttrain.accuracy_by_family(posttrain.score(base.model, splits["test"][:300]))["all"]
    fams = list(instruct.FAMILIES)
    p = plotting.bars(ctx.plot_path("exact_match"), [f"{f}\n{s}" for f in fams for s in ("val", "test")],
                      [a[f] for f in fams for a in (acc_val, acc_test)], "greedy exact match",
                      "SFT: seen phrasings (val) and held-out phrasings (test)")
    d.section("Exact match per family")
    d.table([{"family": f, "val (seen phrasings)": acc_val[f], "test (held-out phrasing)": acc_test[f],
              "val examples": sum(r["family"] == f for r in val_rec),
              "test examples": sum(r["family"] == f for r in test_rec)} for f in fams]
            + [{"family": "all", "val (seen phrasings)": acc_val["all"], "test (held-out phrasing)": acc_test["all"],
                "val examples": len(val_rec), "test examples": len(test_rec)}])
    d.image(p, "Greedy exact match, answered directly (no calculator)")
    worst = min(fams, key=lambda f: acc_test[f])
    d.text(f"What to look at: the base model, never shown the chat format, scores {base_em:.1%} on val and "
           f"{base_test:.1%} on test. SFT reaches {acc_val['all']:.1%} on val and {acc_test['all']:.1%} on the "
           f"held-out phrasings; the weakest family on test is {worst} ({acc_test[worst]:.1%}). The drop from val "
           "to test is what a new wording costs a small model. Arithmetic answered directly is the hardest "
           "family: a product of two-digit numbers has to be computed digit by digit in one forward pass per "
           "digit; the calculator below removes that.")
    examples = [r for r in test_rec if not r["correct"]][:6]
    d.table([{"family": r["family"], "prompt": r["prompt"], "answer": r["answer"], "reply": r["reply"]}
             for r in examples])

    # --- tool use -------------------------------------------------------------------------------------
    tool = {}
    for split, recs in (("val", val_rec), ("test", test_rec)):
        word = [e for e in splits[split] if e.family == "word"]
        with_tool = posttrain.score(sft.model, word, tools=True)
        expr = {e.prompt: e.expression for e in word}
        tool[split] = {"n": len(word), "with": sum(r["correct"] for r in with_tool) / len(with_tool),
                       "without": np.mean([r["correct"] for r in recs if r["family"] == "word"]),
                       "called": sum(bool(r["calls"]) for r in with_tool) / len(with_tool),
                       "right_call": sum(bool(r["calls"]) and calculator.run_tool(r["calls"][0][0])
                                         == calculator.run_tool(expr[r["prompt"]]) for r in with_tool) / len(with_tool),
                       "records": with_tool}
    other = {f: posttrain.accuracy_by_family(posttrain.score(sft.model, [e for e in splits["test"] if e.family == f],
                                                             tools=True))[f] for f in ("arithmetic", "convert")}
    tool_acc, new_acc = tool["val"]["with"], tool["test"]["with"]
    d.section("Tool use: the calculator on word problems it never saw")
    d.text("The same SFT model answers each word problem twice: directly, and with `<|tools|>` first, so it may "
           "write `<|calc|>expression<|/calc|>`; the runtime evaluates the call with the safe calculator "
           "(`common/eval/calculator.py`), appends the result, and the model writes the final answer. Two sets of "
           f"problems none of which was trained on: {tool['val']['n']} val problems, in phrasings seen in training "
           f"with new names and numbers, and {tool['test']['n']} test problems in the held-out phrasing "
           f"(\"{instruct.TEMPLATES['word'][-1]}\", an addition).")
    d.table([{"problems": f"{k} ({'seen phrasings' if k == 'val' else 'new phrasing'})", "n": v["n"],
              "no tool": v["without"], "calculator offered": v["with"], "made a call": v["called"],
              "call had the right value": v["right_call"]} for k, v in tool.items()]
            + [{"problems": f"{f} test, calculator offered", "n": sum(e.family == f for e in splits["test"]),
                "calculator offered": v} for f, v in other.items()])
    d.text(f"What to look at: on held-out problems in familiar wording exact match is "
           f"{tool['val']['without']:.1%} without the calculator and {tool_acc:.1%} with it "
           "(seed target: above 80% with the tool: "
           f"{'met' if tool_acc > 0.8 else 'missed'}). In the new phrasing it is {new_acc:.1%}, against "
           f"{tool['test']['without']:.1%} without: the arithmetic is exact either way, so what fails is reading "
           "the operation off an unseen sentence. The failures below show which operation the model picked "
           "instead; a model this small keys on surface words, not on meaning.")
    bad = [r for r in tool["test"]["records"] if not r["correct"]][:4]
    if bad:
        d.table([{"prompt": r["prompt"], "answer": r["answer"], "turn": runner.md_cell(r["turn"])}
                 for r in bad])

    hostile = hostile_check()
    d.section("The calculator under hostile input")
    d.text(f"{hostile['n']} hostile inputs (imports, names, attribute and dunder access, lambdas, comprehensions, "
           "huge exponents and products, deep nesting, long strings; `calculator.HOSTILE`) through the same "
           f"`run_tool` the runtime calls: {hostile['n'] - len(hostile['escapes'])} refused, "
           f"{len(hostile['escapes'])} evaluated. Slowest refusal {hostile['max_ms']:.2f} ms, largest "
           f"Python allocation peak {hostile['max_kib']:.0f} KiB. The model's own calls go through the same "
           "function, so a model that learned to write `__import__('os')` would get an error string back.")
    return {"base_params": base.model.num_params(), "base_val_loss": round(base.val_loss, 4),
            "overfit_loss": round(of_loss, 4), "overfit_exact_match": round(of_em, 4),
            "sft_val_loss": round(sft.val_loss, 4), "sft_train_loss": round(h["train"][-1], 4),
            "loss_end_token": round(dec["parts"]["END"]["loss"], 4),
            "exact_match_base": round(base_test, 4),
            "exact_match_val": round(acc_val["all"], 4), "exact_match_test": round(acc_test["all"], 4),
            **{f"exact_match_test_{f}": round(acc_test[f], 4) for f in fams},
            "tool_use_accuracy": round(tool_acc, 4), "no_tool_accuracy": round(tool["val"]["without"], 4),
            "tool_use_accuracy_new_phrasing": round(new_acc, 4),
            "no_tool_accuracy_new_phrasing": round(tool["test"]["without"], 4),
            "tool_call_rate": round(tool["val"]["called"], 4), "n_tool_problems": tool["val"]["n"],
            "n_tool_problems_new_phrasing": tool["test"]["n"],
            **{f"tool_accuracy_{f}": round(v, 4) for f, v in other.items()},
            "hostile_inputs": hostile["n"], "hostile_escapes": len(hostile["escapes"]),
            "hostile_max_ms": round(hostile["max_ms"], 3),
            "seconds_per_answer": round(test_rec[0]["seconds"], 5)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
