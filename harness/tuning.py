"""How much tuning a configuration needs: the expected best after k trials, the AlgoPerf number, and
the one-shot default beside the tuned result.

A *trial* is one hyperparameter point of a configuration on a problem (one lr, with all its seeds):
a grid point or a sampled point alike. Trials are put in the order the best-lr rule would choose them
on the tuning seeds (harness/analysis.py, rule 4), and each is *reported* by its median final value on
the reporting seeds, so choosing and reporting never share seeds where the protocol split them.

- **Expected best of k** (Dodge et al., 2019, "Show your work"): draw k of the N trials without
  replacement, choose the first in tuning order, report it. With trials in tuning order 1..N, trial i
  is the one chosen with probability C(N - i, k - 1) / C(N, k), so the expectation is exact:
  sum_i r(i) C(N - i, k - 1) / C(N, k). Where f* is known the expectation is of log10 of the final
  value (floored at analysis.SOLVED, below which results count as equal), i.e. a geometric mean, as
  these values span many decades. A diverged trial reports +inf: the expectation is +inf while some
  k-subset could hold only such trials.
- **Band**: the 2.5 % and 97.5 % points of the same curve over bootstrap resamples of the trials
  (BOOTSTRAP resamples, seeded).
- **AlgoPerf** (Dahl et al., 2023): studies of 5 trials each, each study scored by its best trial
  (chosen as above), the median over studies: here the exact median of that best-of-5 distribution.
- **One shot** (Schmidt et al., 2021): the trial at the optimizer's default lr, if it was run.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

from harness import analysis

BOOTSTRAP = 1000  # resamples of the trials for the band
STUDY = 5  # trials per AlgoPerf study


@lru_cache(maxsize=64)
def default_lr(optimizer: str) -> float | None:
    """The lr a built-in optimizer runs with when none is given (its conf/optimizer/<name>.yaml)."""
    from omegaconf import OmegaConf

    from harness import CONF

    path = CONF / "optimizer" / f"{optimizer}.yaml"
    lr = OmegaConf.load(path).get("lr") if path.is_file() else None
    return float(lr) if isinstance(lr, (int, float)) else None


@lru_cache(maxsize=256)
def choice_weights(n: int) -> np.ndarray:
    """[n, n]: entry (i, k-1) is the probability that trial i (0-based tuning order) is the one chosen
    from a uniformly random k-subset of the n trials: C(n - 1 - i, k - 1) / C(n, k)."""
    w = np.zeros((n, n))
    for k in range(1, n + 1):
        total = math.comb(n, k)
        for i in range(n - k + 1):
            w[i, k - 1] = math.comb(n - 1 - i, k - 1) / total
    return w


def expected_best(reported: np.ndarray) -> np.ndarray:
    """E[reported value of the chosen trial] for k = 1 .. N, ``reported`` in tuning order (best first);
    +inf where an infinite value has positive probability. ``reported`` may be [B, N] (one curve per row)."""
    r = np.asarray(reported, dtype=float)
    w = choice_weights(r.shape[-1])
    inf = np.isinf(r)
    out = np.where(inf, 0.0, r) @ w
    return np.where((inf.astype(float) @ w) > 0, np.inf, out)


def median_best_of(reported: np.ndarray, k: int) -> float:
    """The median (lower) of the reported value of the chosen trial over random k-subsets."""
    r = np.asarray(reported, dtype=float)
    if len(r) < k:
        return math.nan
    p = choice_weights(len(r))[:, k - 1]
    order = np.argsort(r, kind="stable")
    cum = np.cumsum(p[order])
    return float(r[order][np.searchsorted(cum, 0.5 - 1e-12)])


def band(
    reported: np.ndarray, level: float = 0.95, resamples: int = BOOTSTRAP, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap band of the expected-best curve: resample the trials with replacement,
    keep their tuning order, recompute the curve."""
    r = np.asarray(reported, dtype=float)
    idx = np.sort(np.random.default_rng(seed).integers(0, len(r), size=(resamples, len(r))), axis=1)
    curves = expected_best(r[idx])
    a = (1 - level) / 2
    return np.quantile(curves, a, axis=0, method="lower"), np.quantile(curves, 1 - a, axis=0, method="higher")


def trials(df: pd.DataFrame, prob: str, cfg: str, target: float, unit: str) -> pd.DataFrame:
    """One row per trial (lr) of a configuration, in tuning order: lr, ``reported`` (median score on the
    reporting seeds, +inf if diverged), ``reported_seeds``."""
    g = df[(df.problem == prob) & (df.config == cfg)]
    t = analysis.lr_table(g[g["tuning"]], target, unit)
    minima = analysis.has_minima(g)
    key = lambda r: (r["diverged"] > 0, *analysis.rank_key(r, minima))  # noqa: E731 - rule 4, a-e
    t = pd.DataFrame(sorted((r for _, r in t.iterrows()), key=key)).reset_index(drop=True)
    rep = g[g["reporting"]].groupby("lr")["score"]
    t["reported"] = t["lr"].map(rep.median())
    t["reported_seeds"] = t["lr"].map(rep.size()).fillna(0).astype(int)
    return t[["lr", "reported", "reported_seeds"]]


def scale(values: np.ndarray, fstar: bool) -> np.ndarray:
    """The unit expectations are taken in: log10 of the final value (floored at SOLVED) where f* is known."""
    v = np.asarray(values, dtype=float)
    if not fstar:
        return v
    with np.errstate(divide="ignore"):
        return np.where(np.isinf(v), np.inf, np.log10(np.maximum(v, analysis.SOLVED)))


def unscale(values, fstar: bool):
    return np.power(10.0, values) if fstar else values


def budget(a: analysis.Analysis) -> pd.DataFrame:
    """One row per (problem, configuration): its trials, the expected-best curve and band (in the final
    value's unit), the AlgoPerf number, and the one-shot default."""
    rows = []
    for r in a.bests.itertuples():
        t = trials(a.df, r.problem, r.config, a.target, a.protocol.unit[r.problem])
        s = scale(t["reported"].to_numpy(), r.fstar)
        lo, hi = band(s)
        default = default_lr(r.optimizer)
        at_default = t[np.isclose(t["lr"], default, rtol=1e-9)] if default is not None else t.iloc[:0]
        rows.append(
            dict(
                problem=r.problem,
                config=r.config,
                fstar=r.fstar,
                trials=len(t),
                curve=unscale(expected_best(s), r.fstar),
                lo=unscale(lo, r.fstar),
                hi=unscale(hi, r.fstar),
                algoperf=float(unscale(median_best_of(s, STUDY), r.fstar)),
                default_lr=default,
                default=float(at_default["reported"].iloc[0]) if len(at_default) else math.nan,
                tuned=float(t["reported"].iloc[0]) if len(t) else math.nan,
            )
        )
    return pd.DataFrame(rows)
