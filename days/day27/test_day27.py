"""Day 27: bits per byte is fair across tokenizers; fixed compute equalises FLOPs; the scored text is shared."""

import math

import pytest

from common.data import corpus
from common.nn.model import count_params_formula, flops_per_token, gpt_config_for
from common.run import runner
from days.day27 import run


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One scratch folder for the module: the tokenizers the quick run builds are reused by the other tests."""
    return tmp_path_factory.mktemp("day27")


def nano() -> run.Config:
    return run.Config(**run.PRESETS["nano"])


def test_bits_per_byte_closed_form():
    # a uniform guess over V tokens costs log2 V bits per token; 100 tokens over 400 bytes -> log2(V) / 4 bits/byte
    assert run.bits_per_byte(math.log(16000), 100, 400) == pytest.approx(math.log2(16000) / 4)
    # the same 3,000 bits over 1,000 bytes, cut into 250 long or 400 short tokens: per-token loss differs, bpb not
    long_tok, short_tok = 3000 * math.log(2) / 250, 3000 * math.log(2) / 400
    assert long_tok > short_tok
    assert run.bits_per_byte(long_tok, 250, 1000) == pytest.approx(run.bits_per_byte(short_tok, 400, 1000)) == 3.0


def test_the_vocabulary_only_changes_the_tied_matrix():
    cfg = run.Config()
    a, b = gpt_config_for(cfg, vocab_size=16000), gpt_config_for(cfg, vocab_size=32000)
    dv = 16000 * cfg.n_embd
    assert count_params_formula(b) - count_params_formula(a) == dv                   # tied: counted once
    assert flops_per_token(b) - flops_per_token(a) == 6 * dv                         # head matmul, fwd + bwd
    assert flops_per_token(b, training=False) - flops_per_token(a, training=False) == 2 * dv


def test_fixed_compute_steps_equalise_flops():
    cfg = run.Config()
    vocabs = run.sizes(cfg.vocabs)
    steps = run.compute_steps(vocabs, cfg.compute_anchor, cfg.max_iters, cfg)
    budget = cfg.max_iters * flops_per_token(gpt_config_for(cfg, vocab_size=cfg.compute_anchor))
    assert steps[cfg.compute_anchor] == cfg.max_iters
    for v in vocabs:
        total = steps[v] * flops_per_token(gpt_config_for(cfg, vocab_size=v))
        assert abs(total / budget - 1) <= 0.5 / steps[v] + 1e-12, v                # rounding: half a step at most
    assert [steps[v] for v in sorted(vocabs)] == sorted(steps.values(), reverse=True)  # bigger vocab, fewer steps


def test_pick_lines_spreads_over_the_split():
    line_bytes = [100] * 1000
    picked = run.pick_lines(line_bytes, 10_000)
    assert picked[0] == 0 and picked[-1] >= 900 and sum(line_bytes[i] for i in picked) == 10_000
    assert run.pick_lines(line_bytes, 0) == list(range(1000))


def test_same_text_same_bytes_across_vocabularies(shared, require_data):
    for n, f in corpus.SOURCES:
        require_data(n, f)
    cfg = nano()
    _, val = corpus.split_lines(cfg.corpus_bytes)
    picked = run.pick_lines([len(ln.encode()) + 1 for ln in val], cfg.eval_bytes)
    texts, counts = [], []
    for v in run.sizes(cfg.vocabs):
        td = corpus.token_data(v, cache=shared / ".cache" / "tokens", corpus_bytes=cfg.corpus_bytes)
        ev = run.eval_tokens(td, picked, len(val))
        texts.append([ln.strip() for ln in td.sp.decode(ev.tolist()).split("\n")[:-1]])
        counts.append(ev.numel())
    assert texts[0] == texts[1] and len(texts[0]) == len(picked)       # the same lines, in the same order
    assert texts[0][:5] == [val[i].strip() for i in picked[:5]]
    assert counts[1] < counts[0]                                       # the bigger vocabulary needs fewer tokens


def test_quick_run_end_to_end(shared, require_data):
    for n, f in corpus.SOURCES:
        require_data(n, f)
    m = runner.quick(run, shared)["metrics"]
    cfg = nano()
    a = run.label(cfg.compute_anchor)
    assert m[f"bpb_steps_{a}"] == m[f"bpb_compute_{a}"]                 # the anchor's two budgets are one run
    for v in run.sizes(cfg.vocabs):
        assert 0 < m[f"bpb_steps_{run.label(v)}"] < 8 and math.isfinite(m[f"ppl_compute_{run.label(v)}"])
    assert m["best_vocab_steps"] in {run.label(v) for v in run.sizes(cfg.vocabs)}
    for p in ("bpb_vs_bytes", "bpb_vs_flops", "final_bpb"):
        assert (shared / "plots" / f"day27_{p}.png").is_file()
