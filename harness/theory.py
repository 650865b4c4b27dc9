"""Theory on the quadratic, in one place: which runs are on a quadratic with known constants, and
each configuration's stability edge, read from its own hyperparameters.

On f(x) = 1/2 (x - x*)^T A (x - x*) with eigenvalues in [mu, L] (weight decay wd adds wd to each),
with SGD-family updates as torch.optim.SGD makes them (dampening d):

- GD (momentum 0): stable for lr < 2/L;
- heavy ball (momentum b): lr (1 - d) < 2(1 + b)/L;
- Nesterov (momentum b, d = 0): lr < 2(1 + b)/((1 + 2b) L).

Other optimizers have no edge here (Adam's depends on its state, not on lr alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness import analysis
from harness.analysis import parse_param

SGD_TARGETS = ("optimizers.sgd.sgd", "torch.optim.SGD", "torch.optim.sgd.SGD")


@dataclass(frozen=True)
class Edge:
    lr: float  # the largest stable lr (exclusive)
    formula: str  # how it was computed, with the values used: "2(1+b)/L, b=0.9"
    kind: str = ""  # "gd" (plain GD: the rate table applies), "heavy ball" or "nesterov"


def quadratic_constants(g: pd.DataFrame) -> tuple[float, float] | None:
    """(mu, L) when every run of ``g`` is on one quadratic, else None."""
    cols = {"params.problem.mu", "params.problem.L"}
    if g.empty or set(g["problem_name"]) != {"quadratic"} or not cols <= set(g.columns):
        return None
    if g["params.problem.mu"].nunique() != 1 or g["params.problem.L"].nunique() != 1:
        return None
    return float(g["params.problem.mu"].iloc[0]), float(g["params.problem.L"].iloc[0])


def _setting(g: pd.DataFrame, key: str, default):
    """A configuration's one value of ``optimizer.<key>`` (its default where not logged); None if it varies."""
    col = f"params.optimizer.{key}"
    if col not in g:
        return default
    values = {str(v) for v in g[col].dropna()}
    if len(values) > 1:
        return None
    return parse_param(values.pop()) if values else default


def stability_edge(g: pd.DataFrame, L: float) -> Edge | None:
    """The stability edge of the one configuration whose runs are ``g``, on a quadratic with top
    eigenvalue ``L``; None where the theory above does not cover it."""
    target = _setting(g, "_target_", None)
    if target not in SGD_TARGETS:
        return None
    b, d, wd, nesterov = (
        _setting(g, k, v)
        for k, v in (("momentum", 0.0), ("dampening", 0.0), ("weight_decay", 0.0), ("nesterov", False))
    )
    if not all(isinstance(v, (int, float)) for v in (b, d, wd)) or not isinstance(nesterov, bool) or b < 0 or d >= 1:
        return None
    top = L + wd
    where = f"L={top:g}" if wd == 0 else f"L+wd={top:g}"
    if b == 0:
        return (
            Edge(2 / ((1 - d) * top), f"2/L, {where}", "gd")
            if d == 0
            else Edge(2 / ((1 - d) * top), f"2/((1-d)L), d={d:g}, {where}", "heavy ball")
        )
    if nesterov:
        return (
            Edge(2 * (1 + b) / ((1 + 2 * b) * top), f"2(1+b)/((1+2b)L), b={b:g}, {where}", "nesterov")
            if d == 0
            else None
        )
    return Edge(
        2 * (1 + b) / ((1 - d) * top),
        f"2(1+b)/L, b={b:g}, {where}" if d == 0 else f"2(1+b)/((1-d)L), b={b:g}, d={d:g}, {where}",
    )


def edges(df: pd.DataFrame, prob: str) -> dict[str, Edge]:
    """{configuration: its stability edge} on problem ``prob`` where it is a quadratic; configurations
    without a known edge are left out."""
    g = df[df.problem == prob]
    consts = quadratic_constants(g)
    if consts is None:
        return {}
    out = {}
    for cfg in analysis.configs(g):
        e = stability_edge(g[g.config == cfg], consts[1])
        if e is not None and math.isfinite(e.lr):
            out[cfg] = e
    return out


def divergence_by_edge(g: pd.DataFrame, edge: Edge) -> tuple[float, float, str, str]:
    """One configuration's runs against its edge: the largest lr run below it, the smallest at or above
    it, and the runs diverged (k/n) at lrs below and at lrs at or above it."""
    below, above = g[g["lr"] < edge.lr], g[g["lr"] >= edge.lr]
    share = lambda s: f"{int(s['diverged'].sum())}/{len(s)}" if len(s) else "–"  # noqa: E731
    return (
        float(below["lr"].max()) if len(below) else math.nan,
        float(above["lr"].min()) if len(above) else math.nan,
        share(below),
        share(above),
    )
