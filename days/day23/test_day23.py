"""Day 23: FLOP counts add up; the budget is the arithmetic it claims (law tests: common/tests/test_scaling.py)."""

import numpy as np
import pytest

from common.data import corpus
from common.lab.scaling import compute_optimal, optimal_tokens, predict
from common.nn.model import SHAPES, flops_per_token, non_embedding_params
from common.run import runner
from days.day23 import run


@pytest.mark.parametrize("name", ["pretrain_27m", "pretrain_42m"])
def test_counted_flops_are_6N_plus_output_layer_plus_attention(name):
    c = SHAPES[name]
    L, C, V, T = c.n_layer, c.n_embd, c.vocab_size, c.block_size
    matmul_weights = non_embedding_params(c) - (2 * L + 1) * C + V * C  # norm gains do no matmul
    assert flops_per_token(c) == 6 * matmul_weights + 3 * 4 * L * T * C


def test_compute_optimal_split_minimises_the_law_at_fixed_compute():
    f = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}   # Chinchilla's published fit
    C = np.array([1e18, 1e21, 1e24])
    n, d = compute_optimal(f, C)
    assert np.allclose(6 * n * d, C, rtol=1e-12)
    for c, n_opt in zip(C, n):                                             # a scan along C = 6ND finds no lower loss
        ns = n_opt * np.geomspace(0.2, 5, 401)
        assert predict(f, n_opt, c / (6 * n_opt)) <= predict(f, ns, c / (6 * ns)).min() + 1e-12
    assert np.allclose(np.diff(np.log(n)) / np.diff(np.log(C)), 0.28 / 0.62)  # N_opt grows as C^(beta/(alpha+beta))
    for n_opt, d_opt in zip(n, d):                                         # the inverse question, for a given N
        assert optimal_tokens(f, n_opt) == pytest.approx(d_opt, rel=1e-9)

def test_quick_run_end_to_end(tmp_path, require_data):
    for n, f in corpus.SOURCES:
        require_data(n, f)
    m = runner.quick(run, tmp_path)["metrics"]
    assert m["n_runs"] == 9 and m["fit_max_rel_err"] < 0.05
    c = SHAPES["pretrain_27m"]
    n, tokens = m["budget_27m_params"], m["budget_27m_tokens"]
    assert tokens == pytest.approx(20 * n, rel=1e-3)
    assert m["budget_27m_flops"] == pytest.approx(6 * n * tokens, rel=1e-3)
    flops = flops_per_token(c) * tokens
    assert m["budget_27m_cpu_hours"] == pytest.approx(flops / m["27m_cpu_flops_per_s"] / 3600, rel=1e-3)
    assert m["budget_27m_gpu_hours_assumed"] == pytest.approx(flops / (989e12 * 0.4) / 3600, rel=1e-3)
    assert (tmp_path / "plots" / "day23_loss_vs_tokens.png").is_file()
    assert "ASSUMPTION" in (tmp_path / "deliverable.md").read_text()
