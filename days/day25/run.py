"""Day 25: the first real pretraining run — checkpointing on, TensorBoard curves, and kill-and-resume.

Part 1 trains day 24's `pretrain_27m` shape (6 x 512, 27M parameters) at half its context (256) on
the Sprint 3 corpus (16k BPE shards, streaming loader) with checkpoints every `ckpt_interval` steps;
`resume=true` continues a stopped run from its checkpoint. It runs under `dtype=auto`: bfloat16
autocast on a CPU with matrix units, which is what makes a 20-50M model fit a CPU budget, and a
float32 twin of its first `compare_steps` steps measures the speed-up and the quality at equal steps.

Part 2 is the resume check at a small size, with real processes: one worker trains uninterrupted;
another is SIGKILLed mid-run by this script, then restarted from its last checkpoint. The restarted
run's per-step losses and final weights must equal the uninterrupted run's exactly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from common import ROOT, data
from common.data import corpus
from common.nn.generate import generate
from common.nn.model import GPT, gpt_config_for
from common.run import plotting, runner
from common.train import TrainConfig, full_split_loss, load_checkpoint, save_checkpoint, train, train_config_for
from days.day25.worker import read_log

DAY = 25
# How `make reproduce` compares each metric: everything not listed is exact (deterministic).
# Timings, and choices made by a clock, move with the machine's load: reported as ratios only.
METRIC_KINDS = {
    "tokens_per_s": "timing",
    "float32_tokens_per_s": "timing",
    "dtype_speedup": "timing",
}
# the metrics the README and sprint summaries show
KEY_METRICS = ["params", "tokens_per_s", "val_bpb", "checkpoint_mb", "resume_exact"]


@dataclass
class Config:
    vocab_size: int = 16000
    corpus_bytes: int = 0          # 0: the whole corpus
    n_layer: int = 6               # day 24's pretrain_27m shape (days/day24/configs/pretrain_27m.yaml) ...
    n_head: int = 8
    n_embd: int = 512
    block_size: int = 256          # ... at half its context: with bfloat16 it fits the CPU budget
    batch_size: int = 8
    max_iters: int = 240
    lr: float = 1e-3
    warmup_iters: int = 20
    eval_interval: int = 40
    eval_iters: int = 4
    ckpt_interval: int = 40
    dtype: str = "auto"            # auto: bfloat16 autocast where this CPU has matrix units (common/lab/hardware.py)
    compare_steps: int = 40        # a float32 twin trains this many steps for the speed and quality check (0: off)
    compile: bool = False
    resume: bool = False           # continue from the last checkpoint of an earlier run of this day
    val_tokens: int = 32768        # the leading validation tokens scored at the end
    # the kill-and-resume check (a small model, separate processes)
    kr_steps: int = 80             # 0 skips the check
    kr_ckpt_interval: int = 10
    kr_kill_after: int = 35        # SIGKILL once the worker has logged this step


PRESETS = {"nano": dict(vocab_size=400, corpus_bytes=150_000, n_layer=2, n_head=2, n_embd=32, block_size=32,
                        batch_size=4, max_iters=30, warmup_iters=3, eval_interval=10, eval_iters=2, ckpt_interval=10,
                        val_tokens=2048, kr_steps=30, kr_ckpt_interval=5, kr_kill_after=12, compare_steps=10),
           "cpu": {},
           # the 27M shape of day 24 on one GPU: bf16 autocast and torch.compile
           "gpu": dict(n_layer=6, n_head=8, n_embd=512, block_size=512, batch_size=32, max_iters=5000,
                       warmup_iters=200, eval_interval=250, eval_iters=20, ckpt_interval=500, dtype="bfloat16",
                       compile=True, val_tokens=1 << 20)}


def kill_and_resume(cfg: Config, td: corpus.TokenData, work, seed: int) -> dict:
    """Uninterrupted worker vs a worker killed mid-run and restarted; returns what happened."""
    model = asdict(gpt_config_for(cfg, n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=cfg.vocab_size))
    tcfg = asdict(TrainConfig(max_iters=cfg.kr_steps, lr=2e-3, warmup_iters=5, eval_interval=cfg.kr_steps // 2,
                              eval_iters=2, log_interval=1, ckpt_interval=cfg.kr_ckpt_interval))
    base = dict(seed=seed, model=model, train=tcfg, batch_size=8, train_shards=str(td.root / "train"),
                val_shards=str(td.root / "val"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(name: str, resume: bool = False, pause_after: int | None = None) -> subprocess.Popen:
        tag = f"{name}{'_resumed' if resume else ''}"
        spec = {**base, "ckpt": str(work / f"{name}.pt"), "log": str(work / f"{tag}.jsonl"), "resume": resume,
                "pause_after": pause_after}
        path = work / f"{tag}.json"
        path.write_text(json.dumps(spec))
        return subprocess.Popen([sys.executable, "-m", "days.day25.worker", str(path)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(p: subprocess.Popen) -> None:
        _, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"worker failed ({p.returncode}): {err[-500:]}")

    work.mkdir(parents=True, exist_ok=True)
    for f in work.glob("*"):
        f.unlink()
    finish(start("full"))
    p = start("killed", pause_after=cfg.kr_kill_after)
    handshake = p.stdout.readline()  # blocks until the worker has logged step kr_kill_after and paused
    was_running = p.poll() is None and handshake.startswith("paused")
    if was_running:
        p.send_signal(signal.SIGKILL)
    p.wait()
    killed_log = read_log(work / "killed.jsonl")
    ckpt_step = load_checkpoint(work / "killed.pt")["iter"]
    finish(start("killed", resume=True))
    full, resumed = read_log(work / "full.jsonl"), read_log(work / "killed_resumed.jsonl")
    a = load_checkpoint(work / "full.pt")["model"]
    b = load_checkpoint(work / "killed.pt")["model"]
    return {"killed": was_running and p.returncode == -signal.SIGKILL, "last_step_before_kill": max(killed_log),
            "ckpt_step": ckpt_step, "resumed_from": min(resumed), "full": full, "resumed": resumed,
            "killed_log": killed_log,
            "losses_equal": all(resumed[s] == full[s] for s in resumed) and max(resumed) == cfg.kr_steps - 1,
            "weights_equal": all(torch.equal(a[k], b[k]) for k in a),
            "leftover_tmp": sorted(f.name for f in work.glob("*.tmp*"))}


def compare_float32(cfg: Config, ctx: runner.Context, td, mcfg, res) -> dict:
    """A float32 twin of the run (same seed, init, batches and schedule) stopped after `compare_steps`:
    tokens/s of both dtypes measured in this one run, and val loss at equal steps."""
    d, dev = ctx.deliverable, ctx.device
    at = cfg.compare_steps
    if not at or res.dtype == "float32" or at not in res.history["step"]:
        if at and res.dtype == "float32":
            d.text(f"Precision: {res.dtype_reason}. With float32 chosen there is no second dtype to compare.")
        return {}
    torch.manual_seed(ctx.seed)
    twin = GPT(mcfg).to(dev)
    tb = data.StreamingLoader(td.train, cfg.block_size, cfg.batch_size, seed=ctx.seed, device=dev)
    vb = data.StreamingLoader(td.val, cfg.block_size, cfg.batch_size, seed=ctx.seed + 1, device=dev)
    r32 = train(twin, tb, vb, train_config_for(cfg, dtype="float32"), dev, ctx.tracker.scoped("float32_twin"),
                stop_at=at, show_progress=not ctx.quick)
    ctx.record_throughput("float32 twin", r32, twin, cfg.block_size)
    v16 = res.history["val"][res.history["step"].index(at)]
    v32 = r32.history["val"][r32.history["step"].index(at)]
    speed = res.tokens_per_s / r32.tokens_per_s
    rel = (v16 - v32) / v32
    d.section(f"{res.dtype} against float32")
    d.text(f"Precision: {res.dtype_reason}. To check that it is faster and no worse, a float32 twin (same seed, "
           f"initial weights, batches and learning-rate schedule) trains the first {at} steps.")
    d.table([{"dtype": res.dtype, "tokens/s": f"{res.tokens_per_s:,.0f}", f"val loss at step {at}": v16},
             {"dtype": "float32", "tokens/s": f"{r32.tokens_per_s:,.0f}", f"val loss at step {at}": v32}],
            floatfmt=".4f")
    d.text(f"What to look at: {res.dtype} runs {speed:.2f}× float32's tokens/s "
           f"({'meets' if speed >= 2 else 'misses'} the 2× the plan asks of this shape) and its val loss at step "
           f"{at} is {abs(rel):.2%} {'above' if rel > 0 else 'below'} float32's "
           f"({'within' if abs(rel) <= 0.01 else 'OUTSIDE'} the 1% quality bar). The weights, gradients and AdamW "
           "state stay float32 in both; only the matrix multiplies run in bfloat16.")
    return {"float32_tokens_per_s": round(r32.tokens_per_s), "dtype_speedup": round(speed, 3),
            "dtype_val_rel_diff": round(rel, 5)}


def main(cfg: Config, ctx: runner.Context) -> dict:
    d, dev = ctx.deliverable, ctx.device
    td = corpus.token_data(cfg.vocab_size, cache=ctx.cache_dir("tokens"), corpus_bytes=cfg.corpus_bytes)
    mcfg = gpt_config_for(cfg, vocab_size=cfg.vocab_size)
    torch.manual_seed(ctx.seed)
    model = GPT(mcfg).to(dev)
    tb = data.StreamingLoader(td.train, cfg.block_size, cfg.batch_size, seed=ctx.seed, device=dev)
    vb = data.StreamingLoader(td.val, cfg.block_size, cfg.batch_size, seed=ctx.seed + 1, device=dev)
    tc = train_config_for(cfg)
    ckpt = ctx.cache_dir() / "pretrain.pt"
    start = load_checkpoint(ckpt)["iter"] + 1 if cfg.resume and ckpt.is_file() else 0
    opt = model.configure_optimizer(tc.weight_decay, tc.lr, (tc.beta1, tc.beta2), dev.type)
    t0 = time.perf_counter()
    res = train(model, tb, vb, tc, dev, ctx.tracker, ckpt_path=ckpt, resume=cfg.resume, show_progress=not ctx.quick,
                optimizer=opt)
    wall = time.perf_counter() - t0
    val = td.val_tensor()[: cfg.val_tokens + 1]
    val_loss = full_split_loss(model, val, cfg.block_size, 16, dev, res.dtype)
    ctx.record_throughput("pretrain", res, model, cfg.block_size)
    bpb = corpus.bits_per_byte(val_loss, td.val_bytes_per_token)
    n = model.num_params()
    tokens = (res.final_iter + 1 - start) * res.tokens_per_iter
    probe = ctx.cache_dir() / "timing.pt"  # one more checkpoint exactly as train() writes them, timed
    t_save = time.perf_counter()
    save_checkpoint(probe, model, opt, res.final_iter, tc)
    t_save = time.perf_counter() - t_save
    probe.unlink()

    d.section("The run")
    d.text(f"{n:,}-parameter GPT ({cfg.n_layer} layers × {cfg.n_embd}, block {cfg.block_size}, vocab "
           f"{cfg.vocab_size}) on {td.train_tokens:,} training tokens ({td.train_bytes / 1e6:.1f} MB of text); "
           f"checkpoint every {cfg.ckpt_interval} steps to `{ckpt.relative_to(ctx.base)}` (atomic: written to a "
           f"temporary file, then renamed). {'Resumed at step ' + str(start) + '. ' if start else ''}"
           "Curves: `make tensorboard` (logs under `logs/day25/`).")
    chinchilla = 20 * n
    d.table([{"steps": f"{start}–{res.final_iter}", "tokens trained": f"{tokens:,}",
              "tokens/s": f"{res.tokens_per_s:,.0f}", "wall (s)": round(wall, 1),
              "val loss (nats/token)": val_loss, "val bits/byte": bpb,
              "checkpoint MB": round(ckpt.stat().st_size / 1e6, 1), "save (s)": round(t_save, 3)}])
    d.text(f"What to look at: after {tokens:,} tokens the val loss is {val_loss:.3f} nats/token, "
           f"{math.log(cfg.vocab_size) - val_loss:.2f} below the {math.log(cfg.vocab_size):.2f} (ln {cfg.vocab_size}) "
           f"of a uniform guess over the vocabulary. Bits/byte = loss / ln 2 / {td.val_bytes_per_token:.2f} bytes per "
           f"token = {bpb:.3f}, the number that compares across tokenizers (day 27).")
    d.text(f"The compute-optimal budget of about 20 tokens per parameter would be {chinchilla / 1e6:.0f}M tokens: "
           f"this run covered {100 * tokens / chinchilla:.2f}% of it; at the measured {res.tokens_per_s:,.0f} tokens/s "
           f"the whole budget would take {chinchilla / res.tokens_per_s / 3600:.3g} hours on this machine.")
    if n < 20e6:
        d.text(f"**Gap against the seed plan:** the plan pretrains a 20–50M-parameter model; this run trains "
               f"{n / 1e6:.2g}M, sized for a 2-core CPU. The `gpu` preset is the 27M shape (6 × 512, block 512): "
               "run `make day 25 ARGS='--preset gpu'` on a CUDA GPU to close it.")
    step_s = res.tokens_per_iter / res.tokens_per_s
    d.text(f"A checkpoint holds the weights and AdamW's two moments in float32, about 12 bytes per parameter: "
           f"12 × {n:,} = {12 * n / 1e6:.1f} MB predicted, {ckpt.stat().st_size / 1e6:.1f} MB on disk. Writing one "
           f"(temporary file, fsync, rename) took {t_save:.2f} s, {t_save / step_s:.2f} of a {step_s:.2f}-s "
           "training step.")
    curves = {"train (fixed batches)": (res.history["step"], res.history["train"]),
              "val (fixed batches)": (res.history["step"], res.history["val"]),
              "train (batch)": (res.train_log["step"], res.train_log["loss"])}
    d.image(plotting.lines(ctx.plot_path("loss"), curves, "step", "loss (nats/token)", "Pretraining loss",
                           hline=(math.log(cfg.vocab_size), f"uniform guess, ln {cfg.vocab_size}")),
            "Loss along the run (the same scalars are in TensorBoard)")
    h, tl = res.history, res.train_log
    off = tl["loss"][0] - math.log(cfg.vocab_size)
    text = (f"What to look at: the batch loss starts at {tl['loss'][0]:.2f} nats, "
            + ("near the dashed uniform-guess line (small initial weights give near-uniform predictions), "
               if abs(off) < 0.5 else
               f"{abs(off):.2f} {'above' if off > 0 else 'below'} the dashed uniform-guess line, ")
            + f"and ends at {tl['loss'][-1]:.2f}; it is noisy because each point is one batch of {cfg.batch_size} "
            "windows. The fixed-batch curves start at the first evaluation and are smoother: each point averages the "
            f"same {cfg.eval_iters} batches.")
    if h["step"]:
        gap = h["val"][-1] - h["train"][-1]
        text += (f" At the end val is {abs(gap):.3f} nats {'above' if gap >= 0 else 'below'} train: "
                 + (f"no over-fitting yet, the model has seen {tokens / td.train_tokens:.2f} epochs of the data."
                    if gap < 0.1 else "the gap that over-fitting widens."))
    d.text(text)
    prompt = torch.tensor([td.sp.encode("Once upon a time")], device=dev)
    g = torch.Generator(device=dev).manual_seed(ctx.seed)
    out = generate(model, prompt, min(40, cfg.block_size - prompt.shape[1]), temperature=0.8, top_k=50, generator=g)
    d.text("A sample (temperature 0.8, top-k 50): “" + td.sp.decode(out[0].tolist()).replace("\n", " ⏎ ") + "”")

    metrics = {"params": n, "tokens_trained": tokens, "tokens_per_s": round(res.tokens_per_s),
               "val_loss": round(val_loss, 4), "val_bpb": round(bpb, 4),
               "checkpoint_mb": round(ckpt.stat().st_size / 1e6, 2), "dtype": res.dtype,
               **compare_float32(cfg, ctx, td, mcfg, res)}
    if not cfg.kr_steps:
        return metrics
    d.section("Kill and resume")
    kr = kill_and_resume(cfg, td, ctx.cache_dir() / "kill_resume", ctx.seed)
    same = kr["losses_equal"] and kr["weights_equal"]
    fate = f"was SIGKILLed after logging step {kr['last_step_before_kill']}" if kr["killed"] else \
        "FINISHED BEFORE THE KILL"
    d.text(f"Worker A trained {cfg.kr_steps} steps uninterrupted. Worker B, same seed, {fate}; "
           f"its last checkpoint was step {kr['ckpt_step']}, so the restarted process went on from step "
           f"{kr['resumed_from']} (the {kr['last_step_before_kill'] - kr['ckpt_step']} steps after the checkpoint "
           f"are recomputed). Per-step losses after the restart {'equal' if kr['losses_equal'] else 'DIFFER FROM'} "
           f"A's bit for bit, and the final weights are {'identical' if kr['weights_equal'] else 'DIFFERENT'}. "
           f"Temporary files left by the kill: {', '.join(kr['leftover_tmp']) or 'none'}.")
    diff = max(abs(kr["resumed"][s] - kr["full"][s]) for s in kr["resumed"] if s in kr["full"])
    redo = [s for s in kr["resumed"] if s in kr["killed_log"]]
    redo_same = all(kr["killed_log"][s] == kr["resumed"][s] for s in redo)
    series = {"A: uninterrupted (wide pale band)": (list(kr["full"]), list(kr["full"].values())),
              f"B: before the kill (last step {kr['last_step_before_kill']})":
              (list(kr["killed_log"]), list(kr["killed_log"].values())),
              "B: after the restart": (list(kr["resumed"]), list(kr["resumed"].values()))}
    d.image(plotting.lines(ctx.plot_path("kill_resume"), series, "step", "train loss (batch, nats/token)",
                           "Killed and resumed vs uninterrupted",
                           vline=[(kr["ckpt_step"], f"checkpoint used (step {kr['ckpt_step']})"),
                                  (kr["last_step_before_kill"], f"kill (after step {kr['last_step_before_kill']})")],
                           styles={"A: uninterrupted (wide pale band)": dict(lw=7, alpha=0.3)}),
            "The restarted run lies exactly on the uninterrupted one")
    d.text("What to look at: " + ("B's thin lines run along the middle of A's pale band from start to end: the "
                                  "largest difference between the two runs' per-step losses is 0." if diff == 0 else
                                  f"the two runs' per-step losses differ by up to {diff:.3g}: the resume is NOT exact.")
           + (f" Steps {redo[0]}–{redo[-1]}, after the checkpoint and before the kill, were computed twice (orange, "
              f"then green) and {'coincide' if redo_same else 'DIFFER'}."
              if redo else ""))
    return {**metrics, "killed": kr["killed"], "resume_losses_equal": kr["losses_equal"],
            "resume_weights_equal": kr["weights_equal"], "resume_exact": same}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
