"""RMSprop (Hinton, 2012), exactly as ``torch.optim.RMSprop``::

    g = g + weight_decay * p
    v = alpha * v + (1 - alpha) * g * g
    if centered:  m = alpha * m + (1 - alpha) * g;  denom = sqrt(v - m * m) + eps
    else:         denom = sqrt(v) + eps
    if momentum > 0:  b = momentum * b + g / denom;  p = p - lr * b
    else:             p = p - lr * g / denom

.. note:: eps is added outside the square root (as in torch; some papers put it inside).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from optimizers.base import ConfigError, Optimizer, Params, bcast, check, per_member


class RMSpropState(NamedTuple):
    step: int
    square_avg: list[Tensor]
    grad_avg: list[Tensor]
    velocity: list[Tensor]


def rmsprop(
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered: bool = False,
    *,
    batch: int = 1,
    dtype: torch.dtype = torch.float64,
) -> Optimizer:
    lr = per_member(lr, batch, dtype, "lr")
    alpha = per_member(alpha, batch, dtype, "optimizer.alpha")
    eps = per_member(eps, batch, dtype, "optimizer.eps")
    wd = per_member(weight_decay, batch, dtype, "optimizer.weight_decay")
    mu = per_member(momentum, batch, dtype, "optimizer.momentum")
    check("lr", lr, lr > 0, "lr > 0")
    check("optimizer.alpha", alpha, (alpha >= 0) & (alpha < 1), "0 <= alpha < 1")
    check("optimizer.eps", eps, eps >= 0, "eps >= 0")
    check("optimizer.weight_decay", wd, wd >= 0, "weight_decay >= 0")
    check("optimizer.momentum", mu, mu >= 0, "momentum >= 0")
    if not isinstance(centered, bool):
        raise ConfigError(f"optimizer.centered={centered!r} is not allowed; allowed: true or false")

    def init(params: Params) -> RMSpropState:
        zeros = [torch.zeros_like(p) for p in params]
        return RMSpropState(0, zeros, list(zeros), list(zeros))

    def update(grads: Params, state: RMSpropState, params: Params) -> tuple[Params, RMSpropState]:
        new_params, vs, ms, bs = [], [], [], []
        for p, g, v, m, b in zip(params, grads, state.square_avg, state.grad_avg, state.velocity):
            g = g + bcast(wd, p) * p
            a = bcast(alpha, p)
            v = a * v + (1 - a) * g * g
            if centered:
                m = torch.lerp(m, g, 1 - a)
                denom = (v - m * m).sqrt() + bcast(eps, p)
            else:
                denom = v.sqrt() + bcast(eps, p)
            step = g / denom
            b = bcast(mu, p) * b + step
            step = torch.where(bcast(mu > 0, p), b, step)
            new_params.append(p - bcast(lr, p) * step)
            vs.append(v)
            ms.append(m)
            bs.append(b)
        return new_params, RMSpropState(state.step + 1, vs, ms, bs)

    def preconditioner(state: RMSpropState) -> Params | None:
        """P = sqrt(v) + eps (sqrt(v - m^2) + eps centered): the update is lr * P^-1 g, or its heavy-ball momentum."""
        if state.step == 0:
            return None
        return [((v - m * m) if centered else v).sqrt() + bcast(eps, v) for v, m in zip(state.square_avg, state.grad_avg)]

    return Optimizer(init, update, {"lr": lr}, preconditioner)
