"""SGD with optional heavy-ball or Nesterov momentum, exactly as ``torch.optim.SGD``.

Plain gradient descent (``gd``), heavy ball (``momentum``) and ``nesterov`` are all
this one rule with different settings. For step ``t`` and gradient ``g``::

    g = g + weight_decay * p
    if momentum != 0:
        b = g                                     if t == 1
        b = momentum * b + (1 - dampening) * g    otherwise
        g = g + momentum * b  if nesterov  else  b
    p = p - lr * g

.. note:: As in torch, the velocity holds gradients, not steps (Sutskever et al. scale
   the gradient by ``lr`` inside the buffer). With ``dampening = 0`` this is exactly
   Polyak's heavy ball ``x+ = x - lr*g + momentum*(x - x_prev)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from optimizers.base import ConfigError, Optimizer, Params, bcast, check, per_member


class SGDState(NamedTuple):
    step: int
    velocity: list[Tensor]


def sgd(
    lr=1e-3,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov: bool = False,
    *,
    batch: int = 1,
    dtype: torch.dtype = torch.float64,
) -> Optimizer:
    lr = per_member(lr, batch, dtype, "lr")
    mu = per_member(momentum, batch, dtype, "optimizer.momentum")
    damp = per_member(dampening, batch, dtype, "optimizer.dampening")
    wd = per_member(weight_decay, batch, dtype, "optimizer.weight_decay")
    check("lr", lr, lr > 0, "lr > 0")
    check("optimizer.momentum", mu, mu >= 0, "momentum >= 0")
    check("optimizer.dampening", damp, (damp >= 0) & (damp <= 1), "0 <= dampening <= 1")
    check("optimizer.weight_decay", wd, wd >= 0, "weight_decay >= 0")
    if nesterov:
        check("optimizer.momentum", mu, mu > 0, "momentum > 0 when nesterov=true")
        check("optimizer.dampening", damp, damp == 0, "dampening = 0 when nesterov=true")
    if not isinstance(nesterov, bool):
        raise ConfigError(f"optimizer.nesterov={nesterov!r} is not allowed; allowed: true or false")
    no_momentum = mu == 0

    def init(params: Params) -> SGDState:
        return SGDState(0, [torch.zeros_like(p) for p in params])

    def update(grads: Params, state: SGDState, params: Params) -> tuple[Params, SGDState]:
        t = state.step + 1
        new_params, velocity = [], []
        for p, g, b in zip(params, grads, state.velocity):
            g = g + bcast(wd, p) * p
            m = bcast(mu, p)
            b = g if t == 1 else m * b + (1 - bcast(damp, p)) * g
            d = g + m * b if nesterov else b
            d = torch.where(bcast(no_momentum, p), g, d)  # torch keeps no buffer when momentum == 0
            new_params.append(p - bcast(lr, p) * d)
            velocity.append(b)
        return new_params, SGDState(t, velocity)

    return Optimizer(init, update, {"lr": lr})
