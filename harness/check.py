"""Checks for your own optimizers and problems, to call in your tests.

A batched rule is only right if every member of a batch evolves exactly as it would alone: the
harness runs grids as batches, and a rule that lets members see each other (a norm or a mean over
the batch, a shared state) gives numbers that depend on who else is in the batch. These checks run
the batch and each member alone, and raise ``AssertionError`` with the first difference.

    from harness.check import batched_equals_alone, problem_batched_equals_alone
    batched_equals_alone(my_rule, [{"lr": 0.01}, {"lr": 0.1, "beta": 0.5}])
    problem_batched_equals_alone(MyProblem, seeds=[0, 1, 2])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from optimizers.base import Optimizer


def _first_difference(a: torch.Tensor, b: torch.Tensor, rtol: float) -> float | None:
    """The largest relative difference if above ``rtol`` (NaN and inf must match exactly), else None.
    An entry below 1e-4 of the largest finite one is compared at that scale: a gradient entry that is
    zero but for rounding (a bias before batch norm) is ~1e-17 in one order of summation and 0 in another."""
    same_nonfinite = (~torch.isfinite(a) | ~torch.isfinite(b)) & ((a == b) | (torch.isnan(a) & torch.isnan(b)))
    finite = b[torch.isfinite(b)].abs()
    floor = max(float(finite.max()) * 1e-4 if finite.numel() else 0.0, torch.finfo(b.dtype).tiny)
    diff = ((a - b).abs() / b.abs().clamp_min(floor)).where(~same_nonfinite, torch.zeros_like(a))
    worst = float(torch.nan_to_num(diff, nan=float("inf")).max())
    return worst if worst > rtol else None


def batched_equals_alone(
    factory: Callable[..., Optimizer],
    members: Sequence[dict],
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    x0: torch.Tensor | None = None,
    steps: int = 50,
    dtype: torch.dtype = torch.float64,
    rtol: float = 1e-12,
) -> None:
    """Run ``factory`` on a batch of ``members`` (each a dict of its hyperparameters, lr included) and
    each member alone for ``steps`` updates; raise ``AssertionError`` naming the first member, step
    and coordinate whose parameters differ by more than ``rtol`` (relative).

    ``loss`` maps parameters ``[B, d]`` to losses ``[B]`` (default: 2-D Rosenbrock), ``x0`` gives the
    start ``[B, d]`` (default: one distinct seeded point per member). The factory is called as the
    harness calls it: every hyperparameter as a list of per-member values, plus ``batch`` and ``dtype``.
    """
    if not members:
        raise ValueError("members: give at least one member's hyperparameters")
    from problems.rosenbrock import rosenbrock

    loss = loss or (lambda x: rosenbrock(x))
    B = len(members)
    if x0 is None:
        gen = torch.Generator().manual_seed(0)
        x0 = (torch.rand(B, 2, generator=gen, dtype=torch.float64) * 4 - 2).to(dtype)
    keys = sorted({k for m in members for k in m})
    missing = [(i, k) for i, m in enumerate(members) for k in keys if k not in m]
    if missing:
        i, k = missing[0]
        raise ValueError(f"members[{i}] has no {k!r}: give every member the same keys")

    def run(opt: Optimizer, x: torch.Tensor) -> list[torch.Tensor]:
        params, state, out = [x.clone()], None, []
        state = opt.init(params)
        for _ in range(steps):
            with torch.enable_grad():
                p = params[0].detach().requires_grad_(True)
                (g,) = torch.autograd.grad(loss(p).sum(), p)
            params, state = opt.update([g], state, params)
            out.append(params[0].detach().clone())
        return out

    together = run(factory(**{k: [m[k] for m in members] for k in keys}, batch=B, dtype=dtype), x0)
    for i, m in enumerate(members):
        alone = run(factory(**{k: [m[k]] for k in keys}, batch=1, dtype=dtype), x0[i : i + 1])
        for t in range(steps):
            worst = _first_difference(together[t][i], alone[t][0], rtol)
            if worst is not None:
                raise AssertionError(
                    f"{getattr(factory, '__name__', factory)}: member {i} {m} differs from the same member run alone at update "
                    f"{t + 1}: {together[t][i].tolist()} batched vs {alone[t][0].tolist()} alone (relative difference "
                    f"{worst:.3g} > {rtol:g}); members of a batch must not see each other (no norm, mean or state across members)"
                )


def problem_batched_equals_alone(problem_cls: type, seeds: Sequence[int] = (0, 1, 2), dtype: torch.dtype = torch.float64,
                                 rtol: float = 1e-12, **kwargs) -> None:
    """Build ``problem_cls(**kwargs, seeds=seeds, dtype=dtype)`` and each seed alone; raise
    ``AssertionError`` if the start points, the losses or the gradients of a member differ, or if a
    listed minimum is not stationary or does not have its listed value, or f* is not the lowest."""
    batch = problem_cls(**kwargs, seeds=list(seeds), dtype=dtype)
    x = batch.init()
    f, g = batch.loss_and_grad(x)
    for i, s in enumerate(seeds):
        one = problem_cls(**kwargs, seeds=[s], dtype=dtype)
        x1 = one.init()
        f1, g1 = one.loss_and_grad(x1)
        for what, a, b in (("start point", x[i], x1[0]), ("loss", f[i : i + 1], f1), ("gradient", g[i], g1[0])):
            worst = _first_difference(a, b, rtol)
            if worst is not None:
                raise AssertionError(f"{problem_cls.__name__}: seed {s}'s {what} differs between the batch and the seed alone "
                                     f"({a.tolist()} vs {b.tolist()}, relative difference {worst:.3g} > {rtol:g})")
    for m in batch.minima:
        fm, gm = batch.loss_and_grad(torch.tensor([m.x] * len(seeds), dtype=dtype))
        if float(gm.abs().max()) > 1e-8 or abs(float(fm[0]) - m.f) > 1e-12 * max(1.0, abs(m.f)):
            raise AssertionError(f"{problem_cls.__name__}: listed minimum {m.name} at {list(m.x)} has f = {float(fm[0])!r} "
                                 f"(listed {m.f!r}) and gradient {gm[0].tolist()}; a minimum must be stationary with its listed value")
        if batch.f_star is not None and m.f < batch.f_star - 1e-12 * max(1.0, abs(batch.f_star)):
            raise AssertionError(f"{problem_cls.__name__}: minimum {m.name} has f = {m.f!r} below f* = {batch.f_star!r}")
