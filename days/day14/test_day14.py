"""Day 14: clipping bounds the gradient exactly as stated; weight decay shrinks weights; the run works."""

import torch

from common.nn.model import GPT, gpt_config
from common.run import runner
from common.train.optim import ScratchOptimizer
from days.day14 import run


def test_global_norm_clip_rescales_to_the_threshold():
    p = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))]
    p[0].grad, p[1].grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0, 0.0])  # norm 5
    total = torch.nn.utils.get_total_norm([q.grad for q in p])
    torch.nn.utils.clip_grads_with_norm_(p, 1.0, total)
    assert total.item() == 5.0
    assert torch.allclose(torch.cat([q.grad for q in p]).norm(), torch.tensor(1.0))
    assert torch.allclose(p[0].grad, torch.tensor([0.6, 0.0, 0.0]))  # direction kept


def test_decoupled_decay_shrinks_weights_without_gradient():
    torch.manual_seed(0)
    m = GPT(gpt_config("nano"))
    opt = m.configure_optimizer(0.5, 0.1, (0.9, 0.99), "cpu")
    before = m.blocks[0].mlp.fc.weight.detach().clone()
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(m.blocks[0].mlp.fc.weight.detach(), before * (1 - 0.1 * 0.5))
    assert torch.equal(m.ln_f.weight.detach(), torch.ones_like(m.ln_f.weight))  # norm gains are not decayed


def test_scratch_sgd_l2_decay_and_momentum_match_torch():
    """Our SGD rule: with no gradient, L2 decay shrinks the weights by (1 - lr wd) per step (the same as
    decoupled decay, for SGD), and with momentum, plain or Nesterov, it equals torch.optim.SGD."""
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = ScratchOptimizer([p], "sgd", lr=0.1, weight_decay=0.5)
    for _ in range(3):
        p.grad = torch.zeros_like(p)
        opt.step()
    torch.testing.assert_close(p.detach(), torch.full((3,), 0.95 ** 3, dtype=torch.float64))
    for nesterov in (False, True):
        hp = dict(lr=0.05, momentum=0.9, weight_decay=0.1, nesterov=nesterov)
        a = torch.nn.Parameter(torch.linspace(-1, 1, 5, dtype=torch.float64))
        b = torch.nn.Parameter(a.detach().clone())
        ours, ref = ScratchOptimizer([a], "sgd", **hp), torch.optim.SGD([b], **hp)
        g = torch.Generator().manual_seed(0)
        for _ in range(20):
            grad = torch.randn(5, generator=g, dtype=torch.float64)
            a.grad, b.grad = grad.clone(), grad.clone()
            ours.step()
            ref.step()
        torch.testing.assert_close(a.detach(), b.detach(), atol=1e-12, rtol=0)


def test_recorder_keeps_what_train_logs():
    r = run.Recorder()
    r.log("train/grad_norm", 2.0, 3)
    r.log_dict({"val": 1.5}, 4, prefix="eval/")
    assert r.series == {"train/grad_norm": [(3, 2.0)], "eval/val": [(4, 1.5)]}


def test_quick_run_end_to_end(tmp_path, require_data):
    require_data("tinyshakespeare")
    s = runner.quick(run, tmp_path)
    m = s["metrics"]
    assert m["weight_norm_ratio"] > 0 and isinstance(m["clip_saves_high_lr"], bool)
    assert (tmp_path / "plots" / "day14_grad_norm_traces.png").is_file()
