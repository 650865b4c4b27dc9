"""Any ``torch.optim`` class over a batch of members, one ``step()`` per step for all of them.

torch.optim keeps every hyperparameter per param group. So members that share a setting become the
rows of one parameter tensor, each distinct setting (lr, betas, weight decay, ...) becomes its own
param group, and a single ``optimizer.step()`` updates every member, each with its own
hyperparameters. That equals running each member alone exactly when the class updates every element
independently of the others, as SGD, Adam, AdamW, NAdam, RAdam, Adamax, ASGD, Rprop, Adagrad,
Adadelta and RMSprop do.

Whether a class does is measured, not listed (:func:`elementwise`): the class runs a few steps on a
3 x 5 tensor whose rows get different gradients, and again on each row alone as a 1 x 5 tensor; it is
element-wise if every row's every step agrees to 1e-12. A class that couples elements (LBFGS needs a
closure and line-searches on the whole tensor; Adafactor factors its second moment over rows and
columns; anything with a norm over a tensor) fails the probe, or raises in it, and keeps the
one-member-at-a-time path.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch

_PROBE_STEPS = 6
_verdicts: dict[str, bool] = {}


def _probe_grads(p: torch.Tensor, t: int, scale: torch.Tensor) -> torch.Tensor:
    """Gradients that differ by element and by step, and depend on the parameters."""
    return scale * p + torch.sin(p * (t + 1)) + 0.1 * t


def _run(cls: type, kwargs: dict, p0: torch.Tensor, scale: torch.Tensor) -> list[torch.Tensor]:
    p = p0.clone().requires_grad_(True)
    opt = cls([p], **kwargs)
    out = []
    for t in range(_PROBE_STEPS):
        p.grad = _probe_grads(p.detach(), t, scale)
        opt.step()
        out.append(p.detach().clone())
    return out


def elementwise(cls: type, kwargs: dict, dtype: torch.dtype = torch.float64) -> bool:
    """Whether ``cls(**kwargs)`` updates each element on its own (see the module docstring).
    Cached per class and non-numeric settings."""
    key = json.dumps([f"{cls.__module__}.{cls.__qualname__}", str(dtype),
                      {k: v for k, v in kwargs.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}],
                     sort_keys=True, default=str)
    if key not in _verdicts:
        gen = torch.Generator().manual_seed(0)
        p0 = torch.randn(3, 5, generator=gen, dtype=dtype)
        scale = torch.rand(3, 5, generator=gen, dtype=dtype) + 0.5
        try:
            together = _run(cls, kwargs, p0, scale)
            alone = [_run(cls, kwargs, p0[i : i + 1], scale[i : i + 1]) for i in range(3)]
            ok = all(
                torch.allclose(together[t][i : i + 1], alone[i][t], rtol=1e-12, atol=1e-300) and bool(torch.isfinite(together[t]).all())
                for t in range(_PROBE_STEPS) for i in range(3)
            )
            ok = ok and not all(torch.equal(together[-1][i], together[-1][0]) for i in range(3))  # rows really differ
        except Exception:  # needs a closure, sparse gradients, 2-D shapes of its own, ...
            ok = False
        _verdicts[key] = ok
    return _verdicts[key]


def batched_step(cls: type, member_kwargs: list[dict], x: torch.Tensor) -> tuple[Callable, Callable]:
    """A ``step(x, g) -> x_new`` over all members of ``x`` (rows), member i with ``member_kwargs[i]``:
    one param group per distinct setting, holding the rows of the members that share it; and a
    ``set_lrs(lrs)`` that gives each group the lr of its members (a schedule's, for the next step)."""
    settings: dict[str, list[int]] = {}
    for i, kw in enumerate(member_kwargs):
        settings.setdefault(json.dumps(kw, sort_keys=True), []).append(i)
    rows = [torch.tensor(idx) for idx in settings.values()]
    params = [x[r].detach().clone().requires_grad_(True) for r in rows]
    groups = [{"params": [p], **json.loads(s)} for p, s in zip(params, settings)]
    opt = cls(groups, **member_kwargs[0])

    def step(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for p, r in zip(params, rows):
                p.copy_(x[r])
                p.grad = g[r]
        opt.step()
        out = torch.empty_like(x)
        for p, r in zip(params, rows):
            out[r] = p.detach()
        return out

    first = [int(r[0]) for r in rows]  # members of a group share their setting, lr included

    def set_lrs(lrs: list[float]) -> None:
        for group, i in zip(opt.param_groups, first):
            group["lr"] = lrs[i]

    return step, set_lrs
