"""Theory on the quadratic, in one place: which runs are on a quadratic with known constants, and
each configuration's stability edge, read from its own hyperparameters.

On f(x) = 1/2 (x - x*)^T A (x - x*) with eigenvalues in [mu, L] (weight decay wd adds wd to each),
with SGD-family updates as torch.optim.SGD makes them (dampening d):

- GD (momentum 0): stable for lr < 2/L;
- heavy ball (momentum b): lr (1 - d) < 2(1 + b)/L;
- Nesterov (momentum b, d = 0): lr < 2(1 + b)/((1 + 2b) L).

Other optimizers have no edge here (Adam's depends on its state, not on lr alone).

The same constants bound the sharpness a run can sustain (Cohen et al., 2021 and 2022), which the
instruments (harness/instruments.py) compare each member's measured sharpness against: GD is stable
while lambda_max(H) < 2/lr, heavy ball while it is < 2(1 + b)/lr, Nesterov while < 2(1 + b)/((1 + 2b) lr)
(minus weight decay, which adds to the Hessian). For the adaptive optimizers the bound holds for the
preconditioned sharpness lambda_max(P^-1 H): (2 + 2 b1)/((1 - b1) lr) for Adam and AdamW (38/lr at
b1 = 0.9), (2 + 2b)/lr for RMSprop with momentum b, 2/lr for AdaGrad. :func:`sharpness_threshold`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas and the analysis module are the report's: a sweep computing thresholds imports neither
    import pandas as pd

SGD_TARGETS = ("optimizers.sgd.sgd", "torch.optim.SGD", "torch.optim.sgd.SGD")
ADAM_TARGETS = ("optimizers.adam.adam", "optimizers.adam.adamw", "torch.optim.Adam", "torch.optim.AdamW")
RMSPROP_TARGETS = ("optimizers.rmsprop.rmsprop", "torch.optim.RMSprop")
ADAGRAD_TARGETS = ("optimizers.adagrad.adagrad", "torch.optim.Adagrad")


@dataclass(frozen=True)
class Edge:
    lr: float  # the largest stable lr (exclusive)
    formula: str  # how it was computed, with the values used: "2(1+b)/L, b=0.9"
    kind: str = ""  # "gd" (plain GD: the rate table applies), "heavy ball" or "nesterov"


def sgd_constant(b: float, d: float, nesterov: bool) -> tuple[float, str, str] | None:
    """(c, formula, kind) such that an SGD-family update with momentum b and dampening d is stable on a
    quadratic of top eigenvalue L (weight decay included) while lr < c / L, that is while L < c / lr; the
    formula writes c / {x} (x: L or lr). None where no edge is known."""
    if b == 0:
        return (2.0, "2/{x}", "gd") if d == 0 else (2 / (1 - d), "2/((1-d){x})", "heavy ball")
    if nesterov:
        return (2 * (1 + b) / (1 + 2 * b), "2(1+b)/((1+2b){x})", "nesterov") if d == 0 else None
    return 2 * (1 + b) / (1 - d), "2(1+b)/{x}" if d == 0 else "2(1+b)/((1-d){x})", "heavy ball"


@dataclass(frozen=True)
class Threshold:
    """The largest sharpness a member's update is stable at: ``constant / lr - wd`` (``at``)."""

    constant: float
    formula: str  # "2/lr", "2(1+b)/lr, b=0.9", ...
    preconditioned: bool  # the bound is on lambda_max(P^-1 H) (adaptive optimizers), not on lambda_max(H)
    wd: float = 0.0  # weight decay that adds to the Hessian (SGD's coupled weight decay)

    def at(self, lr: float) -> float:
        return self.constant / lr - self.wd


def sharpness_threshold(opt: dict) -> Threshold | None:
    """A member's threshold from its optimizer settings (the resolved ``optimizer`` section); None for
    optimizers without one here (L-BFGS, NAdam, your own)."""
    target, get = opt.get("_target_"), lambda k, v: opt.get(k, v) if opt.get(k) is not None else v  # noqa: E731
    if target in SGD_TARGETS:
        b, d, wd, nesterov = get("momentum", 0.0), get("dampening", 0.0), get("weight_decay", 0.0), get("nesterov", False)
        sc = sgd_constant(b, d, bool(nesterov)) if 0 <= b and d < 1 else None
        if sc is None:
            return None
        c, formula, _ = sc
        settings = "".join(f", {k}={v:g}" for k, v in (("b", b), ("d", d)) if v)
        return Threshold(c, formula.format(x="lr") + settings + (f", less wd={wd:g}" if wd else ""), False, float(wd))
    if target in ADAM_TARGETS:
        b1 = float(get("betas", (0.9, 0.999))[0])
        return Threshold((2 + 2 * b1) / (1 - b1), f"(2+2b1)/((1-b1)lr), b1={b1:g}", True)
    if target in RMSPROP_TARGETS:
        b = float(get("momentum", 0.0))
        return Threshold(2 + 2 * b, "2/lr" if b == 0 else f"(2+2b)/lr, b={b:g}", True)
    if target in ADAGRAD_TARGETS:
        return Threshold(2.0, "2/lr", True)
    return None


def quadratic_constants(g: pd.DataFrame) -> tuple[float, float] | None:
    """(mu, L) when every run of ``g`` is on one quadratic, else None."""
    cols = {"params.problem.mu", "params.problem.L"}
    if g.empty or set(g["problem_name"].unique()) != {"quadratic"} or not cols <= set(g.columns):
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
    from harness.analysis import parse_param

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
    from harness import analysis

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
