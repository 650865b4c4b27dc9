"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"), as a batched rule:

    c = beta1 * m + (1 - beta1) * g
    p = p - lr * (sign(c) + weight_decay * p)
    m = beta2 * m + (1 - beta2) * g
"""

import torch

from optimizers.base import Optimizer, bcast, check, per_member


def lion(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, batch=1, dtype=torch.float64):
    lr = per_member(lr, batch, dtype, "lr")  # one value per member: [B]
    b = per_member(betas, batch, dtype, "optimizer.betas", width=2)  # [B, 2]
    wd = per_member(weight_decay, batch, dtype, "optimizer.weight_decay")
    check("lr", lr, lr > 0, "lr > 0")
    check("optimizer.betas", b, (b >= 0) & (b < 1), "0 <= beta < 1")
    b1, b2 = b[:, 0].contiguous(), b[:, 1].contiguous()

    def init(params):
        return [torch.zeros_like(p) for p in params]  # the state: one momentum per parameter, [B, ...]

    def update(grads, state, params):
        new_params, new_state = [], []
        for p, g, m in zip(params, grads, state):
            c = bcast(b1, p) * m + (1 - bcast(b1, p)) * g
            new_params.append(p - bcast(lr, p) * (torch.sign(c) + bcast(wd, p) * p))
            new_state.append(bcast(b2, p) * m + (1 - bcast(b2, p)) * g)
        return new_params, new_state

    return Optimizer(init, update, hyperparams={"lr": lr})  # exposing lr lets schedules drive it
