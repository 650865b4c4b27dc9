"""The optimizer protocol and the helpers the update rules share."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from optimizers.errors import ConfigError

Params = list[Tensor]


class Optimizer(NamedTuple):
    """A batched optimizer as a pair of pure functions (optax's ``GradientTransformation``).

    ``hyperparams`` exposes per-member tensors that ``update`` reads at every call; a schedule
    (harness/schedules.py) writes ``hyperparams["lr"]`` in place before each update, so an update
    must read lr there, not a value derived from it once (optax's ``inject_hyperparams``).

    ``preconditioner(state)``, for an adaptive rule, gives the diagonal P of its last update, written as
    ``p <- p - lr * P^-1 d`` (d: the gradient or its momentum), one tensor per parameter, or None before
    the first update; the instruments measure lambda_max(P^-1 H) with it (harness/instruments.py)."""

    init: Callable[[Params], Any]
    update: Callable[[Params, Any, Params], tuple[Params, Any]]
    hyperparams: dict[str, Tensor] | None = None
    preconditioner: Callable[[Any], Params | None] | None = None


def per_member(value: Any, batch: int, dtype: torch.dtype, key: str, width: int | None = None) -> Tensor:
    """Turn a scalar, a list of per-member values or a tensor into a ``[B]`` (or ``[B, width]``) tensor."""
    t = torch.as_tensor(value, dtype=dtype)
    if width is None:
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ConfigError(f"{key}={value!r} has shape {tuple(t.shape)}; allowed: a number or {batch} numbers")
    else:
        if t.dim() == 1:
            t = t.expand(batch, width)
        if t.shape != (batch, width):
            raise ConfigError(f"{key}={value!r} has shape {tuple(t.shape)}; allowed: {width} numbers per member")
    return t.clone()


def check(key: str, values: Tensor, ok: Tensor, allowed: str) -> None:
    """Raise a one-line :class:`ConfigError` naming the first member whose value is not allowed."""
    bad = ~ok
    if bool(bad.any()):
        value = values[bad].flatten()[0].item()
        raise ConfigError(f"{key}={_fmt(value)} is out of range; allowed: {allowed}")


def _fmt(x: float) -> str:
    return repr(x) if math.isfinite(x) else str(x)


def bcast(h: Tensor, p: Tensor) -> Tensor:
    """View a ``[B]`` hyperparameter so it broadcasts against a ``[B, ...]`` parameter."""
    return h.view(-1, *([1] * (p.dim() - 1)))


class Broadcast:
    """Per-member hyperparameters viewed for each parameter rank, computed once (hot loops
    then avoid re-viewing, and Python-level tensor operators such as ``1 - t``)."""

    def __init__(self, **hp: Tensor):
        self.hp = hp
        self.cache: dict[int, dict[str, Tensor]] = {}

    def __call__(self, p: Tensor) -> dict[str, Tensor]:
        d = self.cache.get(p.dim())
        if d is None:
            d = self.cache[p.dim()] = {k: bcast(v, p) for k, v in self.hp.items()}
        return d


def batch_of(params: Sequence[Tensor]) -> int:
    return params[0].shape[0]
