"""The day runner: everything a `days/dayNN/run.py` needs besides its own experiment.

A day file declares its config, presets and `main`, and hands them over:

    @dataclass
    class Config:
        steps: int = 200            # cpu default
    PRESETS = {"nano": dict(steps=5), "cpu": {}, "gpu": dict(steps=5000)}

    def main(cfg: Config, ctx: Context) -> dict:
        ...                          # ctx.device, ctx.tracker.log(...), ctx.plot_path("loss")
        ctx.deliverable.table(rows)  # the report is built up section by section
        return {"val_loss": 1.52}    # the day's key metrics (summary, progress.yaml, reference)

    if __name__ == "__main__":
        raise SystemExit(runner.cli(DAY, Config, PRESETS, main))

`python -m days.dayNN.run [--quick] [--device auto|cpu|cuda] [--preset P] [--seed S] [--out DIR]
[--update-reference] [key=value ...]`. Where a run writes depends on its kind (`run_kind`):

    reference  --update-reference: days/dayNN/{reference.json,deliverable.md} and plots/ (tracked;
               the course's maintainers make these from a clean commit)
    mine       the learner's default run (default preset for the device, default seed, no
               overrides): results/dayNN/deliverable.md and results/dayNN/plots/ (git-ignored)
    variant    any override, preset or seed: results/dayNN/variants/<label>/, beside `mine`
    quick      --quick: the `nano` preset into --out (default: a fresh temporary folder)
    scratch    a full run with --out DIR elsewhere (make reproduce): everything under DIR

Project runs (the first three) log to logs/dayNN/<run-id>/ and share `.cache/`. Nothing a learner
runs touches a tracked file, so pulling a course update never conflicts with their results.
Tests call `quick(module, tmp_path)`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

from common.course import curriculum
from common.lab import determinism
from common.run import atomic, config, tracking
from common.run.dayfiles import DayFiles, day_name
from common.run.errors import UserError

DEFAULT_SEED = 1337
PROJECT_KINDS = ("reference", "mine", "variant")  # runs recorded in the project tree (not scratch)


def pick_device(name: str = "auto") -> torch.device:
    """`auto` prefers CUDA, then Apple MPS, then the CPU; an unavailable explicit choice is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA was requested but this machine has no usable CUDA GPU; use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("MPS was requested but is not available here; use --device cpu or auto.")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"Unknown device {name!r}; use auto, cpu, cuda or mps.")
    return torch.device(name)


def md_cell(text: str) -> str:
    """Generated text made safe for a markdown table cell: pipes escaped, newlines shown as \\n."""
    return text.replace("|", "&#124;").replace("\n", "\\n")


class Deliverable:
    """Markdown built up by the day, section by section; the runner adds banner and footer."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.parts: list[str] = []

    def section(self, title: str) -> None:
        self.parts.append(f"## {title}\n")

    def text(self, md: str) -> None:
        self.parts.append(md.strip() + "\n")

    def table(self, rows, headers="keys", floatfmt: str = ".4g") -> None:
        """`rows`: a list of dicts (or a pandas DataFrame, or rows + `headers`)."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict("records")
        self.parts.append(tabulate(rows, headers=headers, tablefmt="github", floatfmt=floatfmt) + "\n")

    def image(self, path: Path, caption: str = "") -> None:
        rel = os.path.relpath(Path(path).resolve(), self.path.parent.resolve())
        self.parts.append(f"![{caption or Path(path).stem}]({rel})\n" + (f"\n*{caption}*\n" if caption else ""))

    def render(self) -> str:
        return "\n".join(self.parts)


@dataclass
class Context:
    day: int
    cfg: Any
    preset: str
    device: torch.device
    seed: int
    quick: bool
    root: Path                 # the project (where days/ lives)
    out: Path                  # where outputs go: `root` for a full run, a scratch folder for --quick
    run_id: str
    tracker: tracking.Tracker
    deliverable: Deliverable
    env: dict = field(default_factory=dict)
    kind: str = "scratch"      # reference | mine | variant | quick | scratch (see the module docstring)
    label: str = ""            # a variant's name, from its overrides
    throughput: list = field(default_factory=list)  # one row per ctx.train run: dtype, tokens/s, MFU

    @property
    def name(self) -> str:
        return day_name(self.day)

    @property
    def run_dir(self) -> Path:
        return self.tracker.run_dir

    @property
    def files(self) -> DayFiles:
        return DayFiles(self.root, self.day)

    @property
    def full(self) -> bool:
        """A run recorded in the project (reference, the learner's own, a variant); not --quick or --out."""
        return self.kind in PROJECT_KINDS

    @property
    def base(self) -> Path:
        """Where logs/ and .cache/ live: the project for project runs, else the scratch folder."""
        return self.root if self.full else self.out

    @property
    def day_dir(self) -> Path:
        """Where the day's own generated files go: days/dayNN on a reference run, else `out`
        (results/dayNN for the learner's run, the variant's folder, or the scratch folder)."""
        return self.files.dir if self.kind == "reference" else self.out

    def plot_path(self, what: str) -> Path:
        """plots/dayNN_<what>.png under this run's output folder (folder created)."""
        p = self.files.plot(what, self.out)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def train(self, model, train_batches, val_batches, tc, *, run: str = "", **kw):
        """`common.train.train` on this run's device, every curve logged to this run's tracker.

        `run` names the training run when a day trains several (its curves land under `run/` in
        metrics.jsonl and TensorBoard); the progress bar shows on full runs only. This is the
        default path, so no day forgets its curves; pass `tracker=` to log elsewhere."""
        from common.train import train

        kw.setdefault("show_progress", not self.quick)
        tracker = kw.pop("tracker", None) or (self.tracker.scoped(run) if run else self.tracker)
        res = train(model, train_batches, val_batches, tc, self.device, tracker, **kw)
        self.record_throughput(run or "train", res, model, train_batches.block_size)
        return res

    def record_throughput(self, run: str, res, model, seq_len: int) -> dict:
        """Tokens/s and model FLOP utilisation of one training run, for the deliverable's throughput table
        and summary.json (`ctx.train` calls it; a day that trains through `common.train.train` directly can)."""
        return self.record_rate(run, res.tokens_per_s, model, seq_len, res.dtype, res.dtype_reason,
                                len(res.iter_times))

    def record_rate(self, run: str, tokens_per_s: float, model, seq_len: int, dtype: str = "float32",
                    why: str = "", steps: int = 0) -> dict:
        """A training rate a day measured itself (its own timed steps): the same row as `record_throughput`."""
        from common.lab import hardware
        from common.nn.model import flops_per_token

        cfg = getattr(model, "cfg", None)
        fpt = flops_per_token(cfg, seq_len) if cfg is not None and hasattr(cfg, "n_embd") else None
        tps = tokens_per_s
        row = {"run": run, "dtype": dtype, "why": why, "steps": steps,
               "tokens_per_s": round(tps, 1), "flops_per_token": fpt,
               "mfu": round(hardware.mfu(tps, fpt, dtype, self.device), 4) if fpt and tps == tps else None,
               "peak_gflops": hardware.matmul_peak(dtype, self.device)}
        self.throughput.append(row)
        return row

    def cache_dir(self, shared: str | None = None) -> Path:
        """Artifacts worth reusing across runs (checkpoints, tokenizers): `.cache/dayNN` under `base`.

        `shared="tokens"` gives `.cache/tokens`, a cache several days read (e.g. `corpus.token_data`)."""
        p = self.base / ".cache" / (shared or self.name)
        p.mkdir(parents=True, exist_ok=True)
        return p


def _parser(day: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m days.day{day:02d}.run",
                                description=f"Day {day}: {_focus(day)}. Extra key=value arguments override the config.")
    p.add_argument("--quick", action="store_true", help="smoke size (nano preset) into a scratch folder")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    p.add_argument("--preset", default=None, help="nano | cpu | gpu (default: gpu on CUDA, else cpu)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--out", default=None, help="output folder (default: the repo; --quick: a temp folder)")
    p.add_argument("--update-reference", action="store_true", help="also write days/dayNN/reference.json")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    return p


def _focus(day: int) -> str:
    try:
        return curriculum.day(day).focus
    except (KeyError, OSError):
        return "experiment"


def _root_of(main: Callable) -> Path:
    mod = sys.modules.get(main.__module__)
    f = getattr(mod, "__file__", None)
    return Path(f).resolve().parents[2] if f else Path.cwd()


def default_preset(presets: dict, dev: torch.device) -> str:
    """The preset a plain run uses: `gpu` on CUDA when the day has one, else `cpu`."""
    return "gpu" if dev.type == "cuda" and "gpu" in presets else "cpu"


def variant_label(preset: str, default: str, seed: int, over: dict) -> str:
    """A variant's name from what differs from the default run: `lr=3e-3,max_iters=300`, `preset=gpu`."""
    parts = ([f"preset={preset}"] if preset != default else []) + ([f"seed={seed}"] if seed != DEFAULT_SEED else [])
    parts += [f"{k}={v}" for k, v in sorted(over.items())]
    return "".join(c if c.isalnum() or c in "=.,+-_" else "_" for c in ",".join(parts))[:120]


def run_kind(*, quick: bool, out_is_root: bool, update_reference: bool, label: str) -> str:
    """reference | mine | variant | quick | scratch: decides where the run writes (module docstring)."""
    if quick:
        return "quick"
    if not out_is_root:
        return "scratch"
    if update_reference:
        return "reference"
    return "variant" if label else "mine"


def execute(day: int, cfg_cls, presets: dict, main: Callable, *, quick: bool = False, device: str = "auto",
            preset: str | None = None, seed: int = DEFAULT_SEED, out: str | Path | None = None,
            overrides=None, update_reference: bool = False, root: Path | None = None,
            quiet: bool = False) -> dict:
    """Resolve config and device, run `main`, write deliverable, summary and (optionally) reference.

    `out=None` (or the project root) is a project run: `--update-reference` makes the reference,
    otherwise the learner's own run or, with overrides, a labelled variant (see `run_kind`).
    Returns the summary dict (with `metrics`, the values `main` returned, and `kind`, `label`,
    `deliverable`). Raises UserError for problems the learner can fix.
    """
    root = Path(root) if root else _root_of(main)
    dev = pick_device(device)
    if quick:
        preset = "nano"
        if update_reference:
            raise UserError("--update-reference needs a full run, not --quick.")
    default = default_preset(presets, dev)
    preset = preset or default
    # `cpu` is the dataclass defaults, so a day need not spell out an empty cpu preset
    cfg = config.resolve(cfg_cls, presets, None if preset == "cpu" and "cpu" not in presets else preset, overrides)
    name = day_name(day)
    over = overrides if isinstance(overrides, dict) else dict(o.split("=", 1) for o in overrides or [] if "=" in o)
    out_is_root = not quick and (out is None or Path(out).resolve() == root.resolve())
    label = "" if quick else variant_label(preset, default, seed, over)
    if update_reference and label and out_is_root:
        raise UserError("--update-reference makes the reference from the default run only; "
                        f"drop {label.replace(',', ' ')}.")
    kind = run_kind(quick=quick, out_is_root=out_is_root, update_reference=update_reference, label=label)
    files = DayFiles(root, day)
    out = {"reference": root, "mine": files.results_dir, "variant": files.variant_dir(label)}.get(kind) or (
        Path(out) if out else Path(tempfile.mkdtemp(prefix=f"{name}_quick_")))
    base = root if kind in PROJECT_KINDS else out
    run_id = tracking.make_run_id(tag="_".join([preset] + [f"{k}={v}" for k, v in over.items()]))
    tracker = tracking.Tracker(base / "logs" / name / run_id)
    deliv_path = files.deliverable_path if kind == "reference" else out / "deliverable.md"
    env = tracking.environment(dev)
    determinism.seed_everything(seed)
    chash = config.config_hash(cfg)
    title = f"Day {day}: {_focus(day)}"
    ban = tracking.banner(title, env, seed, preset, chash)
    if not quiet:
        print(ban, flush=True)
        if kind == "variant":
            print(f"variant `{label}`: written to {_rel(out, root)}/, beside your default run (which it does not "
                  "replace)", flush=True)
    ctx = Context(day, cfg, preset, dev, seed, quick, root, out, run_id, tracker, Deliverable(deliv_path), env,
                  kind=kind, label=label)
    if not quick and dev.type in ("cpu", "cuda"):  # the MFU denominators, measured (or read) before any timing
        from common.lab import hardware
        for dt in ("float32", "bfloat16"):
            hardware.matmul_peak(dt, dev)
    t0 = time.time()
    module = sys.modules.get(main.__module__)
    summary = {"day": day, "run_id": run_id, "preset": preset, "seed": seed, "quick": quick,
               "kind": kind, "label": label, "deliverable": _rel(deliv_path, root),
               "config": config.to_dict(cfg), "config_hash": chash, "env": env,
               # how `make reproduce` compares each metric (exact unless declared), and what summaries show
               "metric_kinds": dict(getattr(module, "METRIC_KINDS", {})),
               "key_metrics": list(getattr(module, "KEY_METRICS", []) or [])}
    try:
        metrics = main(cfg, ctx) or {}
    except BaseException as e:
        tracker.summary(**summary, status="failed", error=f"{type(e).__name__}: {e}",
                        wall_time_s=round(time.time() - t0, 2))
        tracker.close()
        raise
    wall = round(time.time() - t0, 2)
    summary.update(status="ok", wall_time_s=wall, metrics=metrics, throughput=ctx.throughput)
    tracker.summary(**summary)
    tracker.close()
    atomic.write_text(base / "logs" / name / "LATEST", run_id + "\n")
    ref_path = files.reference_path
    if update_reference:  # written first, so the deliverable's footer describes this very reference
        atomic.write_json(ref_path, {"day": day, "preset": preset, "seed": seed, "run_id": run_id,
                                     "wall_time_s": wall, "config": config.to_dict(cfg), "env": env,
                                     "metric_kinds": summary["metric_kinds"], "key_metrics": summary["key_metrics"],
                                     "presets": resolved_presets(cfg_cls, presets), "metrics": metrics,
                                     "throughput": ctx.throughput})
    reference = files.reference()
    defaults = config.to_dict(config.resolve(cfg_cls, presets, _preset_key(default, presets)))
    atomic.write_text(deliv_path, _render(ctx, ban, metrics, reference, wall, defaults))
    if not quiet:
        print(f"\n{title}: done in {wall:.1f} s")
        print(f"  deliverable: {_rel(deliv_path, root)}\n  logs:        {_rel(tracker.run_dir, root)}")
        plots = files.plots(out)
        if plots:
            print("  plots:       " + ", ".join(_rel(p, root) for p in plots))
    return summary


def _rel(path: Path, root: Path) -> str:
    """`path` relative to the project when it lies inside it (how messages and summaries name files)."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def preset_names(presets: dict) -> list[str]:
    """nano, cpu, gpu first, then any extra presets a day defines."""
    return ["nano", "cpu", "gpu"] + [k for k in presets if k not in ("nano", "cpu", "gpu")]


def resolved_presets(cfg_cls, presets: dict) -> dict:
    """Every preset as resolved: stored in reference.json for the sprint wrap-ups' config export."""
    return {p: config.to_dict(config.resolve(cfg_cls, presets, _preset_key(p, presets))) for p in preset_names(presets)}


def _preset_key(name: str, presets: dict) -> str | None:
    """The key `config.resolve` takes: a day without an explicit preset uses its dataclass defaults."""
    return name if name in presets else None


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _origin(ctx: Context, defaults: dict) -> list[str]:
    """The lines under the title that say whose run this is and where the others live."""
    cmd = f"python -m days.{ctx.name}.run"
    ref = f"days/{ctx.name}/deliverable.md"
    if ctx.kind == "reference":
        return [f"_The course's reference run, made by `{cmd} --update-reference` from a clean commit; every "
                f"number below was measured by that run. Your own `make day {ctx.day}` writes "
                f"`results/{ctx.name}/deliverable.md` and leaves this file alone._"]
    if ctx.kind == "mine":
        return [f"_Your run of day {ctx.day} (`{cmd}`); every number below was measured by it. The course's "
                f"reference run is [`{ref}`](../../{ref}); the table at the end compares the two._"]
    if ctx.kind == "variant":
        now = config.to_dict(ctx.cfg)
        changed = [f"`{k}` = {now[k]!r} (default {defaults.get(k)!r})" for k in now if now[k] != defaults.get(k)]
        return [f"_Variant `{ctx.label}` of day {ctx.day}: a run with settings changed from the default "
                f"({', '.join(changed) or 'same config, other seed'}; preset `{ctx.preset}`, seed {ctx.seed}). "
                "It is kept beside your default run in `results/` and never replaces it unless recorded with "
                f"`make day {ctx.day} ARGS=\"... --record\"`. Every number below was measured by this run._"]
    return [f"_Generated by `{cmd}{' --quick' if ctx.quick else ''}`; every number below was measured by that "
            "run._"]


def _render(ctx: Context, ban: str, metrics: dict, reference: dict | None, wall: float,
            defaults: dict | None = None) -> str:
    head = [f"# Day {ctx.day}: {_focus(ctx.day)} — deliverable", "",
            *_origin(ctx, defaults or {}), "",
            "```text", ban, "```", "",
            f"Run `{ctx.run_id}`, wall time {wall:.1f} s. Config (`{ctx.preset}` preset):", "",
            "```yaml", config.to_yaml(ctx.cfg).rstrip(), "```", ""]
    body = ctx.deliverable.render()
    tail = _throughput_section(ctx.throughput) + ["", "## Key metrics", ""]
    rows = []
    ref_metrics = (reference or {}).get("metrics", {})
    same_preset = reference is not None and reference.get("preset") == ctx.preset
    for k, v in metrics.items():
        r = ref_metrics.get(k) if same_preset else None
        ratio = (v / r) if isinstance(v, (int, float)) and isinstance(r, (int, float)) and r else None
        rows.append({"metric": k, "this run": _num(v), "reference run": "—" if r is None else _num(r),
                     "ratio": "—" if ratio is None else f"{ratio:.3f}"})
    tail.append(tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True) if rows else "_(none)_")
    if reference is None:
        tail += ["", "_No `reference.json` committed for this day yet._"]
    elif not same_preset:
        tail += ["", f"_The committed reference used preset `{reference.get('preset')}`; "
                 f"this run used `{ctx.preset}`, so no ratio is shown._"]
    else:
        re_env = reference.get("env", {})
        tail += ["", f"_Reference: run `{reference.get('run_id')}` on {re_env.get('platform')}, "
                 f"{re_env.get('cpu_count')} cpus, torch {re_env.get('torch')}, device {re_env.get('device')}. "
                 "Timings on another machine differ; compare ratios measured in one run._"]
    return "\n".join(head) + "\n" + body + "\n".join(tail) + "\n"


def _throughput_section(rows: list[dict]) -> list[str]:
    """Every training run's dtype, tokens/s and MFU against the measured matmul peak of its dtype."""
    if not rows:
        return []
    table = [{"run": r["run"], "dtype": r["dtype"], "steps": r["steps"], "tokens/s": f"{r['tokens_per_s']:,.0f}",
              "MFLOP/token": "—" if r["flops_per_token"] is None else f"{r['flops_per_token'] / 1e6:.3g}",
              "MFU": "—" if r["mfu"] is None else f"{r['mfu']:.1%}",
              "peak of the dtype (GFLOP/s)": f"{r['peak_gflops']:,.0f}"} for r in rows]
    best = max((r for r in rows if r["mfu"] is not None), key=lambda r: r["mfu"], default=None)
    why = sorted({r["why"] for r in rows if r["why"]})
    return ["", "## Throughput and precision", "",
            tabulate(table, headers="keys", tablefmt="github", disable_numparse=True), "",
            "MFU (model FLOP utilisation) = tokens/s × matmul FLOPs per token (3× the forward's, "
            "`flops_per_token`) ÷ this machine's measured matmul peak in the run's dtype "
            "(`common/lab/hardware.py`, measured once and cached). "
            + (f"What to look at: the best run, `{best['run']}`, uses {best['mfu']:.1%} of the peak; the rest of "
               "the time goes to the ops the FLOP count leaves out (norms, softmax, optimizer, data) and to matrices "
               "too small to run at peak. " if best else "")
            + "Precision: " + "; ".join(why) + "."]


def cli(day: int, cfg_cls, presets: dict, main: Callable, argv: list[str] | None = None) -> int:
    """Entry point of `python -m days.dayNN.run`; returns the exit code."""
    args = _parser(day).parse_args(argv)
    try:
        if args.show_config:
            dev = pick_device(args.device)
            preset = "nano" if args.quick else args.preset or ("gpu" if dev.type == "cuda" else "cpu")
            preset = None if preset == "cpu" and "cpu" not in presets else preset
            print(config.to_yaml(config.resolve(cfg_cls, presets, preset, args.overrides)))
            return 0
        execute(day, cfg_cls, presets, main, quick=args.quick, device=args.device, preset=args.preset,
                seed=args.seed, out=args.out, overrides=args.overrides, update_reference=args.update_reference)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if not os.environ.get("DAYS_UNDER_MAKE"):  # under `make day` the make command says it, once
            print(f"\ninterrupted: day {day} stopped before it finished; nothing was recorded as done. Run it again "
                  "to start over.", file=sys.stderr)
        return 130
    except Exception as e:
        if isinstance(e, NotImplementedError) and str(e).startswith("exercise "):  # a stub from `make exercise`
            print(f"error: {e}; the run stopped there, nothing was recorded as done.", file=sys.stderr)
            return 1
        traceback.print_exc()
        print(f"\nerror: day {day} failed (traceback above); nothing was recorded as done.", file=sys.stderr)
        return 1
    return 0


def quick(module, out: str | Path, **overrides) -> dict:
    """Run a day module (`days.dayNN.run`) at the nano size into `out`; returns the summary."""
    return execute(module.DAY, module.Config, module.PRESETS, module.main, quick=True, out=out,
                   overrides=overrides or None, quiet=True)
