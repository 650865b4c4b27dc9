"""Two-hyperparameter landscapes and batch-size scaling, computed from the analysed runs.

- :func:`landscapes`: where an optimizer ran with one other numeric setting swept beside lr (momentum,
  batch_size, weight_decay, a beta, ...) on a problem, the median score over every seed of each
  (lr, value) cell. A full product of values is a grid; anything else (sampled points) is a scatter.
- :func:`batch_scaling`: where batch_size was swept, steps and examples to the target at each batch
  size's best lr (reporting seeds), and McCandlish et al.'s (2018) fit
  S = S_min (1 + B_crit / B), i.e. (S/S_min - 1)(E/E_min - 1) = 1 with E = B S, B_crit = E_min / S_min.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import analysis
from harness.protocol import cost_per_step
from optimizers import display


@dataclass
class Landscape:
    optimizer: str  # the panel: an optimizer and whatever else its configurations share
    key: str  # the second swept setting, as a params column (params.optimizer.momentum)
    cells: pd.DataFrame  # lr, value, median (score over all seeds, +inf if diverged), runs, diverged
    grid: bool  # a full product of lrs and values (else sampled points)

    @property
    def name(self) -> str:
        return analysis._short(self.key)

    def best(self) -> pd.Series | None:
        """The cell with the lowest median score (the outlined cell); None if every cell diverged."""
        ok = self.cells[np.isfinite(self.cells["median"])]
        return None if ok.empty else ok.loc[ok["median"].idxmin()]


def _numeric(values: pd.Series) -> pd.Series | None:
    """The values as floats when every one is a number, else None (null batch_size: the full batch)."""
    distinct = {v: analysis.parse_param(v) for v in values.unique()}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct.values()):
        return None
    return values.map(distinct).astype(float)


def varying(g: pd.DataFrame) -> list[str]:
    """Configuration settings other than lr and seed that vary among ``g``'s runs."""
    cols = [
        c
        for c in g.columns
        if c.startswith("params.")
        and c not in analysis.POOLED
        and not c.startswith(("params.problem.", "params.schedule"))
    ]
    return [c for c in cols if g[c].drop_duplicates().map(analysis.canonical).nunique() > 1]  # canonical: once per distinct value


def second_keys(g: pd.DataFrame) -> list[str]:
    """The settings of :func:`varying` that are numeric in every run."""
    return [c for c in varying(g) if _numeric(g[c]) is not None]


def landscapes(df: pd.DataFrame, prob: str) -> list[Landscape]:
    """One landscape per optimizer on ``prob`` whose configurations differ in exactly one numeric setting."""
    out = []
    g = df[df.problem == prob]
    for opt, go in g.groupby("optimizer", sort=False):
        keys = second_keys(go)
        if len(keys) != 1 or len(varying(go)) != 1:
            continue
        d = go.assign(value=_numeric(go[keys[0]]))
        c = (
            d.groupby(["lr", "value"])
            .agg(median=("score", "median"), runs=("score", "size"), diverged=("diverged", "sum"))
            .reset_index()
        )
        if c["lr"].nunique() < 2 or c["value"].nunique() < 2:
            continue
        grid = len(c) == c["lr"].nunique() * c["value"].nunique()
        out.append(Landscape(opt, keys[0], c, grid))
    return sorted(out, key=lambda s: display.order(s.optimizer))


@dataclass
class Scaling:
    optimizer: str
    points: (
        pd.DataFrame
    )  # batch (examples per step), config, best_lr, steps, examples (medians to target, reporting seeds)
    s_min: float  # NaN where the fit is not possible
    e_min: float

    @property
    def b_crit(self) -> float:
        return self.e_min / self.s_min if self.s_min > 0 else math.nan


def fit(batch: np.ndarray, steps: np.ndarray) -> tuple[float, float]:
    """(S_min, E_min) of S = S_min + E_min / B by least squares over points that reached the target;
    NaNs with fewer than 3 such points, or where the fit has no positive S_min and E_min."""
    ok = np.isfinite(steps) & np.isfinite(batch)
    if ok.sum() < 3:
        return math.nan, math.nan
    e_min, s_min = np.polyfit(1.0 / batch[ok], steps[ok], 1)
    return (float(s_min), float(e_min)) if s_min > 0 and e_min > 0 else (math.nan, math.nan)


def batch_scaling(a: analysis.Analysis, prob: str) -> list[Scaling]:
    """Per optimizer on ``prob`` with several batch sizes: each batch size's best lr and its costs to target."""
    if a.protocol.unit.get(prob) != "examples":  # the protocol counts examples exactly when batch sizes differ
        return []
    out = []
    b = a.bests[a.bests.problem == prob]
    for opt, bo in b.groupby("optimizer", sort=False):
        if varying(a.df[(a.df.problem == prob) & (a.df.optimizer == opt)]) != ["params.batch_size"]:
            continue
        rows = []
        for r in bo.itertuples():
            at = analysis.at_best(a.df, prob, r.config, r.best_lr)
            if at.empty:
                continue
            steps = analysis.steps_to(at, a.target)
            rows.append(
                dict(
                    config=r.config,
                    best_lr=r.best_lr,
                    batch=float(cost_per_step(at, "examples").median()),
                    steps=analysis.median(steps),
                    examples=analysis.median(analysis.cost(at, a.target, "examples")),
                    seeds=len(at),
                )
            )
        p = pd.DataFrame(rows)
        if len(p) < 2 or p["batch"].nunique() < 2:
            continue
        p = p.sort_values("batch").reset_index(drop=True)
        s_min, e_min = fit(p["batch"].to_numpy(float), p["steps"].to_numpy(float))
        out.append(Scaling(opt, p, s_min, e_min))
    return out
