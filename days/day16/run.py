"""Day 16: curvature — Hessian-vector products (Pearlmutter) and the top of the Hessian spectrum.

Part 1 checks common/lab/curvature.py on a tiny MLP whose full Hessian fits in memory (float64): both
HVP routes and finite differences against torch.autograd.functional.hessian, power iteration and
Lanczos against torch.linalg.eigvalsh. Part 2 trains the nano GPT with full-batch gradient descent
(fixed step eta) on a fixed set of Tiny Shakespeare windows, and tracks the top Hessian eigenvalues
of that same loss against 2 / eta, the edge-of-stability threshold of Cohen et al. (2021). Whether the
run shows a sharpening phase or starts above the threshold depends on the initialisation and eta; the
deliverable says which happened.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from common import data
from common.lab import bench, determinism
from common.lab import curvature as cv
from common.nn.model import GPT, gpt_config
from common.run import plotting, runner
from common.run.tracking import progress

DAY = 16
# How `make reproduce` compares each metric: everything not listed is exact (deterministic).
# Timings, and choices made by a clock, move with the machine's load: reported as ratios only.
METRIC_KINDS = {
    "hvp_cost_x_grad": "timing",
}


@dataclass
class Config:
    mlp_width: int = 16         # tiny MLP 4 -> width -> 3: P = 4w + w + 3w + 3 parameters
    n_vectors: int = 5          # random directions for the HVP checks
    fd_eps: float = 1e-5        # finite-difference step (float64)
    n_seqs: int = 32            # the fixed "full batch": n_seqs windows of block_size characters
    block_size: int = 32
    lr: float = 0.5             # constant GD step eta: the stability threshold is 2 / eta
    steps: int = 1500           # long enough to memorise the batch and settle at the edge
    eig_every: int = 50         # Lanczos snapshot interval (plus steps 0, 50, 200)
    top_k: int = 3
    lanczos_iters: int = 20     # H v products per snapshot


PRESETS = {"nano": dict(mlp_width=6, n_vectors=2, n_seqs=4, block_size=16, steps=20, eig_every=10, lanczos_iters=8),
           "cpu": {}, "gpu": dict(n_seqs=128, block_size=64, steps=3000, eig_every=100, lanczos_iters=30)}


def mlp_problem(width, seed):
    """A tanh MLP on random data: (pure loss of a parameter tuple, params, closure)."""
    determinism.seed_everything(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Tanh(), torch.nn.Linear(width, 3)).double()
    x, y = torch.randn(64, 4, dtype=torch.float64), torch.randint(3, (64,))
    names = [n for n, _ in model.named_parameters()]

    def f(ps):
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, dict(zip(names, ps)), (x,)), y)
    return f, cv.params_of(model), (lambda: f(tuple(model.parameters())))


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def check_small(cfg, ctx):
    f, ps, loss = mlp_problem(cfg.mlp_width, ctx.seed)
    P = sum(p.numel() for p in ps)
    H = torch.autograd.functional.hessian(lambda flat: f(tuple(cv.unflatten(flat, ps))), cv.flatten(ps).detach())
    g = torch.Generator().manual_seed(ctx.seed)
    errs = {"double backward": [], "torch.func jvp(grad)": [], f"finite differences (eps={cfg.fd_eps:g})": []}
    for _ in range(cfg.n_vectors):
        v = torch.randn(P, generator=g, dtype=torch.float64)
        for name, hv in zip(errs, (cv.hvp(loss, ps, v), cv.hvp_func(f, ps, v), cv.hvp_fd(loss, ps, v, cfg.fd_eps))):
            errs[name].append(rel(hv, H @ v))
    ev = torch.linalg.eigvalsh(H)
    top, top_err = ev[-1].item(), lambda lam: abs(lam - ev[-1].item()) / abs(ev[-1].item())
    mv = lambda u: cv.hvp(loss, ps, u)  # noqa: E731
    lam_pi = cv.top_eigenvalue(mv, P, iters=1000, tol=1e-10, dtype=torch.float64)
    lan = cv.lanczos(mv, P, k=cfg.top_k, m=min(P, 40), dtype=torch.float64)
    d = ctx.deliverable
    d.section(f"HVPs against the explicit Hessian (tiny MLP, P = {P}, float64)")
    d.table([{"H v route": k, "max relative error vs H @ v": max(e), "mean": sum(e) / len(e)} for k, e in errs.items()],
            floatfmt=".2e")
    exact = max(max(errs["double backward"]), max(errs["torch.func jvp(grad)"]))
    fd = max(list(errs.values())[2])
    d.text(f"What to look at: both autograd routes match the explicit H @ v to {exact:.0e}, float64 rounding: "
           f"they are exact, not approximations. Finite differences are {fd:.0e} off, {fd / exact:.0e} times "
           f"more: truncation error of the central difference (eps = {cfg.fd_eps:g} times |v| ≈ "
           f"{P ** 0.5:.0f}), a check rather than a method.")
    d.table([{"estimate": k, "top eigenvalue": lam, "relative error": top_err(lam)} for k, lam in
             (("power iteration (top_eigenvalue)", lam_pi), (f"Lanczos ({min(P, 40)} steps)", lan[0].item()),
              ("torch.linalg.eigvalsh (explicit H)", top))], floatfmt=".6g")
    ref_k = ev.flip(0)[:cfg.top_k]
    d.text(f"What to look at: both iterative methods find the top eigenvalue from H v products alone; power "
           f"iteration stops at its tolerance ({top_err(lam_pi):.0e} off), while Lanczos with {min(P, 40)} steps is "
           f"{'at rounding level' if top_err(lan[0].item()) < 1e-12 else f'{top_err(lan[0].item()):.0e} off'}. "
           f"Spectrum of the explicit Hessian: min {ev[0].item():.4g}, max {ev[-1].item():.4g}, "
           f"{int((ev < -1e-10).sum())} of {P} eigenvalues negative (not convex). Lanczos top-{cfg.top_k} "
           f"max relative error vs eigvalsh: {((lan - ref_k).abs() / ref_k.abs()).max():.1e}.")
    return {"hvp_max_err": max(max(errs["double backward"]), max(errs["torch.func jvp(grad)"])),
            "fd_max_err": max(list(errs.values())[2]), "top_eig_rel_err": top_err(lam_pi)}


def gpt_setup(cfg, ctx, dtype=torch.float32):
    determinism.seed_everything(ctx.seed)
    tok, train_ids, _ = data.char_corpus()
    model = GPT(gpt_config("nano", vocab_size=tok.vocab_size, block_size=cfg.block_size, attn_backend="manual"))
    model = model.to(device=ctx.device, dtype=dtype)
    x, y = data.Batches(train_ids, cfg.block_size, cfg.n_seqs, ctx.device, seed=ctx.seed).fixed(1)[0]
    return model, cv.params_of(model), (lambda: model(x, y)[1]), (x, y)


def check_gpt(cfg, ctx):
    """On the nano GPT (float64): the two HVP routes and finite differences agree; their cost."""
    model, ps, loss, (x, y) = gpt_setup(cfg, ctx, torch.float64)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    f = lambda p: torch.func.functional_call(model, dict(zip(names, p)), (x, y))[1]  # noqa: E731
    P = sum(p.numel() for p in ps)
    v = torch.randn(P, generator=torch.Generator().manual_seed(ctx.seed), dtype=torch.float64).to(ctx.device)
    hv = cv.hvp(loss, ps, v)
    err_func, err_fd = rel(cv.hvp_func(f, ps, v), hv), rel(cv.hvp_fd(loss, ps, v, cfg.fd_eps), hv)
    t = {k: bench.time_fn(fn, warmup=1, repeats=5, device=ctx.device) for k, fn in
         (("gradient", lambda: cv.grad_flat(loss, ps)), ("hvp (double backward)", lambda: cv.hvp(loss, ps, v)),
          ("hvp (torch.func)", lambda: cv.hvp_func(f, ps, v)))}
    d = ctx.deliverable
    d.section(f"HVPs on the nano GPT (P = {P}, float64, {cfg.n_seqs} x {cfg.block_size} tokens, 1 torch thread)")
    d.text(f"No explicit Hessian here ({P}^2 entries). Relative difference to the double-backward H v: "
           f"torch.func {err_func:.1e}, finite differences {err_fd:.1e}.")
    d.table([{"computation": k, "ms (mean ± std)": bench.fmt_mean_std([x * 1e3 for x in tm.times]),
              "× gradient": tm.mean / t["gradient"].mean} for k, tm in t.items()], floatfmt=".2f")
    x_db, x_fn = (t[k].mean / t["gradient"].mean for k in ("hvp (double backward)", "hvp (torch.func)"))
    d.text(f"What to look at: one H v costs {x_db:.1f} gradients by double backward and {x_fn:.1f} by torch.func "
           f"on this machine: a small constant, while the explicit Hessian would need {P:,} of them. "
           f"{'Double backward' if x_db < x_fn else 'torch.func'} is the cheaper route here (timings move with "
           "the machine's load).")
    return {"gpt_hvp_func_err": err_func, "gpt_hvp_fd_err": err_fd,
            "hvp_cost_x_grad": t["hvp (double backward)"].mean / t["gradient"].mean}


def sharpness_run(cfg, ctx):
    model, ps, loss, _ = gpt_setup(cfg, ctx)
    P = sum(p.numel() for p in ps)
    opt = torch.optim.SGD(ps, lr=cfg.lr)
    marks = {0, cfg.steps, *range(0, cfg.steps + 1, cfg.eig_every), *(k for k in (50, 200) if k <= cfg.steps)}
    snaps, losses = {}, []
    for step in progress(range(cfg.steps + 1), desc="full-batch GD", disable=True if ctx.quick else None):
        if step in marks:
            snaps[step] = cv.lanczos(lambda u: cv.hvp(loss, ps, u), P, k=cfg.top_k, m=cfg.lanczos_iters,
                                     device=ctx.device).tolist()
            ctx.tracker.log("sharpness/top_eig", snaps[step][0], step)
        opt.zero_grad(set_to_none=True)
        l_val = loss()
        losses.append(l_val.item())
        ctx.tracker.log("train/loss", losses[-1], step)
        if step < cfg.steps:
            l_val.backward()
            opt.step()
    lam_pi = cv.top_eigenvalue(lambda u: cv.hvp(loss, ps, u), P, iters=100, tol=1e-4, device=ctx.device)
    thr = 2 / cfg.lr
    s = sorted(snaps)
    d = ctx.deliverable
    d.section(f"Spectrum during full-batch GD of the nano GPT (P = {P}, eta = {cfg.lr}, 2/eta = {thr:.2f})")
    d.table([{"step": k, "loss": losses[k], **{f"lambda_{i + 1}": e for i, e in enumerate(snaps[k])},
              "lambda_1 · eta / 2": snaps[k][0] / thr} for k in s], floatfmt=".4g")
    above = sum(snaps[k][0] > thr for k in s)
    d.text(f"What to look at: the last column is lambda_1 divided by the stability threshold 2/eta; above 1, the "
           f"local quadratic model says GD should oscillate and grow along the top direction. {above} of {len(s)} "
           f"snapshots are above 1, yet the loss falls from {losses[0]:.3g} to {losses[-1]:.3g}: a network is not a "
           "quadratic. "
           + (f"At step 0 lambda_1 is already {snaps[0][0] / thr:.2f} × 2/eta, so this run has no progressive-"
              "sharpening phase to see: it starts at (or past) the edge." if snaps[0][0] > thr else
              f"lambda_1 starts at {snaps[0][0] / thr:.2f} × 2/eta and "
              + ("rises past it: progressive sharpening." if max(snaps[k][0] for k in s) > thr
                 else "stays below it.")))
    late = [snaps[k][0] for k in s if k >= 3 * cfg.steps // 4]
    d.text(f"Over the last quarter of training the top eigenvalue ranged {min(late):.3g}–{max(late):.3g}, i.e. "
           f"{min(late) / thr:.2f}–{max(late) / thr:.2f} × 2/eta; it peaked at {max(v[0] for v in snaps.values()):.3g} "
           f"(step {max(s, key=lambda k: snaps[k][0])}). At the final step power iteration gives {lam_pi:.4g}, "
           f"Lanczos ({cfg.lanczos_iters} H v products) {snaps[s[-1]][0]:.4g}.")
    series = {f"lambda_{i + 1} (Lanczos)": (s, [snaps[k][i] for k in s]) for i in range(cfg.top_k)}
    p = plotting.lines(ctx.plot_path("sharpness"), series, "GD step", "Hessian eigenvalue (nats / param²)",
                       markers=True, hline=(thr, f"2/eta = {thr:.2f} (stability threshold)"),
                       title="Top Hessian eigenvalues of the training loss during full-batch GD")
    d.image(p, "top eigenvalues vs step; GD on a quadratic with curvature above the dashed line diverges")
    peak = max(s, key=lambda k: snaps[k][0])
    after = s[s.index(peak) + 1] if peak != s[-1] else None
    d.text(f"What to look at: lambda_1 ends at {snaps[s[-1]][0] / thr:.2f} × the dashed line and peaks at "
           f"{snaps[peak][0]:.3g} (step {peak}); "
           + (f"the spike is brief: the next snapshot, {after - peak} steps later, is back at "
              f"{snaps[after][0] / thr:.2f} × 2/eta, so GD does not stay where the curvature is that high. "
              if after is not None and snaps[peak][0] > 2 * thr else "")
           + f"lambda_2 and lambda_3 show the next directions, {snaps[s[-1]][1] / thr:.2f} and "
           f"{snaps[s[-1]][2] / thr:.2f} × 2/eta at the end.")
    p2 = plotting.lines(ctx.plot_path("loss"), {"train loss": (list(range(len(losses))), losses)}, "GD step",
                        "cross-entropy (nats/char)", logy=True, title="Full-batch training loss")
    d.image(p2, "training loss on the fixed batch")
    ups = [(b - a, i + 1) for i, (a, b) in enumerate(zip(losses[:-1], losses[1:])) if b > a]
    V = model.cfg.vocab_size
    d.text(f"What to look at: the loss goes from {losses[0]:.3g} (about ln {V} = {math.log(V):.2f}, a uniform "
           f"guess) to {losses[-1]:.3g}; with {P:,} parameters for {cfg.n_seqs * cfg.block_size:,} characters the "
           "fixed batch can be memorised. "
           + (f"It is not monotone: {len(ups)} of {cfg.steps} steps raise the loss, the largest by {max(ups)[0]:.3g} "
              f"nats at step {max(ups)[1]}"
              + (", as expected of GD with lambda_1 above 2/eta." if above else ".") if ups else
              "It falls at every step."))
    return {"top_eig_final": snaps[s[-1]][0], "top_eig_power_final": lam_pi,
            "top_eig_max": max(v[0] for v in snaps.values()), "two_over_lr": thr, "final_loss": losses[-1]}


@contextmanager
def one_thread():
    """Tiny float64 tensors gain nothing from a second thread; on a busy 2-core CPU it spins (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def main(cfg: Config, ctx) -> dict:
    with one_thread():
        checks = {**check_small(cfg, ctx), **check_gpt(cfg, ctx)}
    return {**checks, **sharpness_run(cfg, ctx)}


if __name__ == "__main__":
    raise SystemExit(runner.cli(DAY, Config, PRESETS, main))
