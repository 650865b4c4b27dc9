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

from optimizers.base import Broadcast, ConfigError, Optimizer, Params, check, per_member


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

    uniform = bool((beta1 == beta1[0]).all() and (beta2 == beta2[0]).all())
    shared_betas = (float(beta1[0]), float(beta2[0])) if uniform else None
    hp = Broadcast(lr=lr, wd=wd, b1=beta1, b2=beta2, eps=eps, one_minus_b1=1 - beta1, one_minus_b2=1 - beta2)

    def init(params: Params) -> AdamState:
        zeros = [torch.zeros_like(p) for p in params]
        return AdamState(0, zeros, list(zeros), list(zeros))

    def update(grads: Params, state: AdamState, params: Params) -> tuple[Params, AdamState]:
        t = state.step + 1
        new_params, ms, vs, vmaxs = [], [], [], []
        for p, g, m, v, vmax in zip(params, grads, state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq):
            h = hp(p)
            if decoupled_weight_decay:  # from lr at this update (a schedule may have changed it)
                p = p * torch.rsub(h["lr"] * h["wd"], 1)
            else:
                g = g + h["wd"] * p
            m = torch.lerp(m, g, h["one_minus_b1"])
            v = v * h["b2"] + h["one_minus_b2"] * g * g
            if amsgrad:
                vmax = torch.maximum(vmax, v)
            if shared_betas:  # Python floats, exactly as torch.optim computes the bias corrections
                bc1, bc2_sqrt = 1 - shared_betas[0] ** t, (1 - shared_betas[1] ** t) ** 0.5
            else:
                bc1, bc2_sqrt = torch.rsub(torch.pow(h["b1"], t), 1), torch.rsub(torch.pow(h["b2"], t), 1).sqrt()
            step_size = h["lr"] / bc1
            denom = (vmax if amsgrad else v).sqrt() / bc2_sqrt + h["eps"]
            new_params.append(p - step_size * m / denom)
            ms.append(m)
            vs.append(v)
            vmaxs.append(vmax)
        return new_params, AdamState(t, ms, vs, vmaxs)

    def preconditioner(state: AdamState) -> Params | None:
        """P = (1 - beta1^t) (sqrt(v / (1 - beta2^t)) + eps): the update is lr * P^-1 m (Cohen et al., 2022)."""
        if state.step == 0:
            return None
        t, out = state.step, []
        for v, vmax in zip(state.exp_avg_sq, state.max_exp_avg_sq):
            h = hp(v)
            bc1, bc2_sqrt = torch.rsub(torch.pow(h["b1"], t), 1), torch.rsub(torch.pow(h["b2"], t), 1).sqrt()
            out.append(bc1 * ((vmax if amsgrad else v).sqrt() / bc2_sqrt + h["eps"]))
        return out

    return Optimizer(init, update, {"lr": lr}, preconditioner)


def adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad: bool = False, **kw) -> Optimizer:
    """AdamW: Adam with decoupled weight decay (torch default ``weight_decay = 0.01``)."""
    return adam(lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True, **kw)
