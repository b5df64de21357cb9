"""Day 9: RoPE sees only offsets, ALiBi's bias is a function of distance, learned tables stop at
block_size, the probes' bookkeeping, and the run end to end."""

import pytest
import torch

from common.nn.model import GPT, gpt_config
from common.nn.positional import alibi_bias, alibi_slopes, apply_rope, rope_cos_sin
from common.run import runner, tracking
from days.day09 import run
from days.day09.run import NA, Config, copy_probe


def test_rope_dot_product_depends_only_on_the_offset():
    torch.manual_seed(0)
    q, k = torch.randn(2, 16, dtype=torch.float64)
    cos, sin = rope_cos_sin(200, 16)
    cos, sin = cos.double(), sin.double()

    def score(m, n):
        qm = apply_rope(q[None], cos[m:m + 1], sin[m:m + 1])
        kn = apply_rope(k[None], cos[n:n + 1], sin[n:n + 1])
        return (qm * kn).sum().item()
    for m, n in [(3, 1), (10, 10), (7, 19)]:
        for shift in (1, 50, 150):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-5)  # float32 angles
    assert score(5, 0) != pytest.approx(score(6, 0), abs=1e-3)  # but it does see the offset
    assert apply_rope(q[None], cos[9:10], sin[9:10]).norm() == pytest.approx(q.norm().item())  # a rotation


def test_alibi_bias_is_minus_slope_times_distance():
    b = alibi_bias(4, 6)  # (H, T, T)
    slopes = torch.tensor(alibi_slopes(4))
    assert b[:, 5, 2].tolist() == pytest.approx((-3 * slopes).tolist())
    assert torch.equal(b[:, 1:, 1:], b[:, :-1, :-1])  # a function of i - j only
    assert (b.diagonal(dim1=1, dim2=2) == 0).all()


@pytest.mark.parametrize("pos,invariant", [("rope", True), ("alibi", True), ("learned", False)])
def test_relative_schemes_do_not_care_where_the_sequence_starts(pos, invariant):
    torch.manual_seed(0)
    model = GPT(gpt_config("nano", vocab_size=20, block_size=64, pos=pos)).eval()
    x = torch.randint(20, (2, 12))
    with torch.no_grad():
        a, b = model(x)[0], model(x, start_pos=40)[0]
    assert torch.allclose(a, b, atol=1e-5) == invariant


def test_learned_positions_end_at_block_size():
    model = GPT(gpt_config("nano", vocab_size=20, block_size=16, pos="learned"))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_copy_probe_reports_every_length_and_na_for_learned(tmp_path):
    cfg = Config(train_len=12, n_layer=1, n_head=2, n_embd=16, batch_size=4, copy_steps=3, n_copy=3,
                 copy_vocab=8, eval_batches=1)
    ctx = runner.Context(9, cfg, "nano", torch.device("cpu"), 0, True, tmp_path, tmp_path, "test",
                         tracking.Tracker(tmp_path / "logs", tensorboard=False), runner.Deliverable(tmp_path / "d.md"))
    for pos in ("rope", "learned"):
        out, res = copy_probe(cfg, ctx, pos, [12, 24])
        assert len(res.train_log["loss"]) > 0
        assert 0 <= out[12][0] <= 1 and 0 <= out[12][1] <= 1
        assert (out[24] is None) == (pos == "learned")
    assert NA.startswith("n/a: learned table ends at block_size")


def test_quick_run(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    for pos in ("rope", "alibi", "none"):
        assert 0 <= m[f"copy_acc_{pos}_2x"] <= 1 and 0 < m[f"val_loss_{pos}_2x"] < 10
    assert "copy_acc_learned_2x" not in m and m["lm_best_1x"] in ("rope", "alibi", "learned", "none")
    text = (tmp_path / "deliverable.md").read_text()
    assert NA in text and "computed budget" in text
    assert (tmp_path / "plots" / "day09_copy_accuracy_vs_length.png").is_file()
    assert (tmp_path / "plots" / "day09_val_loss_vs_length.png").is_file()
