"""Day 37: needle in a haystack — a prompt generator, a model that retrieves, and the depth x length heatmap.

A needle `|k=4821|` sits at depth d of a Tiny Shakespeare haystack of L characters; the prompt ends in
the query `|k=` and the answer is the four digits (`common/data/needle.py`). An oracle that searches the
string scores 100% everywhere: the generator is sound. A two-layer ALiBi GPT trained on prompts of
16..256 characters, loss on the answer only, is then scored by exact match of its greedy answer at
every (length, depth) up to 2048 characters, 8x past anything it trained on
(`common/lab/retrieval.py`). A last table tests a probability model of retrieval: are the digits of one
answer right independently, or all together (each is a look-up over the same distance)?
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.data import needle
from common.lab import retrieval
from common.run import plotting, runner

DAY = 37
KEY_METRICS = ["oracle_acc", "val_loss", "acc_within_train_len", "acc_beyond_train_len", "acc_max_len"]


@dataclass
class Config:
    train_len: int = 256       # longest training prompt (lengths log-uniform from min_len)
    min_len: int = 16          # shortest training prompt
    warm_len: int = 64         # length warm-up: the first warm_steps batches are at most warm_len long
    warm_steps: int = 800
    n_digits: int = 4          # answer digits; chance of an exact match 10^-n_digits
    batch_tokens: int = 2048   # tokens per batch: many short prompts or a few long ones
    n_layer: int = 2
    n_head: int = 8            # ALiBi slopes 1/2 .. 1/256; four heads learned the copy far more slowly
    n_embd: int = 128
    pos: str = "alibi"         # alibi | rope: no position table, so prompts may be longer than train_len
    steps: int = 1400
    lr: float = 3e-3
    lengths: str = "64,128,256,512,1024,2048"  # heatmap columns (prompt lengths in characters)
    depths: str = "0,0.25,0.5,0.75,1"          # heatmap rows: 0 = the needle first, 1 = just before the query
    n_trials: int = 20         # prompts per cell


PRESETS = {"nano": dict(train_len=48, warm_len=32, warm_steps=10, batch_tokens=512, n_layer=1, n_head=2, n_embd=16,
                        steps=20, lengths="32,64", depths="0,1", n_trials=4),
           "cpu": {},
           # prompts up to 1024 while training (not yet run on a GPU), heatmap to 16k, more prompts per cell
           "gpu": dict(train_len=1024, batch_tokens=16384, steps=4000, lengths="64,256,1024,2048,4096,8192,16384",
                       n_trials=50)}


def task_of(cfg: Config) -> retrieval.RetrievalTask:
    return retrieval.RetrievalTask(train_len=cfg.train_len, min_len=cfg.min_len, warm_len=cfg.warm_len,
                                   warm_steps=cfg.warm_steps, n_digits=cfg.n_digits, batch_tokens=cfg.batch_tokens)


def show_example(d, task, tok, va) -> None:
    d.section("The generator")
    ex = needle.make_example(va, tok, length=120, depth=0.5, n_digits=task.n_digits, seed=0)
    d.text(f"A prompt of L = 120 characters with the needle at depth 0.5 (validation text; the needle starts at "
           f"position {ex.needle_pos}, the query at {ex.query_pos}: distance {ex.distance}). The answer is "
           f"`{ex.digits}`; a model sees the prompt and must produce it:")
    d.text("```text\n" + tok.decode(ex.prompt) + "\n```")
    d.text(f"Needle `|k=` + {task.n_digits} digits + `|` ({needle.needle_len(task.n_digits)} characters), query "
           f"`|k=` (3); the rest is haystack, a window of Tiny Shakespeare. Depth d puts round(d·H) haystack "
           f"characters before the needle, H = L − {needle.min_length(task.n_digits)}. The digits are uniform and "
           f"independent, so a guess is exactly right with probability 10^-{task.n_digits}.")


def grid_table(acc: dict, oracle: dict, lengths, depths) -> list[dict]:
    rows = [{"depth": f"{dp:g}", **{f"L={L}": acc[(L, dp)] for L in lengths}} for dp in depths]
    rows.append({"depth": "mean", **{f"L={L}": sum(acc[(L, dp)] for dp in depths) / len(depths) for L in lengths}})
    rows.append({"depth": "oracle (all depths)", **{f"L={L}": min(oracle[(L, dp)] for dp in depths)
                                                    for L in lengths}})
    return rows


def probability_rows(trials: list[dict], lengths, k: int) -> list[dict]:
    """Per length: per-position accuracy p_j (teacher-forced), the measured exact match, and what it would be if
    the digits were independent (the product) or fully dependent (the minimum, the largest possible), with the
    smallest possible value max(0, sum p_j - (k - 1)) (the Frechet bounds)."""
    # >>> exercise day37.probability_rows: p_j per position, measured exact match, product, min and lower bound
    rows = []
    for L in lengths:
        rs = [r for r in trials if r["length"] == L]
        p = [sum(r["digit_hits"][j] for r in rs) / len(rs) for j in range(k)]
        rows.append({"L": L, **{f"p{j + 1}": p[j] for j in range(k)},
                     "exact (measured)": sum(r["hit"] for r in rs) / len(rs),
                     "∏ p_j (independent)": math.prod(p), "min p_j (all or nothing)": min(p),
                     "lower bound": max(0.0, sum(p) - (k - 1))})
    return rows
    # <<< exercise day37.probability_rows


def train_section(cfg: Config, ctx: runner.Context, task, tok):
    d = ctx.deliverable
    d.section("Training the retrieval model")
    mcfg = task.model_config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, pos=cfg.pos)
    tr = retrieval.train_retrieval_model(mcfg, task, cfg.steps, ctx.device, lr=cfg.lr, seed=ctx.seed,
                                         tracker=ctx.tracker.scoped("retrieval"), show_progress=not ctx.quick,
                                         cache_dir=ctx.cache_dir("retrieval"), retrain=True)
    train_b, _ = task.batches()
    ctx.record_throughput("retrieval", tr.result, tr.model, round(train_b.mean_block))
    h = tr.history
    d.text(f"A {cfg.n_layer}-layer GPT ({cfg.n_head} heads, width {cfg.n_embd}, `pos={cfg.pos}`, "
           f"{tr.model.num_params():,} parameters), {cfg.steps} steps of about {cfg.batch_tokens:,} tokens: each batch "
           f"draws one prompt length log-uniformly and holds as many prompts as fit "
           f"({cfg.batch_tokens // (cfg.min_len + cfg.n_digits - 1)} of {cfg.min_len} characters, "
           f"{cfg.batch_tokens // (cfg.train_len + cfg.n_digits - 1)} of {cfg.train_len}). Length warm-up: the first "
           f"{cfg.warm_steps} batches draw from {cfg.min_len}..{cfg.warm_len}, the rest from {cfg.min_len}.."
           f"{cfg.train_len}. Needle depth uniform in [0, 1]; cross-entropy on the {cfg.n_digits} answer digits only. "
           f"Both columns are fixed batches over the whole range {cfg.min_len}..{cfg.train_len} (train and val split).")
    d.table([{"step": s, "train CE (answer digits)": a, "val CE": b}
             for s, a, b in zip(h["step"], h["train"], h["val"])])
    learned = next((s for s, v in zip(h["step"], h["val"]) if v < 0.1), None)
    pre = [v for s, v in zip(h["step"], h["val"]) if s < cfg.warm_steps]
    post = [v for s, v in zip(h["step"], h["val"]) if s >= cfg.warm_steps]
    bump = (f"; the first evaluation after the warm-up reads {post[0]:.4f} against {pre[-1]:.4f} just before, "
            + (f"a bump as the model meets prompts up to {cfg.train_len} for the first time."
               if post[0] > pre[-1] else "no bump when the long prompts arrive.")) if pre and post else "."
    d.text(f"What to look at: a uniform guess over the digits costs ln 10 = {math.log(10):.3f} nats (over the whole "
           f"vocabulary, ln {tok.vocab_size} = {math.log(tok.vocab_size):.3f}); the first evaluation (step "
           f"{h['step'][0]}) reads {h['val'][0]:.3f} and the last {tr.val_loss:.4f} on the val split. "
           + (f"Val CE first falls below 0.1 at step {learned}"
              + (", inside the warm-up: the copy circuit forms on short prompts and already reaches the long ones"
                 if learned < cfg.warm_steps else ", after the warm-up: the long prompts finish the job") + bump
              if learned is not None and tr.val_loss < 0.1 else
              "The model has not learned to retrieve within this budget: the heatmap measures an unfinished model."))
    return tr


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, dev = ctx.deliverable, ctx.device
    task = task_of(cfg)
    tok, _, va = needle.needle_corpus(task.corpus)
    lengths = [int(v) for v in cfg.lengths.split(",")]
    depths = [float(v) for v in cfg.depths.split(",")]
    show_example(d, task, tok, va)

    oracle = retrieval.oracle_accuracy(task, lengths, depths, cfg.n_trials, seed=ctx.seed)
    oracle_acc = min(oracle.values())
    d.text(f"The oracle (`needle.oracle_retrieve`: string search for the first `|k=`) answers the "
           f"{len(oracle) * cfg.n_trials} prompts of the heatmap below with accuracy {oracle_acc:.0%} in its worst "
           f"cell. What to look at: "
           + ("every cell is 100%, so each prompt holds exactly one retrievable needle and its answer; a model's "
              "misses below are the model's." if oracle_acc == 1 else "a cell below 100% means a malformed prompt: "
              "the generator is broken, and the heatmap cannot be trusted."))

    tr = train_section(cfg, ctx, task, tok)

    d.section("Accuracy over depth x length")
    trials = retrieval.needle_trials(tr.model, task, lengths, depths, cfg.n_trials, dev, seed=ctx.seed)
    acc = retrieval.accuracy_grid(trials)
    d.table(grid_table(acc, oracle, lengths, depths), floatfmt=".2f")
    p = plotting.heatmap(ctx.plot_path("heatmap"), [[acc[(L, dp)] for L in lengths] for dp in depths],
                         "prompt length L (characters)", "needle depth d (0 = first, 1 = last)",
                         f"Needle retrieval (trained on L ≤ {cfg.train_len})",
                         cbar=f"exact match of {cfg.n_digits} digits ({cfg.n_trials} prompts per cell)", xticks=lengths,
                         yticks=[f"{dp:g}" for dp in depths], vmin=0, vmax=1)
    d.image(p, "Exact-match accuracy per (length, depth); the oracle scores 1 in every cell")
    inside = [acc[(L, dp)] for L in lengths for dp in depths if L <= cfg.train_len]
    beyond = [acc[(L, dp)] for L in lengths for dp in depths if L > cfg.train_len]
    far = max(lengths)
    near_far = acc[(far, max(depths))], acc[(far, min(depths))]
    solved = [L for L in lengths if min(acc[(L, dp)] for dp in depths) >= 0.9]
    d.text(f"What to look at: up to the training length ({cfg.train_len}) the mean accuracy is "
           f"{sum(inside) / max(1, len(inside)):.2f}"
           + (f"; beyond it {sum(beyond) / len(beyond):.2f}. " if beyond else ". ")
           + (f"Every depth stays ≥ 0.9 up to L = {max(solved)}. " if solved else
              "No length is solved at every depth. ")
           + f"At L = {far} a needle just before the query (depth {max(depths):g}) is found {near_far[0]:.0%} of the "
           f"time, one at the start (depth {min(depths):g}) {near_far[1]:.0%}: "
           + ("what decides a hit is the distance from needle to query more than the length of the prompt; "
              "the misses sit in long prompts with an early needle, where that distance is largest (day 38 "
              "measures the decay with distance)." if near_far[0] > near_far[1] + 0.2 else
              "depth makes little difference at this length."))

    d.section("A probability model of retrieval")
    k = cfg.n_digits
    rows = probability_rows(trials, lengths, k)
    d.table(rows, floatfmt=".3f")
    spread = [r for r in rows if r["min p_j (all or nothing)"] - r["∏ p_j (independent)"] > 0.05]
    where = [(r["exact (measured)"] - r["∏ p_j (independent)"])
             / (r["min p_j (all or nothing)"] - r["∏ p_j (independent)"]) for r in spread]
    mean_where = sum(where) / len(where) if where else None
    d.text(f"Per length, pooled over depths: p_j is the accuracy of answer digit j given the true digits before it "
           f"(teacher forcing). Whatever the dependence between digits, exact match lies between max(0, Σ p_j − "
           f"{k - 1}) and min p_j. If the digits were right independently it would be ∏ p_j; if a prompt is either "
           f"retrieved at every digit or at none, min p_j. Chance is 10^-{k} = {10.0 ** -k:g}. What to look at: "
           + (f"where the two models differ by more than 0.05 (L = {', '.join(str(r['L']) for r in spread)}), the "
              f"measured exact match sits {', '.join(f'{w:.0%}' for w in where)} of the way from the independent "
              "prediction to the all-or-nothing one: "
              + ("closer to all-or-nothing: the digits of one prompt succeed or fail together." if mean_where >= 0.8
                 else "close to independent: misses are spread over the digits." if mean_where <= 0.2 else
                 "the digits of one prompt fail together more often than independent digits would (each is a "
                 "look-up over the same distance), but not always together.")
              if spread else "the two models agree at every length here (the digits are all right, or all wrong)."))

    return {"oracle_acc": round(oracle_acc, 4), "val_loss": round(tr.val_loss, 4),
            "acc_within_train_len": round(sum(inside) / max(1, len(inside)), 4),
            "acc_beyond_train_len": round(sum(beyond) / len(beyond), 4) if beyond else None,
            "acc_max_len": round(sum(acc[(far, dp)] for dp in depths) / len(depths), 4),
            **{f"acc_L{L}": round(sum(acc[(L, dp)] for dp in depths) / len(depths), 4) for L in lengths},
            "first_digit_acc": round(sum(r["digit_hits"][0] for r in trials) / len(trials), 4),
            "exact_between_models": None if mean_where is None else round(mean_where, 4),
            "chance_exact": 10.0 ** -k}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
