"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), exactly as ``torch.optim``::

    AdamW: p = p * (1 - lr * weight_decay)        Adam: g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    v_max = max(v_max, v)  if amsgrad
    p = p - lr / (1 - beta1^t) * m / (sqrt(v or v_max) / sqrt(1 - beta2^t) + eps)

.. note:: eps is added after the bias correction of sqrt(v), as in torch (the paper's
   Algorithm 1 form, not the "epsilon hat" form of its section 2).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from optimizers.base import ConfigError, Optimizer, Params, bcast, check, per_member


class AdamState(NamedTuple):
    step: int
    exp_avg: list[Tensor]
    exp_avg_sq: list[Tensor]
    max_exp_avg_sq: list[Tensor]


def adam(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad: bool = False,
    *,
    decoupled_weight_decay: bool = False,
    batch: int = 1,
    dtype: torch.dtype = torch.float64,
) -> Optimizer:
    lr = per_member(lr, batch, dtype, "lr")
    b = per_member(betas, batch, dtype, "optimizer.betas", width=2)
    eps = per_member(eps, batch, dtype, "optimizer.eps")
    wd = per_member(weight_decay, batch, dtype, "optimizer.weight_decay")
    beta1, beta2 = b[:, 0].contiguous(), b[:, 1].contiguous()
    check("lr", lr, lr > 0, "lr > 0")
    check("optimizer.betas[0]", beta1, (beta1 >= 0) & (beta1 < 1), "0 <= beta < 1")
    check("optimizer.betas[1]", beta2, (beta2 >= 0) & (beta2 < 1), "0 <= beta < 1")
    check("optimizer.eps", eps, eps >= 0, "eps >= 0")
    check("optimizer.weight_decay", wd, wd >= 0, "weight_decay >= 0")
    if not isinstance(amsgrad, bool):
        raise ConfigError(f"optimizer.amsgrad={amsgrad!r} is not allowed; allowed: true or false")

    def init(params: Params) -> AdamState:
        zeros = [torch.zeros_like(p) for p in params]
        return AdamState(0, zeros, list(zeros), list(zeros))

    def update(grads: Params, state: AdamState, params: Params) -> tuple[Params, AdamState]:
        t = state.step + 1
        new_params, ms, vs, vmaxs = [], [], [], []
        for p, g, m, v, vmax in zip(params, grads, state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq):
            lr_, wd_, b1, b2 = bcast(lr, p), bcast(wd, p), bcast(beta1, p), bcast(beta2, p)
            if decoupled_weight_decay:
                p = p * (1 - lr_ * wd_)
            else:
                g = g + wd_ * p
            m = torch.lerp(m, g, 1 - b1)
            v = v * b2 + (1 - b2) * g * g
            if amsgrad:
                vmax = torch.maximum(vmax, v)
            step_size = lr_ / (1 - b1**t)
            denom = (vmax if amsgrad else v).sqrt() / (1 - b2**t).sqrt() + bcast(eps, p)
            new_params.append(p - step_size * m / denom)
            ms.append(m)
            vs.append(v)
            vmaxs.append(vmax)
        return new_params, AdamState(t, ms, vs, vmaxs)

    return Optimizer(init, update)


def adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad: bool = False, **kw) -> Optimizer:
    """AdamW: Adam with decoupled weight decay (torch default ``weight_decay = 0.01``)."""
    return adam(lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True, **kw)
