"""Optimizers written from their update rules: SGD, momentum, Adam, AdamW.

Each rule is a function `rule(p, g, state, group)` that updates one parameter tensor in place;
`OPTIMIZERS` maps a name to it. `ScratchOptimizer` applies a rule to every parameter and speaks
enough of the `torch.optim` interface (`param_groups`, `step`, `zero_grad`, `state_dict`) for
`common.train.train` to drive it. The rules follow PyTorch's conventions exactly, so the tests
can demand equality with `torch.optim` parameter for parameter:

    SGD       g <- g + wd p;  b <- mu b + g (b = g at step 1);  p <- p - lr (g + mu b if nesterov else b)
    Adam      g <- g + wd p (L2 in the gradient);  m, v moving averages;  p <- p - lr m_hat / (sqrt(v_hat) + eps)
    AdamW     p <- p (1 - lr wd) first (decoupled decay), then the Adam step on the raw gradient

These are for learning and for the day-12 comparison; training uses the fused `torch.optim.AdamW`.
"""

from __future__ import annotations

import math

import torch


def sgd(p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
    """SGD with optional L2 weight decay, momentum and Nesterov momentum (PyTorch's form)."""
    # >>> exercise day14.sgd_weight_decay: SGD with L2 weight decay, momentum buffer and Nesterov, as torch.optim.SGD
    wd, mu = group.get("weight_decay", 0.0), group.get("momentum", 0.0)
    if wd:
        g = g + wd * p
    if mu:
        if "buf" not in state:
            state["buf"] = g.clone()
        else:
            state["buf"].mul_(mu).add_(g)
        g = g + mu * state["buf"] if group.get("nesterov", False) else state["buf"]
    p.add_(g, alpha=-group["lr"])
    # <<< exercise day14.sgd_weight_decay


def _adam(p, g, state, group, decoupled: bool) -> None:
    # >>> exercise day12.adam: Adam and AdamW: weight decay (L2 or decoupled), both moments, bias correction, the step
    b1, b2 = group.get("betas", (0.9, 0.999))
    eps, wd, lr = group.get("eps", 1e-8), group.get("weight_decay", 0.0), group["lr"]
    if wd and decoupled:
        p.mul_(1 - lr * wd)       # AdamW: shrink the weights, outside the adaptive scaling
    elif wd:
        g = g + wd * p            # Adam: L2 enters the gradient, so it is rescaled per coordinate too
    if "step" not in state:
        state["step"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
    state["step"] += 1
    t, m, v = state["step"], state["m"], state["v"]
    m.mul_(b1).add_(g, alpha=1 - b1)                 # first moment: mean of g
    v.mul_(b2).addcmul_(g, g, value=1 - b2)          # second moment: mean of g^2
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t              # bias corrections: m, v start at 0
    denom = v.sqrt() / math.sqrt(bc2) + eps
    p.addcdiv_(m, denom, value=-lr / bc1)
    # <<< exercise day12.adam


def adam(p, g, state, group) -> None:
    """Adam (Kingma & Ba) with L2 weight decay added to the gradient."""
    _adam(p, g, state, group, decoupled=False)


def adamw(p, g, state, group) -> None:
    """AdamW (Loshchilov & Hutter): decoupled weight decay."""
    _adam(p, g, state, group, decoupled=True)


OPTIMIZERS = {"sgd": sgd, "momentum": sgd, "adam": adam, "adamw": adamw}
DEFAULTS = {"sgd": {}, "momentum": {"momentum": 0.9}, "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
            "adamw": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}}


class ScratchOptimizer:
    """`ScratchOptimizer(params, "adamw", lr=1e-3, weight_decay=0.1)`, or param groups as in torch.optim."""

    def __init__(self, params, name: str, **hp):
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
        self.rule = OPTIMIZERS[name]
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = [{**DEFAULTS[name], **hp, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict] = {}

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.rule(p, p.grad, self.state.setdefault(p, {}), group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None if set_to_none else (p.grad.zero_() if p.grad is not None else None)

    def state_dict(self) -> dict:
        ids = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        return {"state": {ids[id(p)]: s for p, s in self.state.items()},
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]}

    def load_state_dict(self, sd: dict) -> None:
        flat = [p for g in self.param_groups for p in g["params"]]
        self.state = {flat[int(i)]: s for i, s in sd["state"].items()}
        for g, saved in zip(self.param_groups, sd["param_groups"]):
            g.update(saved)
