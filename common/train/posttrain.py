"""Sprint 5's models: a small character-level base model, its SFT fine-tune, and how to ask them things.

    base = pretrain_base(BaseRecipe(), "cpu", cache_dir=ctx.cache_dir("posttrain"))   # once, then cached
    sft = train_sft(base, SFTRecipe(), "cpu", cache_dir=ctx.cache_dir("posttrain"))   # likewise
    replies = complete(sft.model, tok, [instruct.render(ex, False)[0] for ex in test])
    records = score(sft.model, tok, test)                 # greedy answers, checked by value, per example
    records = score(sft.model, tok, word_problems, tools=True)   # the calculator offered and run

**The base model** follows Sprint 3's recipe (day 30's `best_config.yaml`: LayerNorm, GELU MLP, AdamW
with weight decay 0.1, warm-up-stable-decay schedule, clipping at 1) with Sprint 4's positions (RoPE,
`days/day40/attention.yaml`), at a size a laptop CPU pretrains in minutes: 4 layers of width 128 over
characters of TinyStories, `ChatTokenizer`'s
vocabulary (so chat markers have ids from the start, untrained until SFT).

**SFT** continues from the base weights on `common.data.instruct` examples, with the loss on the
assistant's tokens only (`MaskedBatches`). Examples whose answer comes from an expression appear twice:
answered directly, and with `<|tools|>` first, answered through a calculator call (`tool_use`). One model
thus answers with or without the calculator, and the two can be compared on the same questions.

Both are cached under a hash of everything that decides the weights (recipe, base key, seed, device
type), like `common.lab.retrieval`: the days of the sprint train them once and load them after.

Generation is batched and exact: prompts are right-padded and every step recomputes the batch's
sequences (no KV cache), so a row's logits depend on its own tokens only; finished rows leave the batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from common import data
from common.data import instruct
from common.data.chat import PAD, ChatTokenizer, MaskedBatches, to_ascii
from common.eval import metrics, tool_use
from common.eval.calculator import run_tool
from common.nn import sampling
from common.nn.model import GPT, GPTConfig
from common.run import atomic
from common.train.loop import TrainConfig, evaluate, train

TOKENIZER = ChatTokenizer()


class Trained(NamedTuple):
    """A trained (or cached) model in eval mode, with its final val loss, eval history and cache key."""

    model: GPT
    val_loss: float
    history: dict          # step, train, val of the evaluations during training
    result: object         # the TrainResult, or None when the weights came from the cache
    key: str               # the hash the weights are cached under (a later stage includes it in its own)


@dataclass
class BaseRecipe:
    """The base model: Sprint 3's recipe at CPU size, pretrained on characters of TinyStories."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128
    pos: str = "rope"        # Sprint 4's choice (days/day40/attention.yaml); Sprint 3's table of positions is
    norm: str = "layer"      # length-bound, and the copy tasks here need relative positions (day 36)
    mlp: str = "gelu"
    steps: int = 1200
    batch_size: int = 32
    lr: float = 3e-3         # day 30's 1e-3 is for a 27M-parameter model; a 0.8M one takes a larger step
    weight_decay: float = 0.1
    schedule: str = "wsd"
    decay_frac: float = 0.2
    warmup_frac: float = 0.05
    corpus_chars: int = 0    # 0: the whole TinyStories slice
    eval_iters: int = 10

    def model_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, pos=self.pos, norm=self.norm, mlp=self.mlp)

    def train_config(self) -> TrainConfig:
        return TrainConfig(max_iters=self.steps, lr=self.lr, min_lr=self.lr / 10, schedule=self.schedule,
                           decay_frac=self.decay_frac, warmup_iters=max(1, int(self.steps * self.warmup_frac)),
                           weight_decay=self.weight_decay, eval_interval=max(1, self.steps // 10),
                           eval_iters=self.eval_iters, log_interval=10, dtype="float32")


@dataclass
class SFTRecipe:
    """Supervised fine-tuning on the generated instructions, from the base weights."""

    n_per_family: int = 3000
    data_seed: int = 0
    tools: bool = True       # also train calculator traces for the examples with an expression
    steps: int = 1600
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_frac: float = 0.05
    eval_iters: int = 8

    def train_config(self) -> TrainConfig:
        return TrainConfig(max_iters=self.steps, lr=self.lr, min_lr=self.lr / 10, schedule="cosine",
                           warmup_iters=max(1, int(self.steps * self.warmup_frac)), weight_decay=self.weight_decay,
                           eval_interval=max(1, self.steps // 10), eval_iters=self.eval_iters, log_interval=10,
                           dtype="float32")


# ---------------------------------------------------------------------------------------------- data


def pretraining_text(corpus_chars: int = 0, val_frac: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """(train ids, val ids): TinyStories in `ChatTokenizer` ids, folded to ASCII, the last val_frac held out."""
    text = to_ascii(data.load_text("tinystories", "TinyStories-train-first2MiB.txt"))
    if corpus_chars:
        text = text[:corpus_chars]
    ids = torch.tensor(TOKENIZER.encode(text), dtype=torch.long)
    cut = int(len(ids) * (1 - val_frac))
    return ids[:cut], ids[cut:]


def sft_sequences(examples, tools: bool = True, tok: ChatTokenizer = TOKENIZER) -> list[tuple[list, list]]:
    """(ids, mask) per training sequence: every example answered directly, and those with an expression
    also through a calculator call (when `tools`); the mask covers what the assistant writes."""
    out = []
    for ex in examples:
        out.append(tok.encode_spans(*_one_span(instruct.render(ex))))
        if tools and ex.expression:
            out.append(tok.encode_spans(*tool_use.render_tool_trace(ex)))
    return out


def _one_span(rendered):
    text, span = rendered
    return text, [span]


def sft_splits(recipe: SFTRecipe) -> dict:
    """The instruction splits the SFT recipe trains and scores on."""
    return instruct.generate(recipe.n_per_family, recipe.data_seed)


# ---------------------------------------------------------------------------------------------- training


def digest(key: dict) -> str:
    """A 12-hex-digit hash of a cache key (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached(cache_dir, name: str, key: dict, model_cfg: GPTConfig, device, fit) -> Trained:
    """Load `name`_<hash of key>.pt from cache_dir, or run fit() -> (model, val_loss, history, result) and save it."""
    digest_ = digest(key)
    path = Path(cache_dir) / f"{name}_{digest_}.pt" if cache_dir is not None else None
    if path is not None and path.is_file():
        saved = torch.load(path, map_location=device, weights_only=True)
        model = GPT(model_cfg).to(device)
        model.load_state_dict(saved["model"])
        return Trained(model.eval(), saved["val_loss"], saved["history"], None, digest_)
    model, val_loss, history, result = fit()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            torch.save({"model": model.state_dict(), "val_loss": val_loss, "history": history, "key": key}, tmp)
    return Trained(model.eval(), val_loss, history, result, digest_)


def pretrain_base(recipe: BaseRecipe, device="cpu", *, seed: int = 0, cache_dir=None, tracker=None,
                  show_progress: bool = False) -> Trained:
    """The base model, pretrained on TinyStories characters (or loaded from `cache_dir`)."""
    device = torch.device(device)
    key = dict(stage="base", recipe=dataclasses.asdict(recipe), seed=seed, device=device.type)

    def fit():
        tr, va = pretraining_text(recipe.corpus_chars)
        tb = data.Batches(tr, recipe.block_size, recipe.batch_size, device, seed=1)
        vb = data.Batches(va, recipe.block_size, recipe.batch_size, device, seed=2)
        torch.manual_seed(seed)
        model = GPT(recipe.model_config()).to(device)
        res = train(model, tb, vb, recipe.train_config(), device, tracker, show_progress=show_progress)
        val = evaluate(model, {"val": vb.fixed(recipe.eval_iters)}, device)["val"]
        return model, val, {k: list(res.history[k]) for k in ("step", "train", "val")}, res

    return cached(cache_dir, "base", key, recipe.model_config(), device, fit)


def sft_batches(recipe: SFTRecipe, block_size: int, device="cpu", splits=None):
    """(train MaskedBatches, val MaskedBatches) for the recipe's instruction splits."""
    splits = splits or sft_splits(recipe)
    return tuple(MaskedBatches(sft_sequences(splits[s], recipe.tools), recipe.batch_size, block_size, device,
                               TOKENIZER.pad_id) for s in ("train", "val"))


def train_sft(base: Trained, recipe: SFTRecipe, device="cpu", *, seed: int = 0, cache_dir=None, tracker=None,
              show_progress: bool = False, splits=None) -> Trained:
    """Fine-tune a copy of `base.model` on the recipe's instructions (or load the cached result)."""
    device = torch.device(device)
    key = dict(stage="sft", base=base.key, recipe=dataclasses.asdict(recipe), seed=seed, device=device.type)

    def fit():
        model = GPT(base.model.cfg).to(device)
        model.load_state_dict(base.model.state_dict())
        tb, vb = sft_batches(recipe, model.cfg.block_size, device, splits)
        torch.manual_seed(seed)
        res = train(model, tb, vb, recipe.train_config(), device, tracker, show_progress=show_progress)
        val = evaluate(model, {"val": vb.fixed(recipe.eval_iters)}, device)["val"]
        return model, val, {k: list(res.history[k]) for k in ("step", "train", "val")}, res

    return cached(cache_dir, "sft", key, base.model.cfg, device, fit)


# The recipes of each preset: every day of the sprint asks for the same ones, so they share one cache entry.
RECIPES = {
    "nano": (BaseRecipe(n_layer=2, n_head=2, n_embd=32, steps=30, batch_size=8, eval_iters=2, corpus_chars=200_000),
             SFTRecipe(n_per_family=60, steps=30, batch_size=8, eval_iters=2)),
    "cpu": (BaseRecipe(), SFTRecipe()),
    "gpu": (BaseRecipe(n_layer=6, n_head=8, n_embd=256, steps=4000, batch_size=64),
            SFTRecipe(steps=3000, batch_size=64, lr=1e-3)),
}


def cache_dir_for(ctx) -> Path:
    """Where a day's run keeps the sprint's models: the project's `.cache/posttrain` for every full-size run
    (a recorded run, a variant, `make reproduce` into a scratch folder), so the days share one base model and
    one SFT model; a `--quick` run's own scratch cache. Safe to share: every file is keyed by a hash of what
    decided its weights."""
    from common import ROOT

    if getattr(ctx, "quick", False):
        return ctx.cache_dir("posttrain")
    path = Path(getattr(ctx, "root", ROOT)) / ".cache" / "posttrain"
    path.mkdir(parents=True, exist_ok=True)
    return path


def recipes(preset: str) -> tuple[BaseRecipe, SFTRecipe]:
    """(base recipe, SFT recipe) of a preset: nano (smoke size), cpu (the default) or gpu."""
    if preset not in RECIPES:
        raise ValueError(f"unknown preset {preset!r}, choose from {list(RECIPES)}")
    return RECIPES[preset]


def models_for(preset: str, device="cpu", cache_dir=None, *, seed: int = 0, tracker=None,
               show_progress: bool = False) -> tuple[Trained, Trained]:
    """(base, SFT) of the preset's recipes: trained on first use, loaded from `cache_dir` after."""
    base_r, sft_r = recipes(preset)
    scoped = (lambda name: tracker.scoped(name)) if tracker is not None else (lambda name: None)
    base = pretrain_base(base_r, device, seed=seed, cache_dir=cache_dir, tracker=scoped("base"),
                         show_progress=show_progress)
    sft = train_sft(base, sft_r, device, seed=seed, cache_dir=cache_dir, tracker=scoped("sft"),
                    show_progress=show_progress)
    return base, sft


# ---------------------------------------------------------------------------------------------- generation


@torch.no_grad()
def complete(model: GPT, prompts: list[str], max_new: int = 24, stops=(instruct.END,), processors=None,
             generator=None, batch_size: int = 128, tok: ChatTokenizer = TOKENIZER) -> list[str]:
    """Each prompt's continuation, up to and including the first stop marker (or max_new tokens).

    Greedy without `processors`; else sampled from the processed logits (`common.nn.sampling`), drawing
    from `generator`. The rows of a batch never see each other: padding is on the right, and the logits
    read at a row's last real position see only that row's tokens.
    """
    model.eval()
    stop_ids = {tok.id(s) for s in stops}
    device = next(model.parameters()).device
    out = [""] * len(prompts)
    for b0 in range(0, len(prompts), batch_size):
        rows = {b0 + i: tok.encode(p) for i, p in enumerate(prompts[b0:b0 + batch_size])}
        new = {i: [] for i in rows}
        for _ in range(max_new):
            live = [i for i in rows if len(rows[i]) < model.cfg.block_size]
            if not live:
                break
            T = max(len(rows[i]) for i in live)
            x = torch.full((len(live), T), tok.pad_id, dtype=torch.long)
            for r, i in enumerate(live):
                x[r, :len(rows[i])] = torch.tensor(rows[i])
            logits, _ = model(x.to(device))
            last = torch.tensor([len(rows[i]) - 1 for i in live], device=device)
            step_logits = logits[torch.arange(len(live), device=device), last].float()  # (B, V)
            if processors is None:
                nxt = step_logits.argmax(-1)
            else:
                nxt = sampling.sample(step_logits, x.to(device), processors, generator)[:, 0]
            for r, i in enumerate(live):
                t = int(nxt[r])
                rows[i].append(t)
                new[i].append(t)
                if t in stop_ids:
                    del rows[i]
            if not rows:
                break
        for i, ids in new.items():
            out[i] = tok.decode(ids)
    return out


def answer_with_tools(model: GPT, examples, max_calls: int = 2, max_new: int = 32, processors=None,
                      generator=None) -> list[tuple[str, list]]:
    """(assistant turn, [(expression, result)]) per example, the calculator offered and executed.

    Batched `tool_use.run_with_calculator`: all turns continue until CALL_END or END; each call that
    ends in CALL_END is evaluated by the safe calculator, its result appended, and the turn goes on.
    """
    turns = {i: "" for i in range(len(examples))}
    calls = {i: [] for i in turns}
    heads = [tool_use.tool_prompt(ex) for ex in examples]
    live = list(turns)
    for _ in range(max_calls + 1):
        if not live:
            break
        pieces = complete(model, [heads[i] + turns[i] for i in live], max_new,
                          (tool_use.CALL_END, instruct.END), processors, generator)
        going = []
        for i, piece in zip(live, pieces):
            turns[i] += piece
            if piece.endswith(tool_use.CALL_END) and tool_use.CALL in piece and len(calls[i]) < max_calls:
                expression = piece[piece.rindex(tool_use.CALL) + len(tool_use.CALL):-len(tool_use.CALL_END)]
                result = run_tool(expression)
                calls[i].append((expression, result))
                turns[i] += f"{tool_use.RESULT}{result}{tool_use.RESULT_END}"
                going.append(i)
        live = going
    return [(turns[i], calls[i]) for i in range(len(examples))]


def score(model: GPT, examples, tools: bool = False, max_new: int = 24, processors=None, generator=None) -> list[dict]:
    """One record per example: its family and template, the reply, whether it matches the answer (by value),
    the reply's length in tokens, and (with `tools`) the calculator calls made."""
    t0 = time.perf_counter()
    if tools:
        answered = answer_with_tools(model, examples, processors=processors, generator=generator)
        replies = [(tool_use.final_answer(turn), turn, c) for turn, c in answered]
    else:
        texts = complete(model, [instruct.render(ex, False)[0] for ex in examples], max_new,
                         processors=processors, generator=generator)
        replies = [(instruct.parse_reply(t), t, []) for t in texts]
    per_example = (time.perf_counter() - t0) / max(1, len(examples))
    return [{"family": ex.family, "template": ex.template, "prompt": ex.prompt, "answer": ex.answer,
             "reply": r, "turn": turn, "correct": metrics.exact_match(r, ex.answer),
             "tokens": len(TOKENIZER.encode(turn)), "calls": c, "seconds": per_example}
            for ex, (r, turn, c) in zip(examples, replies)]


def accuracy_by_family(records: list[dict]) -> dict:
    """{family: exact-match rate} over score() records, plus "all"."""
    fam: dict = {}
    for r in records:
        fam.setdefault(r["family"], []).append(r["correct"])
    out = {f: sum(v) / len(v) for f, v in sorted(fam.items())}
    out["all"] = sum(r["correct"] for r in records) / max(1, len(records))
    return out


__all__ = ["BaseRecipe", "SFTRecipe", "RECIPES", "recipes", "models_for", "cache_dir_for", "Trained", "TOKENIZER",
           "PAD",
           "pretrain_base", "train_sft", "complete",
           "answer_with_tools", "score", "accuracy_by_family", "sft_sequences", "sft_batches", "sft_splits",
           "pretraining_text"]
