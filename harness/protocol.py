"""The comparison protocol: which runs count, which seeds choose and which report, what is selected on,
and in which unit cost is counted. The analysis (harness/analysis.py) applies it; the report states it.

1. **Each result counted once.** Runs are the same experiment when every logged parameter agrees (the
   resolved configuration: problem, optimizer, lr, seed, ...). Of duplicates, as overlapping sweeps make,
   the newest is kept. Within one (problem, optimizer), runs computed by different code (the tag
   ``harness.code_hash``, harness/fingerprint.py) are never pooled: the runs of the newest code are kept.
2. **Tune on some seeds, report on others.** Per problem, the lowest ``tune`` seeds choose each
   configuration's best lr; every number reported at that choice comes from the other seeds. The default
   is half of them (the lower half), when there are at least ``MIN_SPLIT`` seeds; with fewer, selection
   and reporting share the seeds and the report says the numbers are optimistic.
3. **Selection metric.** The final f - f* where f* is known, else the final validation loss where
   held-out metrics were logged (the CNN), else the final training loss; or one named with ``select``.
4. **Unit of cost.** Steps when every run of a problem costs the same per step; gradient evaluations
   when runs differ in evaluations per step (L-BFGS's line search); examples when they differ in batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness import metrics

MIN_SPLIT = 4  # fewest seeds a problem needs for separate tuning and reporting seeds


def selectable() -> dict[str, str]:
    """{name: what it is} of every selection metric: the final value, each declared metric with ``rank``
    (harness/metrics.py), and the final training loss."""
    return {"final": "final f - f* (training loss where f* is unknown)", **metrics.selectable(), "train_loss": "final training loss"}


UNITS = {"steps": "steps", "evals": "gradient evaluations", "examples": "examples"}


@dataclass
class Protocol:
    """What the analysis did with the runs it was given, for the report to state."""

    tune_seeds: dict[str, list[int]] = field(default_factory=dict)  # problem -> seeds choosing the lr
    report_seeds: dict[str, list[int]] = field(default_factory=dict)  # problem -> seeds reported
    select: dict[str, str] = field(default_factory=dict)  # problem -> selection metric (a selectable() key)
    unit: dict[str, str] = field(default_factory=dict)  # problem -> a UNITS key
    duplicates: int = 0  # runs set aside as repeats of a kept run
    older_code: dict[str, int] = field(default_factory=dict)  # "problem / optimizer" -> runs set aside

    def shared(self, prob: str) -> bool:
        return self.tune_seeds.get(prob) == self.report_seeds.get(prob)


class ProtocolError(ValueError):
    """A protocol option that cannot apply to these runs (one line for the user)."""


def identity(df: pd.DataFrame) -> pd.Series:
    """One number per experiment (equal numbers, same experiment): every logged parameter, as logged, a
    missing one as a value of its own."""
    return pd.Series(_codes([df[c] for c in sorted(c for c in df.columns if c.startswith("params."))], len(df)), index=df.index)


def _codes(columns: list[pd.Series], n: int) -> np.ndarray:
    """One integer per distinct combination of the columns' values (null a value of its own), ``n`` rows.
    Built a column at a time (a run's number so far, paired with the column's value, numbered again), so
    memory holds two integers a run, not a copy of the columns."""
    out = np.zeros(n, dtype=np.int64)
    for s in columns:
        codes, values = pd.factorize(s, use_na_sentinel=False)
        out, _ = pd.factorize(out * len(values) + codes)  # < rows x values <= rows**2: no overflow
    return out


def count_once(df: pd.DataFrame, proto: Protocol) -> pd.DataFrame:
    """Rule 1: of runs that are the same experiment keep the newest; never pool code versions. The rule
    reads a few columns in newest-first order; the frame itself is copied once, if at all."""
    n = len(df)
    order = (df["start_time"].reset_index(drop=True).sort_values(ascending=False, kind="stable").index.to_numpy()
             if "start_time" in df else np.arange(n))  # positions, newest first

    def newest_first(codes: np.ndarray) -> pd.Series:
        return pd.Series(codes[order])

    # integer codes throughout: grouping a million runs by four string columns held ~185 MB more
    code = newest_first(_codes([df["tags.harness.code_hash"].fillna("not recorded")] if "tags.harness.code_hash" in df else [], n))
    ident = newest_first(identity(df).to_numpy())
    dup = ident.duplicated()
    older = dup & (code != code.groupby(ident).transform("first"))
    proto.duplicates = int((dup & ~older).sum())
    what = [df[c].fillna("") for c in ("params.problem", "params.optimizer", "params.problem._target_", "params.optimizer._target_") if c in df]
    newest = code.groupby(newest_first(_codes(what, n))).transform("first")
    older |= ~dup & (code != newest)
    for (prob, opt), k in df.iloc[order[older.to_numpy()]].groupby(["params.problem", "params.optimizer"]).size().items():
        proto.older_code[f"{prob} / {opt}"] = int(k)
    keep = np.empty(n, dtype=bool)
    keep[order] = (~dup & ~older).to_numpy()
    out = df if keep.all() else df[keep]
    return out if out.index.is_monotonic_increasing else out.sort_index()


def split_seeds(df: pd.DataFrame, tune: str | int, proto: Protocol) -> pd.DataFrame:
    """Rule 2: mark each run ``tuning`` and/or ``reporting`` from its problem's seeds."""
    df = df.copy(deep=False)  # new columns only (copy-on-write keeps the caller's frame as it was)
    df["tuning"] = df["reporting"] = True
    for prob, g in df.groupby("problem"):
        seeds = sorted(g["seed"].unique())
        k = _tune_count(tune, len(seeds))
        tune_set, report_set = (seeds, seeds) if k == 0 else (seeds[:k], seeds[k:])
        proto.tune_seeds[prob], proto.report_seeds[prob] = [int(s) for s in tune_set], [int(s) for s in report_set]
        df.loc[g.index, "tuning"] = g["seed"].isin(tune_set)
        df.loc[g.index, "reporting"] = g["seed"].isin(report_set)
    return df


def _tune_count(tune: str | int, n: int) -> int:
    """How many of ``n`` seeds tune (0: all seeds do both)."""
    if tune == "all":
        return 0
    if tune == "half":
        return n // 2 if n >= MIN_SPLIT else 0
    if isinstance(tune, int) and 0 <= tune < n:
        return tune
    raise ProtocolError(f"--tune-seeds={tune!r} is not allowed; allowed: half, all, or an integer 0..{n - 1} (these runs have {n} seeds)")


def selection(df: pd.DataFrame, select: str, proto: Protocol) -> pd.DataFrame:
    """Rule 3: the column ``select_score`` (lower is better; +inf for a diverged run) per run."""
    if select != "auto" and select not in selectable():
        raise ProtocolError(f"--select={select!r} is not allowed; allowed: auto, {', '.join(selectable())}")
    df = df.copy(deep=False)  # a new column only
    df["select_score"] = math.inf
    for prob, g in df.groupby("problem"):
        metric = select if select != "auto" else _default_metric(g)
        if metric in metrics.selectable() and f"metrics.final_{metric}" not in g:
            logged = [m for m in metrics.selectable() if f"metrics.final_{m}" in df]
            raise ProtocolError(f"--select={metric} is not allowed for problem {prob}: its runs logged no {metric}; allowed: "
                                + ", ".join(["final", *logged]))
        proto.select[prob] = metric
        values = {"final": g["final"], "train_loss": g["metrics.final_loss"]}.get(metric)
        if values is None:
            values = g[f"metrics.final_{metric}"].astype(float) * (1.0 if metrics.lower_is_better(metric) else -1.0)
        ok = ~g["diverged"] & np.isfinite(values)
        df.loc[g.index, "select_score"] = values.where(ok, math.inf)
    return df


def _default_metric(g: pd.DataFrame) -> str:
    if bool(g["has_fstar"].all()):
        return "final"
    if "metrics.final_val_loss" in g and g["metrics.final_val_loss"].notna().all():
        return "val_loss"
    return "final"


def cost_unit(g: pd.DataFrame) -> str:
    """Rule 4 for one problem's runs."""
    per_step = _per_step(g, "metrics.examples")
    if per_step.notna().any() and per_step.nunique() > 1:
        return "examples"
    evals = [c for c in g.columns if c.startswith("metrics.evals_to_")]
    if evals and g[evals].notna().any().any() or _per_step(g, "metrics.grad_evals").nunique() > 1:
        return "evals"
    return "steps"


def _per_step(g: pd.DataFrame, col: str) -> pd.Series:
    if col not in g:
        return pd.Series(np.nan, index=g.index)
    steps = g["metrics.steps"].astype(float)
    return (g[col].astype(float) / steps.where(steps > 0)).round(9)


def cost_per_step(g: pd.DataFrame, unit: str) -> pd.Series:
    """Each run's mean cost per step in ``unit`` (1 for steps, and where a run logged none)."""
    col = {"evals": "metrics.grad_evals", "examples": "metrics.examples"}.get(unit)
    return pd.Series(1.0, index=g.index) if col is None else _per_step(g, col).fillna(1.0)


def cost_to(g: pd.DataFrame, steps: pd.Series, level_col: str, unit: str) -> pd.Series:
    """The cost, in ``unit``, of reaching a target that the runs reached at ``steps`` (inf where never)."""
    if unit == "steps":
        return steps
    if unit == "examples":
        return steps * _per_step(g, "metrics.examples")
    derived = steps * _per_step(g, "metrics.grad_evals").fillna(1.0)  # exact where a run costs the same every step
    logged_col = level_col.replace("steps_to_", "evals_to_")  # logged where evaluations per step vary (L-BFGS)
    if logged_col not in g:
        return derived
    logged = g[logged_col].astype(float)
    return logged.where(logged.notna(), derived)


def budget(g: pd.DataFrame, unit: str) -> pd.Series:
    """What each run spent in all, in ``unit``: its steps, gradient evaluations or examples."""
    col = {"steps": "metrics.steps", "evals": "metrics.grad_evals", "examples": "metrics.examples"}[unit]
    if col not in g:
        col = "metrics.steps"
    return g[col].astype(float) if col in g else pd.Series(np.nan, index=g.index)
