"""Blind A/B ratings by a person: two models' answers shown as A and B in random order, scored 1-5, kept in CSV.

    items = blind_items(prompts, {"sft": replies_sft, "dpo": replies_dpo}, seed=0)
    rate(items, Path("results/day44/ratings.csv"))   # asks on the terminal; every answer is saved at once
    summary(Path("results/day44/ratings.csv"))       # per model: mean rating, n; preference shares

The rater never sees which model wrote which answer: each item's order is drawn from `seed`, and only the CSV
records it. The file is rewritten atomically after every item, so stopping (Ctrl-C, a closed laptop) loses at
most the item on screen, and a second session resumes with the items not yet rated. The sprint report reads
the same file (`common/course/report.py`).
"""

from __future__ import annotations

import csv
import io
import random
import time
from collections.abc import Callable
from pathlib import Path

from common.run import atomic

FIELDS = ["time", "item", "prompt", "reply_a", "reply_b", "model_a", "model_b", "rating_a", "rating_b", "preferred"]
SCALE = {1: "wrong or useless", 2: "mostly wrong", 3: "partly right", 4: "right, small flaw", 5: "right and clean"}


def blind_items(prompts: list[str], replies: dict[str, list[str]], seed: int = 0) -> list[dict]:
    """One item per prompt with the two models' replies as A and B, the order drawn per item from `seed`."""
    if len(replies) != 2:
        raise ValueError(f"blind A/B rating compares two models, got {len(replies)}: {list(replies)}")
    (m1, r1), (m2, r2) = replies.items()
    if not len(prompts) == len(r1) == len(r2):
        raise ValueError("need one reply per prompt from each model")
    rng = random.Random(seed)
    items = []
    for i, (p, a, b) in enumerate(zip(prompts, r1, r2)):
        flip = rng.random() < 0.5
        items.append({"item": i, "prompt": p, "reply_a": b if flip else a, "reply_b": a if flip else b,
                      "model_a": m2 if flip else m1, "model_b": m1 if flip else m2})
    return items


def read(path: Path) -> list[dict]:
    """The rows of a ratings CSV (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS)
    w.writeheader()
    w.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, buf.getvalue())


def _ask_choice(ask: Callable[[str], str], show: Callable[[str], None], question: str, allowed: set[str]) -> str:
    while True:
        answer = ask(question).strip().lower()
        if answer in allowed:
            return answer
        show(f"Please answer one of: {', '.join(sorted(allowed))}.")


def rate(items: list[dict], path: Path, ask: Callable[[str], str] = input, show: Callable[[str], None] = print,
         limit: int | None = None) -> int:
    """Ask for ratings of the items not yet in `path`; returns how many were rated in this session.

    Per item: a 1-5 rating of A, of B, and which is better (a, b, or = for a tie); `q` stops the session.
    """
    path = Path(path)
    rows = read(path)
    done = {int(r["item"]) for r in rows}
    todo = [it for it in items if it["item"] not in done][:limit]
    show("Rate each answer 1-5: " + "; ".join(f"{k} = {v}" for k, v in SCALE.items()) + ". Type q to stop.")
    n = 0
    for it in todo:
        show(f"\n[{len(done) + n + 1}/{len(items)}] {it['prompt']}\n  A: {it['reply_a']}\n  B: {it['reply_b']}")
        answers = []
        for q, allowed in (("rating of A (1-5): ", set("12345")), ("rating of B (1-5): ", set("12345")),
                           ("better answer (a / b / =): ", {"a", "b", "="})):
            a = _ask_choice(ask, show, q, allowed | {"q"})
            if a == "q":
                return n
            answers.append(a)
        rows.append({**{k: it[k] for k in ("item", "prompt", "reply_a", "reply_b", "model_a", "model_b")},
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "rating_a": answers[0], "rating_b": answers[1],
                     "preferred": answers[2]})
        _write(path, rows)
        n += 1
    return n


def summary(path: Path) -> dict:
    """{"n": items rated, "models": {model: {"mean": mean rating, "n": ratings}}, "preferred": {model or "tie":
    share}}; n = 0 and empty dicts when nothing is rated yet."""
    rows = read(path)
    scores: dict = {}
    pref: dict = {}
    for r in rows:
        for side in ("a", "b"):
            scores.setdefault(r[f"model_{side}"], []).append(int(r[f"rating_{side}"]))
        who = "tie" if r["preferred"] == "=" else r[f"model_{r['preferred']}"]
        pref[who] = pref.get(who, 0) + 1
    return {"n": len(rows), "models": {m: {"mean": sum(v) / len(v), "n": len(v)} for m, v in sorted(scores.items())},
            "preferred": {k: v / len(rows) for k, v in sorted(pref.items())} if rows else {}}
