"""Paired comparisons: on each problem, the leader against every other configuration, seed by seed.

Seeds share start points (and data orders) across configurations, so configurations are compared on
the reporting seeds both ran, each at its own best lr. On each seed the leader *wins*, *loses* or ties
by the first of these that differs:

1. on problems with listed minima, reaching a global minimum;
2. where f* is known and the leader reached the target on most seeds, the cost to reach it (in the
   problem's unit; never reached = +inf);
3. the selection score (harness/protocol.py), equal when both are <= SOLVED or agree to DIGITS digits.

A two-sided sign test on the non-tied seeds gives a p-value; Holm's step-down correction runs over
every comparison the report makes, so "better" holds at family-wise level ``ALPHA``. The effect size
is P(leader better) on a seed where they differ, with its exact (Clopper-Pearson) interval.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness import inference
from harness.analysis import LEVEL, at_best, bucket, cost
from harness.protocol import Protocol

ALPHA = 0.05
COLUMNS = ["problem", "leader", "other", "n", "wins", "losses", "ties", "p", "p_holm", "win_p", "win_lo", "win_hi", "basis", "better"]


def compare(df: pd.DataFrame, bests: pd.DataFrame, target: float, proto: Protocol) -> pd.DataFrame:
    """One row per (problem, leader, other configuration), with Holm-adjusted p-values over all rows."""
    rows = []
    for prob, s in bests.groupby("problem", sort=True):
        s = s.sort_values("rank")
        lead = s.iloc[0]
        use_cost = bool(lead["fstar"]) and lead["reached"] * 2 > lead["seeds"]
        basis = _basis(bool(lead["minima"]), use_cost, target, proto.unit[prob], proto.select[prob])
        a = _keys(df, lead, target, proto.unit[prob], use_cost)
        for _, other in s.iloc[1:].iterrows():
            b = _keys(df, other, target, proto.unit[prob], use_cost)
            seeds = sorted(set(a) & set(b))
            out = np.array([_outcome(a[k], b[k]) for k in seeds], dtype=int)
            t = inference.sign_test_outcomes(out)
            p, lo, hi = inference.win_probability(t["wins"], t["losses"], LEVEL)
            rows.append([prob, lead["config"], other["config"], len(seeds), t["wins"], t["losses"], t["ties"], t["p_value"],
                         math.nan, p, lo, hi, basis, False])
    out = pd.DataFrame(rows, columns=COLUMNS)
    if len(out):
        out["p_holm"] = inference.holm(out["p"].to_numpy(float))
        out["better"] = out["p_holm"] < ALPHA
    return out


def _keys(df: pd.DataFrame, row: pd.Series, target: float, unit: str, use_cost: bool) -> dict[int, tuple]:
    """Per reporting seed: the comparison key of that configuration's run at its best lr (lower is better)."""
    at = at_best(df, row["problem"], row["config"], row["best_lr"])
    costs = cost(at, target, unit).to_numpy(float) if use_cost else np.zeros(len(at))
    glob = at["global"].fillna(0).to_numpy(float) > 0 if row["minima"] else np.zeros(len(at), bool)
    return {int(seed): (-float(g), c, bucket(v)) for seed, g, c, v in zip(at["seed"], glob, costs, at["select_score"])}


def _outcome(a: tuple, b: tuple) -> int:
    """+1 when the leader's key is lower, -1 when higher, 0 when equal."""
    for x, y in zip(a, b):
        if x != y and not (math.isinf(x) and math.isinf(y) and x == y):
            return 1 if x < y else -1
    return 0


def _basis(minima: bool, use_cost: bool, target: float, unit: str, select: str) -> str:
    from harness.metrics import lower_is_better
    from harness.protocol import UNITS, selectable

    parts = ["reaching a global minimum"] if minima else []
    if use_cost:
        parts.append(f"fewer {UNITS[unit]} to f - f* <= {target:.0e}")
    parts.append(f"a {'lower' if lower_is_better(select) else 'higher'} {selectable()[select].split(' (')[0]}")
    return ", then ".join(parts)
