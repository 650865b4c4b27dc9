"""Why an lr works: each (problem, configuration, lr) against its stability threshold, and the sharpness
of the minima runs ended in. Pure pandas on the runs :func:`harness.analysis.prepare` returns and the
curve points the store reads back; the report draws and writes what this computes.

1. **Threshold.** A member's largest stable sharpness from its optimizer and lr (harness/theory.py
   ``sharpness_threshold``: 2/lr for GD, ...), logged as ``stability_threshold``; for the adaptive
   optimizers it bounds the *preconditioned* sharpness lambda_max(P^-1 H).
2. **Edge ratio.** A run's median over the last third of its measurements of (preconditioned) sharpness
   / threshold, logged as ``edge_ratio`` (harness/instruments.py). Cohen et al. (2021): at the edge of
   stability it rises to 1 and hovers there.
3. **Class** of an lr, over every seed it ran (nothing is selected here, so no seeds are held out):
   ``diverged`` when more than half of its runs diverged; ``at the edge`` when the median edge ratio of
   its runs that did not diverge is >= ``EDGE`` (within 20% of 1, or above it), or when some of its runs
   diverged; ``stable`` otherwise.
4. **Minima.** On landscapes with several listed minima: per configuration, the median final sharpness
   lambda_max(H) of the runs that ended in each minimum (tag ``basin``), over every lr and seed that did
   not diverge. The sharpness of a minimum is the landscape's; which minima a configuration ends in is
   its own.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness import analysis, inference, theory

EDGE = 0.8  # an lr is "at the edge" from this median ratio of sharpness to threshold on (Cohen et al.'s hover at 1, within 20%)
CLASSES = ("stable", "at the edge", "diverged")


def measured(g: pd.DataFrame) -> bool:
    """Whether these runs measured sharpness (instruments=curvature or full)."""
    cols = ("metrics.final_sharpness", "metrics.final_preconditioned_sharpness")
    return any(c in g and g[c].notna().any() for c in cols)


def threshold(g: pd.DataFrame) -> theory.Threshold | None:
    """The threshold rule of the one configuration whose runs are ``g``, from its logged optimizer settings."""
    row = g.iloc[0]
    opt = {k[len("params.optimizer.") :]: analysis.parse_param(v) for k, v in row.items() if k.startswith("params.optimizer.") and isinstance(v, str)}
    try:
        return theory.sharpness_threshold(opt)
    except (TypeError, ValueError, IndexError):  # a setting logged in a shape the rule does not read
        return None


def curve(g: pd.DataFrame) -> str:
    """The sharpness a configuration is compared on: the preconditioned one where its threshold is."""
    t = threshold(g)
    pre = t is not None and t.preconditioned and "metrics.final_preconditioned_sharpness" in g and g["metrics.final_preconditioned_sharpness"].notna().any()
    return "preconditioned_sharpness" if pre else "sharpness"


def classify(ratio: float, diverged: int, runs: int) -> str:
    """Rule 3 of the module's docstring."""
    if 2 * diverged > runs:
        return "diverged"
    return "at the edge" if diverged or (not math.isnan(ratio) and ratio >= EDGE) else "stable"


def table(df: pd.DataFrame, prob: str) -> pd.DataFrame:
    """One row per (configuration, lr) of ``prob`` with a threshold: config, lr, curve, formula, threshold,
    ratio (median edge ratio of the runs that did not diverge) with its interval (lo, hi, level), runs,
    diverged, cls. Empty where no run measured sharpness."""
    g = df[df.problem == prob]
    cols = ["config", "lr", "curve", "formula", "threshold", "ratio", "lo", "hi", "level", "runs", "diverged", "cls"]
    if not measured(g) or "metrics.stability_threshold" not in g:
        return pd.DataFrame(columns=cols)
    rows = []
    for cfg in analysis.configs(g):
        gc = g[g.config == cfg]
        t = threshold(gc)
        if t is None or gc["metrics.stability_threshold"].isna().all():
            continue
        for lr, s in gc.groupby("lr"):
            rows.append(_row(cfg, lr, s, t, curve(gc)))
    return pd.DataFrame(rows, columns=cols)


def _row(cfg: str, lr: float, s: pd.DataFrame, t: theory.Threshold, key: str) -> dict:
    ok = s[~s["diverged"]]
    r = ok["metrics.edge_ratio"].dropna().to_numpy(float) if "metrics.edge_ratio" in ok else np.array([])
    lo, hi, level = inference.median_interval(r, analysis.LEVEL) if r.size > 1 else (math.nan,) * 3
    ratio, k = analysis.median(r), int(s["diverged"].sum())
    return dict(config=cfg, lr=float(lr), curve=key, formula=t.formula, threshold=float(s["metrics.stability_threshold"].median()),
                ratio=ratio, lo=lo, hi=hi, level=level, runs=len(s), diverged=k, cls=classify(ratio, k, len(s)))


def at_edge(t: pd.DataFrame) -> pd.DataFrame:
    """The rows whose runs (most did not diverge) sat at the edge by their measured ratio (>= ``EDGE``)."""
    return t[(t["cls"] != "diverged") & (t["ratio"] >= EDGE)]


def minima(df: pd.DataFrame, prob: str) -> pd.DataFrame:
    """Rule 4: one row per (configuration, minimum it ended in): config, basin, kind (global / local),
    runs, sharpness (median final lambda_max(H)), rank ("flattest", "sharpest", "between" among the distinct
    sharpnesses, to 3 digits, of the minima the configuration ended in; "" where there is one). Empty without
    basins or sharpness."""
    g = df[(df.problem == prob) & ~df["diverged"]]
    cols = ["config", "basin", "kind", "runs", "sharpness", "rank"]
    if "tags.basin" not in g or "metrics.final_sharpness" not in g or not analysis.has_minima(df[df.problem == prob]):
        return pd.DataFrame(columns=cols)
    g = g[g["tags.basin"].notna() & (g["tags.basin"] != "none") & g["metrics.final_sharpness"].notna()]
    kinds = g.groupby("tags.basin")["global"].max().map(lambda v: "global" if v > 0 else "local")
    rows = []
    for cfg in analysis.configs(g):
        per = g[g.config == cfg].groupby("tags.basin")["metrics.final_sharpness"].agg(["median", "size"]).sort_values("median")
        shown = sorted({_shown(v) for v in per["median"]})  # minima of one sharpness as printed (symmetric ones) share a rank
        for basin, r in per.iterrows():
            rows.append(dict(config=cfg, basin=basin, kind=kinds[basin], runs=int(r["size"]), sharpness=float(r["median"]), rank=_rank(shown, _shown(r["median"]))))
    return pd.DataFrame(rows, columns=cols)


def _shown(v: float) -> float:
    return float(f"{v:.3g}")


def _rank(shown: list[float], v: float) -> str:
    """Where one minimum's sharpness sits among the distinct ones a configuration ended in."""
    if len(shown) == 1:
        return ""
    return "flattest" if v == shown[0] else "sharpest" if v == shown[-1] else "between"


def band(points: pd.DataFrame) -> pd.DataFrame:
    """Median and quartiles over runs at each step of one curve's long points (run_id, step, value); a run
    that stopped keeps its last value. Columns step, median, q25, q75, runs."""
    wide = points.pivot_table(index="step", columns="run_id", values="value").sort_index()
    wide = wide.ffill()
    with np.errstate(invalid="ignore"):
        return pd.DataFrame({"step": wide.index.to_numpy(), "median": wide.median(axis=1).to_numpy(), "q25": wide.quantile(0.25, axis=1).to_numpy(),
                             "q75": wide.quantile(0.75, axis=1).to_numpy(), "runs": wide.notna().sum(axis=1).to_numpy()})
