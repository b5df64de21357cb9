"""Day 21: tokenizers — SentencePiece BPE and unigram at 16k/32k, and a byte-level BPE from scratch, compared.

All tokenizers learn from one combined corpus (Tiny Shakespeare + WikiText-2 train + the TinyStories 2 MiB slice,
non-empty lines, shuffled with the seed); ByteBPE trains on a slice of it (pure Python). Every statistic is measured
on held-out text, WikiText-2 valid: bytes per token, tokens per line, unknown-token rate, and the Zipf exponent of the
token-frequency curve. Models and vocab files go into ctx.cache_dir().
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from common import data
from common.data.tokenizers import ByteBPE, train_sentencepiece
from common.run import plotting, runner
from common.run.progress_bar import progress

DAY = 21
# the metrics the README and sprint summaries show
KEY_METRICS = ["sp_bpe_16k_bytes_per_token", "sp_bpe_32k_bytes_per_token", "sp_unigram_16k_bytes_per_token",
               "zipf_s_words", "bytebpe_roundtrip"]
CORPORA = [("tinyshakespeare", None), ("wikitext2", "train.txt"), ("tinystories", "TinyStories-train-first2MiB.txt")]
PROBE = "Tokenizers meet naïve café owners in Zürich 🙂 — 東京 αβγ"


@dataclass
class Config:
    sp_vocabs: str = "16000,32000"      # SentencePiece vocab sizes (each trained as bpe and unigram)
    sp_train_bytes: int = 0             # bytes of shuffled combined lines SentencePiece sees (0 = all, ~14 MB)
    bpe_vocabs: str = "512,1024,2048,4096"  # ByteBPE sizes (256 bytes + merges)
    bpe_train_bytes: int = 400_000      # ByteBPE training slice of the same shuffled lines
    heldout_bytes: int = 0              # WikiText-2 valid prefix used for the statistics (0 = all, 1.1 MB)


PRESETS = {"nano": dict(sp_vocabs="400", sp_train_bytes=150_000, bpe_vocabs="300", bpe_train_bytes=30_000,
                        heldout_bytes=40_000),
           "cpu": {}, "gpu": {}}  # tokenizer training is CPU work: the gpu preset is the cpu one


def sizes(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def zipf_fit(counts) -> tuple[float, np.ndarray, np.ndarray]:
    """Least squares of log10(freq) on log10(rank) over every rank with a nonzero count; returns (s, ranks, freqs)
    with freq ~ rank^-s."""
    f = np.sort(np.asarray([c for c in counts if c > 0], dtype=float))[::-1]
    r = np.arange(1, len(f) + 1, dtype=float)
    slope, _ = np.polyfit(np.log10(r), np.log10(f), 1)
    return -float(slope), r, f


def stats(name, kind, vocab, ids_per_line, unk_id, heldout_bytes, secs, train_bytes):
    flat = [i for ids in ids_per_line for i in ids]
    lens = np.array([len(ids) for ids in ids_per_line])
    s, _, _ = zipf_fit(Counter(flat).values())
    return {"tokenizer": name, "kind": kind, "vocab": vocab, "train MB": train_bytes / 1e6, "train s": secs,
            "bytes/token": heldout_bytes / len(flat), "mean tok/line": lens.mean(),
            "p95 tok/line": float(np.percentile(lens, 95)),
            "unk rate": (sum(i == unk_id for i in flat) / len(flat)) if unk_id is not None else 0.0,
            "zipf s": s, "_counts": Counter(flat)}


def main(cfg: Config, ctx) -> dict:
    lines = [ln for n, f in CORPORA for ln in data.load_text(n, f).splitlines() if ln.strip()]
    random.Random(ctx.seed).shuffle(lines)
    if cfg.sp_train_bytes:
        total, k = 0, 0
        while k < len(lines) and total < cfg.sp_train_bytes:
            total, k = total + len(lines[k].encode()) + 1, k + 1
        lines = lines[:k]
    cache = ctx.cache_dir()
    corpus = cache / "combined_train.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sp_bytes = corpus.stat().st_size
    bpe_text = corpus.read_bytes()[:cfg.bpe_train_bytes].decode("utf-8", errors="ignore")
    held = data.load_text("wikitext2", "valid.txt")
    if cfg.heldout_bytes:
        held = held.encode()[:cfg.heldout_bytes].decode("utf-8", errors="ignore")
    held_lines = [ln for ln in held.splitlines() if ln.strip()]
    held_bytes = sum(len(ln.encode()) for ln in held_lines)  # statistics over non-empty lines, newlines excluded

    rows, probes, files = [], [], []
    bar = progress(total=2 * len(sizes(cfg.sp_vocabs)) + 1 + len(sizes(cfg.bpe_vocabs)), desc="train tokenizers",
                   disable=ctx.quick or None)  # each one takes seconds: show which is training
    for kind in ("bpe", "unigram"):
        for v in sizes(cfg.sp_vocabs):
            bar.set_postfix_str(f"SentencePiece {kind} {v}")
            prefix = cache / f"sp_{kind}_{v}"
            t0 = time.perf_counter()
            sp = train_sentencepiece(corpus, prefix, v, kind, hard_vocab_limit=False)
            secs = time.perf_counter() - t0
            name = f"sp-{kind}-{v // 1000}k" if v >= 1000 else f"sp-{kind}-{v}"
            rows.append(stats(name, f"SentencePiece {kind}", sp.vocab_size(), sp.encode(held_lines), sp.unk_id(),
                              held_bytes, secs, sp_bytes))
            rows[-1]["asked"] = v
            ctx.tracker.log(f"bytes_per_token/{name}", rows[-1]["bytes/token"], v)
            probes.append((name, sp.encode(PROBE, out_type=str), sp.decode(sp.encode(PROBE)) == PROBE))
            files += [prefix.with_suffix(".model"), prefix.with_suffix(".vocab")]
            bar.update()
    for v in [256] + sizes(cfg.bpe_vocabs):
        bar.set_postfix_str(f"ByteBPE {v}")
        t0 = time.perf_counter()
        bpe = ByteBPE.train(bpe_text, v)
        secs = time.perf_counter() - t0
        rows.append(stats(f"bytebpe-{v}", "ByteBPE (ours)", bpe.vocab_size, [bpe.encode(ln) for ln in held_lines],
                          None, held_bytes, secs, len(bpe_text.encode())))
        ctx.tracker.log("bytes_per_token/bytebpe", rows[-1]["bytes/token"], v)
        rows[-1]["asked"] = v
        probes.append((f"bytebpe-{v}", [bpe.token_str(i).replace(" ", "▁") for i in bpe.encode(PROBE)],
                       bpe.decode(bpe.encode(PROBE)) == PROBE))
        files.append(bpe.save(cache / f"bytebpe_{v}.merges"))
        bar.update()
    bar.close()
    words = Counter(w for ln in held_lines for w in ln.split())
    s_words, _, _ = zipf_fit(words.values())

    short = [f"{r['tokenizer']} stopped at {r['vocab']:,}" for r in rows
             if r["kind"].startswith("Sentence") and r["vocab"] < r["asked"]]
    short = f" ({'; '.join(short)}: the corpus supports no more pieces)" if short else ""
    ctx.deliverable.section("Tokenizers on held-out text (WikiText-2 valid)")
    cap = f"the first {cfg.sp_train_bytes:,} bytes of them" if cfg.sp_train_bytes else "all of them"
    names = " + ".join(n for n, _ in CORPORA)
    ctx.deliverable.text(f"Training corpus: {len(lines):,} shuffled non-empty lines of {names} = {sp_bytes / 1e6:.2f} "
                         f"MB for SentencePiece ({cap}, no `input_sentence_size` sampling); "
                         f"ByteBPE trains on its first {len(bpe_text.encode()) / 1e3:.0f} KB (pure Python). "
                         f"Held-out: {len(held_lines):,} non-empty lines, {held_bytes / 1e6:.2f} MB. SentencePiece "
                         "uses `hard_vocab_limit=false`, so `vocab` is what the trainer could actually build"
                         f"{short}. Zipf s: least-squares slope of log10 freq on log10 rank over all tokens seen in "
                         "the held-out text (freq ~ rank^-s).")
    ctx.deliverable.table([{k: v for k, v in r.items() if not k.startswith("_") and k != "asked"} for r in rows],
                          floatfmt=".3g")
    best = max(rows, key=lambda r: r["bytes/token"])
    ctx.deliverable.text(f"Most compact: **{best['tokenizer']}** at {best['bytes/token']:.2f} bytes/token. "
                         f"Whitespace words of the same text: Zipf s = {s_words:.2f}.")

    series = {}
    for kind in ("SentencePiece bpe", "SentencePiece unigram", "ByteBPE (ours)"):
        rs = [r for r in rows if r["kind"] == kind]
        series[kind] = ([r["vocab"] for r in rs], [r["bytes/token"] for r in rs])
    p = plotting.lines(ctx.plot_path("bytes_per_token"), series, "vocabulary size (tokens, log2)",
                       "bytes per token on held-out (bytes)", "Compression vs vocabulary size", logx=True,
                       markers=True)
    ctx.deliverable.image(p, "bytes per token vs vocabulary size")
    zs = {f"{r['tokenizer']} (s={r['zipf s']:.2f})": zipf_fit(r["_counts"].values())[1:] for r in rows
          if r["vocab"] > 256}
    zs[f"words (s={s_words:.2f})"] = zipf_fit(words.values())[1:]
    p = plotting.lines(ctx.plot_path("zipf"), zs, "rank (log10)", "frequency in held-out text (count, log10)",
                       "Zipf plot of token frequencies", logx=True, logy=True, logx_base=10)
    ctx.deliverable.image(p, "rank vs frequency, log-log; the legend gives each curve's fitted exponent s "
                             "(least squares of log freq on log rank, freq ~ rank^-s)")

    ctx.deliverable.section("How each tokenizer splits an unseen string")
    ctx.deliverable.text(f"Probe: `{PROBE}`")
    ctx.deliverable.table([{"tokenizer": n, "tokens": len(t), "round-trips": ok, "pieces": " · ".join(t)}
                           for n, t, ok in probes])
    ctx.deliverable.section("Tokenizer configs and vocab files")
    ctx.deliverable.text("SentencePiece: `model_type` bpe/unigram, `character_coverage` 0.9995 (default; rarer "
                         "characters become `<unk>`), `max_sentence_length` 16384, `hard_vocab_limit` false, "
                         "2 threads. ByteBPE: the `_CHUNK` pre-tokeniser of common/data/tokenizers.py, one merge per "
                         f"line. Written to `{cache.name}/` under the cache folder:")
    ctx.deliverable.table([{"file": f.name, "KB": f.stat().st_size / 1e3} for f in files], floatfmt=".1f")

    out = {"heldout_mb": held_bytes / 1e6, "zipf_s_words": s_words}
    for r in rows:
        key = r["tokenizer"].replace("-", "_")
        out.update({f"{key}_bytes_per_token": r["bytes/token"], f"{key}_unk_rate": r["unk rate"],
                    f"{key}_zipf_s": r["zipf s"], f"{key}_vocab": r["vocab"]})
    out["bytebpe_roundtrip"] = all(ok for n, _, ok in probes if n.startswith("bytebpe"))
    return out


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
