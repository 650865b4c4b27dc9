"""AdaGrad (Duchi et al., 2011), exactly as ``torch.optim.Adagrad``::

    g = g + weight_decay * p
    clr = lr / (1 + (t - 1) * lr_decay)
    s = s + g * g                      (s starts at initial_accumulator_value)
    p = p - clr * g / (sqrt(s) + eps)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from optimizers.base import Optimizer, Params, bcast, check, per_member


class AdagradState(NamedTuple):
    step: int
    sum_sq: list[Tensor]


def adagrad(
    lr=1e-2,
    lr_decay=0.0,
    weight_decay=0.0,
    initial_accumulator_value=0.0,
    eps=1e-10,
    *,
    batch: int = 1,
    dtype: torch.dtype = torch.float64,
) -> Optimizer:
    lr = per_member(lr, batch, dtype, "lr")
    decay = per_member(lr_decay, batch, dtype, "optimizer.lr_decay")
    wd = per_member(weight_decay, batch, dtype, "optimizer.weight_decay")
    acc0 = per_member(initial_accumulator_value, batch, dtype, "optimizer.initial_accumulator_value")
    eps = per_member(eps, batch, dtype, "optimizer.eps")
    check("lr", lr, lr > 0, "lr > 0")
    check("optimizer.lr_decay", decay, decay >= 0, "lr_decay >= 0")
    check("optimizer.weight_decay", wd, wd >= 0, "weight_decay >= 0")
    check("optimizer.initial_accumulator_value", acc0, acc0 >= 0, "initial_accumulator_value >= 0")
    check("optimizer.eps", eps, eps >= 0, "eps >= 0")

    def init(params: Params) -> AdagradState:
        return AdagradState(0, [torch.ones_like(p) * bcast(acc0, p) for p in params])

    def update(grads: Params, state: AdagradState, params: Params) -> tuple[Params, AdagradState]:
        t = state.step + 1
        new_params, sums = [], []
        for p, g, s in zip(params, grads, state.sum_sq):
            g = g + bcast(wd, p) * p
            clr = bcast(lr, p) / (1 + (t - 1) * bcast(decay, p))
            s = s + g * g
            new_params.append(p - clr * g / (s.sqrt() + bcast(eps, p)))
            sums.append(s)
        return new_params, AdagradState(t, sums)

    def preconditioner(state: AdagradState) -> Params | None:
        """P = (1 + (t - 1) lr_decay) (sqrt(s) + eps): the last update was lr * P^-1 g."""
        if state.step == 0:
            return None
        return [(1 + (state.step - 1) * bcast(decay, s)) * (s.sqrt() + bcast(eps, s)) for s in state.sum_sq]

    return Optimizer(init, update, {"lr": lr}, preconditioner)
