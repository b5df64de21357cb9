"""Day 19: the selection rule, the sharpness estimate against an explicit Hessian, GD's 2/lambda threshold, e2e."""

import math

import pytest
import torch

from common.lab import curvature as cv
from common.run import runner
from common.train import TrainConfig, lr_at
from conftest import need_data
from days.day19 import run
from days.day19.run import select_best


def res(name, val, gnorm, diverged=False):
    return {"name": name, "val_loss": val, "max_grad_norm": gnorm, "diverged": diverged}


def test_selection_rule_excludes_diverged_and_breaks_ties_by_grad_norm():
    rs = [res("a", 2.40, 3.0), res("b", 1.00, 0.5, diverged=True), res("c", 2.402, 1.0), res("d", 2.50, 0.1)]
    assert select_best(rs) == "c"            # b is lowest but diverged; a and c tie at 2.40, c has smaller norm
    rs[2]["val_loss"] = 2.43
    assert select_best(rs) == "a"            # no tie any more: lowest val wins despite its larger norm
    assert select_best([res("x", float("nan"), 1.0)]) is None   # a nan val loss is not a winner
    assert select_best([res("x", 1.0, 1.0, True), res("y", 0.5, 1.0, True)]) is None


def quadratic(lams, seed=0):
    """L(w) = 1/2 w^T A w with A = Q diag(lams) Q^T: the Hessian is A everywhere."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(lams), len(lams), generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.tensor(lams, dtype=torch.float64)) @ Q.T
    w = torch.randn(len(lams), generator=g, dtype=torch.float64, requires_grad=True)
    return A, w, (lambda: 0.5 * w @ A @ w)


def test_sharpness_matches_explicit_hessian_of_a_quadratic():
    lams = [7.5, 3.0, 1.0, 0.2, -0.5, 0.05]
    A, w, loss = quadratic(lams)
    mv = lambda u: cv.hvp(loss, [w], u)  # noqa: E731
    H = cv.hessian_from_hvp(mv, len(lams))
    torch.testing.assert_close(H, A)
    assert torch.linalg.eigvalsh(H)[-1].item() == pytest.approx(7.5, rel=1e-10)
    assert cv.lanczos(mv, len(lams), k=1, m=len(lams), dtype=torch.float64)[0].item() == pytest.approx(7.5, rel=1e-8)
    assert cv.top_eigenvalue(mv, len(lams), iters=500, tol=1e-12, dtype=torch.float64) == pytest.approx(7.5, rel=1e-6)


@pytest.mark.parametrize("factor, diverges", [(0.95, False), (1.05, True)])
def test_gd_on_a_quadratic_diverges_iff_lr_above_two_over_lambda_max(factor, diverges):
    lams = [4.0, 1.0, 0.1]
    A, w, loss = quadratic(lams, seed=1)
    lr = factor * 2 / max(lams)
    with torch.no_grad():
        for _ in range(300):
            w -= lr * (A @ w)
    grew = w.norm().item() > 1e3
    assert grew == diverges
    assert math.isfinite(loss().item()) or diverges


def test_warmup_climbs_linearly_to_the_peak_then_the_schedule_takes_over():
    c = TrainConfig(max_iters=100, lr=0.8, min_lr=0.08, warmup_iters=10, schedule="constant")
    assert [lr_at(t, c) for t in range(10)] == pytest.approx([0.08 * (t + 1) for t in range(10)])
    assert [lr_at(t, c) for t in (10, 50, 99, 150)] == pytest.approx([0.8] * 4)
    c.schedule = "linear"  # decays over steps 10..100, min_lr after
    assert [lr_at(t, c) for t in (10, 55, 100, 150)] == pytest.approx([0.8, 0.44, 0.08, 0.08])
    c.warmup_iters = 0
    assert lr_at(0, c) == pytest.approx(0.8)


def test_quick_run(tmp_path):
    need_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    c = run.Config(**run.PRESETS["nano"])
    names = [f"lr{lr:g}_wu{wu}" for lr in (c.lr_low, c.lr_high) for wu in (0, c.warmup)]
    assert m["best_config"] in names
    assert all(f"val_loss_{n}" in m and f"max_ratio_{n}" in m for n in names)
    best = m["best_config"]
    assert math.isfinite(m[f"val_loss_{best}"]) and m[f"val_loss_{best}"] < math.log(65) + 0.5
    assert m[f"max_ratio_{best}"] > 0
    assert (tmp_path / "deliverable.md").is_file()
    assert (tmp_path / "plots" / "day19_loss.png").is_file() and (tmp_path / "plots" / "day19_sharpness.png").is_file()


def test_a_run_collapsed_to_chance_is_not_the_best():
    rs = [res("a", 2.40, 3.0), {**res("dead", 1.0, 0.0), "failed": True}]
    assert select_best(rs) == "a"
