import pytest
import torch

from common.train.optim import OPTIMIZERS, ScratchOptimizer

CASES = [
    ("sgd", torch.optim.SGD, dict(lr=0.05)),
    ("sgd", torch.optim.SGD, dict(lr=0.05, weight_decay=0.01)),
    ("momentum", torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    ("momentum", torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("adam", torch.optim.Adam, dict(lr=1e-2)),
    ("adam", torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
    ("adamw", torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    ("adamw", torch.optim.AdamW, dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.5)),
]


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()


@pytest.mark.parametrize("name, ref_cls, hp", CASES)
def test_matches_torch_optim_for_150_steps(name, ref_cls, hp):
    ours_net, ref_net = _net(), _net()
    ours = ScratchOptimizer(ours_net.parameters(), name, **hp)
    ref = ref_cls(ref_net.parameters(), **hp)
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        x = torch.randn(32, 5, generator=g, dtype=torch.float64)
        y = torch.randn(32, 3, generator=g, dtype=torch.float64)
        for net, opt in ((ours_net, ours), (ref_net, ref)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    for a, b in zip(ours_net.parameters(), ref_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_adamw_decay_is_decoupled_from_the_gradient_scale():
    """With a zero gradient, AdamW still shrinks the weights by lr * wd; Adam's L2 term does not."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = ScratchOptimizer([p], "adamw", lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros(3)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((3,), 0.95))


def test_param_groups_state_dict_and_errors():
    net = _net()
    groups = [{"params": net[0].parameters(), "weight_decay": 0.1}, {"params": net[2].parameters()}]
    opt = ScratchOptimizer(groups, "adamw", lr=1e-3)
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.01
    net(torch.randn(2, 5, dtype=torch.float64)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    fresh = ScratchOptimizer(_net().parameters(), "adamw", lr=1e-3)
    fresh.load_state_dict(sd)
    assert len(fresh.state) == 4 and all(s["step"] == 1 for s in fresh.state.values())
    with pytest.raises(ValueError, match="unknown optimizer"):
        ScratchOptimizer(net.parameters(), "lion")
    assert set(OPTIMIZERS) == {"sgd", "momentum", "adam", "adamw"}
