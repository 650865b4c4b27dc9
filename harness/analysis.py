"""The one analysis of a set of runs. The sweep's closing summary and the report both call :func:`analyse`.

Definitions (the report's "How to read" section and the README state them too):

1. **Problem and configuration.** A *problem* is a problem name plus every problem parameter that
   varies among the runs analysed (``quadratic (L=1000)``, ``rosenbrock (x0=[-1.5, 2])``). A
   *configuration* is an optimizer plus every other setting that varies (its hyperparameters,
   its class, ``batch_size``, ``steps``, ``dtype``, stopping rules, ...): ``momentum (momentum=0.99)``.
   The learning rate and the seed are the only things pooled: the runs of one (problem,
   configuration, lr) are the seeds of one experiment.
2. **The protocol** (harness/protocol.py): each run counted once and code versions never pooled; the
   best lr chosen on tuning seeds and every number at it reported from the other seeds; a selection
   metric; cost counted in steps, gradient evaluations or examples.
3. **Score.** A run's selection metric (final f - f* by default); a diverged run scores +inf.
4. **Best lr** of a configuration on a problem, on the tuning seeds:
   a. only lrs at which no tuning seed diverged are candidates, unless every lr had a divergence;
   b. on problems with listed minima, the higher share of runs ending at a global minimum first;
   c. then the lower median score, where medians <= ``SOLVED`` count as equal and medians equal to
      ``DIGITS`` significant digits tie;
   d. then the lower median cost to the target (a run that never reached it counts as never);
   e. then the larger lr.
   Configurations are ranked on a problem by the same keys on the reporting seeds at their best lrs.
5. **Intervals** (harness/inference.py): distribution-free order-statistic intervals of the median and
   the IQM over reporting seeds, each with the level it achieves; exact (Clopper-Pearson) intervals for
   shares. **Comparisons** are paired sign tests over shared seeds with Holm's correction
   (harness/comparisons.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import yaml

from harness import inference, metrics
from harness.protocol import Protocol, budget, cost_to, cost_unit, count_once, selection, split_seeds
from harness.store.runtable import object_strings
from optimizers import display

SOLVED = 1e-12  # medians at or below this count as solved (equal)
DIGITS = 6  # medians equal to this many significant digits tie
FACTOR = 10.0  # robustness: lrs whose median is within FACTOR x the best
DEFAULT_TARGET = 1e-6  # the level of f - f* that cost is counted to, in the summary and the report
LEVEL = 0.95  # the level intervals aim at; each states the level it achieves
POOLED = {"params.lr", "params.seed", "params.optimizer.lr", "params.problem", "params.optimizer", "params.problem.name", "params.optimizer.name"}


def target_column(target: float) -> str:
    return f"metrics.steps_to_{target:.0e}"


def parse_param(v):
    """A logged param string back to its value (params are str() of the resolved config)."""
    if not isinstance(v, str):
        return v
    return _parse_str(v)


@functools.lru_cache(maxsize=65536)  # 10,000 runs x 30 params share a few hundred distinct strings
def _parse_str(v: str):
    if v in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[v]
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def canonical(v) -> str:
    """One spelling per value, so ``0`` and ``0.0`` (or ``[1, 2]`` and ``[1.0, 2.0]``) are one configuration."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return _canonical_str(v) if isinstance(v, str) else _spell(v)


def _spell(p) -> str:
    if isinstance(p, bool) or p is None or isinstance(p, str):
        return str(p)
    if isinstance(p, (int, float)):
        return format(float(p), ".12g")
    if isinstance(p, (list, tuple)):
        return "[" + ", ".join(_spell(x) for x in p) + "]"
    return str(p)


@functools.lru_cache(maxsize=65536)
def _canonical_str(v: str) -> str:
    return _spell(parse_param(v))


def _short(key: str) -> str:
    key = key[len("params.") :]
    return key.split(".", 1)[1] if key.startswith(("problem.", "optimizer.")) else key


def _sortable(v) -> tuple:
    p = parse_param(v)
    if isinstance(p, (int, float)) and not isinstance(p, bool):
        return (0, float(p), "")
    return (1, 0.0, str(v))


def _labels(df: pd.DataFrame, by: list[str], name: str, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``name (k=v, ...)`` over the keys that vary within its ``by`` group (``name``: a column
    constant within each group), and a sort key. Object arrays whose rows share one string and one tuple
    per distinct label; each key is spelled once per distinct value (a million runs hold a few)."""
    codes, names = pd.factorize(df[name])
    label = np.asarray(names, dtype=object)[codes]
    order = np.empty(len(df), dtype=object)
    order.fill(())
    spelled = {k: _spelled(df[k]) for k in keys if k in df}
    for rows in df.groupby(by, sort=False).indices.values():
        varying = [k for k, (c, _) in spelled.items() if (c[rows] != c[rows[0]]).any()]
        if not varying:
            continue
        combos, at = np.unique(np.stack([spelled[k][0][rows] for k in varying], axis=1), axis=0, return_inverse=True)
        values = [[spelled[k][1][c] for k, c in zip(varying, combo)] for combo in combos]
        head = label[rows[0]]
        label[rows] = _objects([f"{head} ({', '.join(f'{_short(k)}={v}' for k, v in zip(varying, vs))})" for vs in values])[at.reshape(-1)]
        order[rows] = _objects([tuple(map(_sortable, vs)) for vs in values])[at.reshape(-1)]
    return label, order


def _spelled(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """A param column as (a code per row, the :func:`canonical` spelling of each code): values spelled
    alike share a code. A null x0 reads ``random``; a null or missing batch size, ``full``."""
    raw, uniques = pd.factorize(col.astype(object), use_na_sentinel=False)
    spellings = [canonical(v) for v in uniques]
    if col.name == "params.problem.x0":
        spellings = ["random" if v == "None" else v for v in spellings]
    if col.name == "params.batch_size":
        spellings = ["full" if v in ("None", "–") else v for v in spellings]
    codes, distinct = pd.factorize(np.array(spellings, dtype=object))
    return codes[raw], list(distinct)


def _objects(items: list) -> np.ndarray:
    """``items`` as a 1-D object array (tuples stay elements; ``np.array`` would make them rows)."""
    out = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        out[i] = v
    return out


def canonical_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`canonical` of every cell, computed once per distinct value of each column (100,000 runs
    have a few distinct values per param)."""
    out = pd.DataFrame(index=frame.index)
    for c in frame.columns:
        col = frame[c].astype(object)
        out[c] = col.map({v: canonical(v) for v in col.unique()})
    return out


def _fold_schedule(df: pd.DataFrame) -> None:
    """One ``params.schedule`` column: the schedule's name, with its settings where runs of the same
    schedule differ in them (``step(gamma=0.5, step_size=100)``). Runs logged before schedules
    existed ran with a constant lr."""
    keys = sorted(c for c in df.columns if c.startswith("params.schedule.") and c != "params.schedule.name")
    if "params.schedule.name" not in df and not keys:
        return
    names = df.get("params.schedule.name", pd.Series(None, index=df.index, dtype=object)).fillna("constant").astype(str)
    settings = canonical_frame(df[keys]) if keys else pd.DataFrame(index=df.index)
    full = names + "(" + settings.apply(lambda r: ", ".join(f"{k.rsplit('.', 1)[1]}={v}" for k, v in r.items() if v != "–"), axis=1) + ")"
    full = full.str.replace("()", "", regex=False)
    several = full.groupby(names).transform("nunique") > 1
    df["params.schedule"] = names.where(~several, full)


def analyse(raw: pd.DataFrame, target: float, tune="half", select: str = "auto") -> Analysis:
    """The whole analysis under the protocol: runs, the best lr per configuration, the paired comparisons."""
    from harness.comparisons import compare

    proto = Protocol()
    df = prepare(raw, proto, tune, select)
    bests = best(df, target, proto)
    return Analysis(df, bests, compare(df, bests, target, proto), proto, target)


@dataclass
class Analysis:
    df: pd.DataFrame  # one row per counted run (prepare)
    bests: pd.DataFrame  # one row per (problem, configuration) at its best lr (best)
    comparisons: pd.DataFrame  # the leader of each problem against every other configuration
    protocol: Protocol
    target: float


def prepare(raw: pd.DataFrame, proto: Protocol | None = None, tune="half", select: str = "auto") -> pd.DataFrame:
    """Runs as read from the store -> one row per counted run with the analysis columns: problem,
    config (labels), optimizer, lr, seed, has_fstar, final, score, select_score, diverged, global,
    tuning, reporting (protocol rules 1-3)."""
    proto = proto if proto is not None else Protocol()
    df = count_once(raw, proto).copy(deep=False)  # columns are added, none changed in place (copy-on-write)
    df["lr"] = df["params.lr"].astype(float)
    df["seed"] = df["params.seed"].astype(int)
    df["problem_name"] = df["params.problem"].astype(str)
    df["optimizer"] = df["params.optimizer"].astype(str)
    _fold_schedule(df)
    params = [c for c in df.columns if c.startswith("params.") and c not in POOLED and not c.startswith("params.schedule.")]
    pkeys = sorted(c for c in params if c.startswith("params.problem."))
    ckeys = sorted(c for c in params if not c.startswith("params.problem."))
    object_strings(df)  # the columns of astype(str) above: pandas 3 makes them Arrow-backed, slow to select rows from
    df["problem"] = pd.Series(_labels(df, ["problem_name"], "problem_name", pkeys)[0], index=df.index, dtype=object)
    config, corder = _labels(df, ["problem", "optimizer"], "optimizer", ckeys)
    df["config"] = pd.Series(config, index=df.index, dtype=object)
    orders: dict[tuple, tuple] = {}  # one sort key per configuration, shared by its runs
    df["config_order"] = [orders.get((o, k)) or orders.setdefault((o, k), (*display.order(o), k)) for o, k in zip(df["optimizer"], corder)]
    df["diverged"] = df.get("metrics.diverged", pd.Series(0.0, index=df.index)).fillna(0).astype(float) > 0
    sub = df["metrics.final_suboptimality"] if "metrics.final_suboptimality" in df else pd.Series(np.nan, index=df.index)
    known = sub.notna() | (df["tags.f_star"].notna() if "tags.f_star" in df else False)
    df["has_fstar"] = known.groupby(df["problem"]).transform("any").astype(bool)
    df["final"] = sub.where(sub.notna(), df["metrics.final_loss"]).astype(float)
    df["score"] = df["final"].where(~df["diverged"] & np.isfinite(df["final"]), math.inf)
    df["global"] = df["metrics.global_min_reached"].astype(float) if "metrics.global_min_reached" in df else np.nan
    df = df.reset_index(drop=True)
    for prob, g in df.groupby("problem"):
        proto.unit[prob] = cost_unit(g)
    return selection(split_seeds(df, tune, proto), select, proto)


def problems(df: pd.DataFrame) -> list[str]:
    return sorted(df["problem"].unique())


def configs(df: pd.DataFrame) -> list[str]:
    """Configuration labels in display order (optimizers in the usual order, swept values as numbers)."""
    first = df.drop_duplicates("config").set_index("config")["config_order"]
    return sorted(first.index, key=lambda c: first[c])


def has_minima(g: pd.DataFrame) -> bool:
    return bool(g["global"].notna().all())


def steps_to(g: pd.DataFrame, target: float) -> pd.Series:
    """Steps to f - f* <= target per run: +inf where never reached, NaN where f* is unknown."""
    col = target_column(target)
    s = g[col].astype(float) if col in g else pd.Series(np.nan, index=g.index)
    return s.where(~g["has_fstar"] | s.notna(), math.inf).where(g["has_fstar"], np.nan)


def cost(g: pd.DataFrame, target: float, unit: str) -> pd.Series:
    """Cost to f - f* <= target per run in ``unit`` (protocol rule 4): +inf where never reached, NaN without f*."""
    return cost_to(g, steps_to(g, target), target_column(target), unit)


def median(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.median(v)) if v.size else math.nan


def share_interval(k: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a share k/n at ``LEVEL``; (nan, nan) for n = 0."""
    return inference.clopper_pearson(int(k), int(n), LEVEL)


def bucket(m: float) -> float:
    """Scores compared as equal: everything <= SOLVED, and values equal to DIGITS significant digits."""
    if not math.isfinite(m):
        return math.inf
    return 0.0 if 0 <= m <= SOLVED else float(f"{m:.{DIGITS - 1}e}")


def lr_table(df: pd.DataFrame, target: float, unit: str | dict = "steps") -> pd.DataFrame:
    """Per (problem, config, lr) over the given runs: seeds, diverged, median / quartiles of the
    selection score and of the final value, global share, median cost to target."""
    d = df.assign(cost_t=_costs(df, target, unit))
    g = d.groupby(["problem", "config", "lr"])
    out = g["select_score"].agg(median="median", n="size")
    out["final_median"] = g["score"].median()
    out["q25"] = g["score"].quantile(0.25, interpolation="lower")
    out["q75"] = g["score"].quantile(0.75, interpolation="higher")
    out["diverged"] = g["diverged"].sum().astype(int)
    out["global_share"] = g["global"].mean()
    out["steps"] = g["cost_t"].median()
    return out.reset_index()


def _costs(df: pd.DataFrame, target: float, unit: str | dict) -> pd.Series:
    if isinstance(unit, str):
        return cost(df, target, unit)
    parts = [cost(g, target, unit[p]) for p, g in df.groupby("problem")]
    return pd.concat(parts).reindex(df.index) if parts else pd.Series(np.nan, index=df.index)


def rank_key(row, minima: bool) -> tuple:
    """Sort key of rule 4 (b-e): lower is better."""
    steps = row["steps"] if isinstance(row["steps"], float) and not math.isnan(row["steps"]) else math.inf
    return (-row["global_share"] if minima else 0.0, bucket(row["median"]), steps, -row["lr"])


def robustness(t: pd.DataFrame, best_lr: float, best: float) -> float:
    """Decades of contiguous lr (on the grid run) around ``best_lr`` whose median is within FACTOR of ``best``."""
    t = t.sort_values("lr").reset_index(drop=True)
    if not math.isfinite(best) or len(t) < 2:
        return 0.0
    if best < 0:  # a metric where higher is better (accuracy): "within FACTOR" has no meaning
        return math.nan
    ok = (t["median"] <= max(FACTOR * best, SOLVED)).to_numpy()
    i = int(t.index[t["lr"] == best_lr][0])
    lo = hi = i
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(t) - 1 and ok[hi + 1]:
        hi += 1
    return float(np.log10(t["lr"][hi] / t["lr"][lo]))


def choose_lr(t: pd.DataFrame, minima: bool) -> pd.Series:
    """Rule 4 on one configuration's lr table (tuning seeds)."""
    cand = t[t["diverged"] == 0] if (t["diverged"] == 0).any() else t
    return min((r for _, r in cand.iterrows()), key=lambda r: rank_key(r, minima))


def at_best(df: pd.DataFrame, prob: str, cfg: str, lr: float, role: str = "reporting") -> pd.DataFrame:
    """The runs of a configuration at its best lr on the seeds of ``role`` (reporting or tuning)."""
    g = df[(df.problem == prob) & (df.config == cfg) & (df.lr == lr)]
    return g[g[role]].sort_values("seed")


def best(df: pd.DataFrame, target: float, proto: Protocol) -> pd.DataFrame:
    """One row per (problem, config): its best lr chosen on the tuning seeds, and every number at it
    from the reporting seeds; ranked within the problem (rank 1 = best) on the reporting seeds."""
    rows = []
    numbers = df[[c for c in df.columns if not c.startswith(("params.", "tags."))]]  # a group's copy holds these alone
    for (prob, cfg), g in numbers.groupby(["problem", "config"], sort=False):
        unit, minima = proto.unit[prob], has_minima(g)
        t = lr_table(g[g["tuning"]], target, unit)
        b = choose_lr(t, minima)
        at = at_best(g, prob, cfg, b["lr"])
        rows.append(_report_row(g, at, t, b, target, unit, minima))
    out = pd.DataFrame(rows)
    out["rank"] = 0
    for _, g in out.groupby("problem"):
        minima = bool(g["minima"].all())
        keys = {i: (-r["global_share"] if minima else 0.0, bucket(r["select_median"]), r["steps"] if math.isfinite(r["steps"]) else math.inf,
                    r["config_order"]) for i, r in g.iterrows()}
        for k, i in enumerate(sorted(keys, key=keys.get), start=1):
            out.loc[i, "rank"] = k
    return out.sort_values(["problem", "rank"]).reset_index(drop=True)


def _report_row(g: pd.DataFrame, at: pd.DataFrame, t: pd.DataFrame, b: pd.Series, target: float, unit: str, minima: bool) -> dict:
    """The numbers of one configuration at its best lr, from the reporting runs ``at``."""
    fstar = bool(at["has_fstar"].all()) if len(at) else bool(g["has_fstar"].all())
    score = at["score"].to_numpy(float)
    lo, hi, level = inference.median_interval(score, LEVEL)
    iqm_lo, iqm_hi, iqm_level = inference.iqm_interval(score, LEVEL)
    c = cost(at, target, unit).to_numpy(float) if fstar else np.full(len(at), np.nan)
    c_lo, c_hi, c_level = inference.median_interval(c, LEVEL) if fstar and len(c) else (math.nan,) * 3
    k_glob = int((at["global"] > 0).sum()) if minima else 0
    glo, ghi = share_interval(k_glob, len(at)) if minima else (math.nan, math.nan)
    row = dict(
        problem=g["problem"].iloc[0], config=g["config"].iloc[0], optimizer=g["optimizer"].iloc[0], config_order=g["config_order"].iloc[0],
        best_lr=float(b["lr"]), seeds=len(at), tune_seeds=int(b["n"]), median=median(score), q25=_q(score, 0.25), q75=_q(score, 0.75),
        ci_lo=lo, ci_hi=hi, ci_level=level, iqm=inference.iqm(score) if len(score) else math.nan, iqm_lo=iqm_lo, iqm_hi=iqm_hi, iqm_level=iqm_level,
        select_median=median(at["select_score"]), tune_median=float(b["median"]),
        budget=median(budget(at, unit)) if len(at) else math.nan,
        steps=median(c) if fstar else math.nan, steps_lo=c_lo, steps_hi=c_hi, steps_level=c_level, unit=unit,
        reached=int(np.isfinite(c).sum()) if fstar else 0, fstar=fstar, minima=minima,
        diverged_best=int(at["diverged"].sum()), diverged_all=int(g["diverged"].sum()), runs=len(g), lrs=len(t),
        global_share=k_glob / len(at) if minima and len(at) else math.nan, global_lo=glo, global_hi=ghi,
        global_max=float(t["global_share"].max()) if minima else math.nan,
        global_max_lr=float(t.loc[t["global_share"].idxmax(), "lr"]) if minima else math.nan,
        robust_decades=robustness(t, b["lr"], b["median"]),
    )
    for m in metrics.shown(g):  # declared per-run metrics (harness/metrics.py), aggregated as declared
        v = at[f"metrics.{m.name}"].dropna().to_numpy(float)
        row[f"metrics.{m.name}"] = median(v)
        if m.aggregate == "median_interval":
            row[f"interval.{m.name}"] = inference.median_interval(v, LEVEL) if len(v) else (math.nan,) * 3
    return row


def _q(v: np.ndarray, q: float) -> float:
    if not v.size:
        return math.nan
    return float(np.quantile(v, q, method="lower" if q < 0.5 else "higher"))


def outcome_shares(df: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, config, lr): share of runs ending at a global minimum, a local one, none, or diverged."""
    d = df.copy()
    glob = d["global"].fillna(0) > 0
    basin = d["tags.basin"].fillna("none") if "tags.basin" in d else pd.Series("none", index=d.index)
    d["outcome"] = np.where(d["diverged"], "diverged", np.where(glob, "global", np.where(basin != "none", "local", "none")))
    out = d.groupby(["problem", "config", "lr"])["outcome"].value_counts(normalize=True).unstack(fill_value=0.0)
    for c in ("global", "local", "none", "diverged"):
        if c not in out:
            out[c] = 0.0
    return out[["global", "local", "none", "diverged"]].reset_index()


def divergence_edges(df: pd.DataFrame) -> list[tuple[str, str, float, int, int]]:
    """(problem, config, lr0, diverged, runs) where every run at lr >= lr0 diverged (lr0 the smallest such)."""
    out = []
    for (prob, cfg), g in df.groupby(["problem", "config"]):
        by_lr = g.groupby("lr")["diverged"].agg(["sum", "size"]).sort_index()
        all_div = (by_lr["sum"] == by_lr["size"]).to_numpy()
        if not all_div[-1]:
            continue
        k = len(all_div) - 1
        while k > 0 and all_div[k - 1]:
            k -= 1
        lrs = by_lr.index[k:]
        out.append((prob, cfg, float(by_lr.index[k]), int(by_lr["sum"][lrs].sum()), int(by_lr["size"][lrs].sum())))
    return out


def target_levels(g: pd.DataFrame) -> list[float]:
    """The logged targets (stats.targets) of these runs."""
    levels = set()
    for v in g["params.stats.targets"].dropna().unique() if "params.stats.targets" in g else []:
        p = parse_param(v)
        if isinstance(p, list):
            levels.update(float(x) for x in p)
    return sorted(levels, reverse=True)


def ecdf(df: pd.DataFrame, bests: pd.DataFrame, prob: str, grid: np.ndarray, unit: str) -> dict[str, tuple]:
    """COCO-style runtime distribution per configuration at its best lr, on the reporting seeds: the share
    of (seed, target) pairs with f - f* <= target within cost c (in ``unit``), over every logged target.
    Returns {config: (share[len(grid)], targets)}."""
    g = df[df.problem == prob]
    levels = target_levels(g)
    out = {}
    if not levels or not g["has_fstar"].all():
        return out
    for _, b in bests[bests.problem == prob].iterrows():
        at = at_best(df, prob, b["config"], b["best_lr"])
        hits = np.column_stack([cost(at, lv, unit).to_numpy(float) for lv in levels])  # [seeds, targets]
        out[b["config"]] = ((hits[:, :, None] <= grid).mean(axis=(0, 1)), levels)
    return out


def performance_profile(df: pd.DataFrame, bests: pd.DataFrame, target: float, taus: np.ndarray, units: dict[str, str]) -> dict[str, np.ndarray]:
    """Dolan-More profile over (problem, reporting seed) instances of problems with f*, for configurations
    run on every such problem: cost = cost to target at the best lr, in each problem's unit. Empty when
    fewer than two configurations qualify or no instance was solved."""
    b = bests[bests["fstar"]]
    if b.empty:
        return {}
    probs = set(b["problem"])
    common = [c for c in configs(df) if set(b[b.config == c]["problem"]) == probs]
    if len(common) < 2:
        return {}
    cost_of: dict[tuple, float] = {}
    for _, r in b[b.config.isin(common)].iterrows():
        at = at_best(df, r["problem"], r["config"], r["best_lr"])
        for seed, s in zip(at["seed"], cost(at, target, units[r["problem"]])):
            cost_of[(r["config"], r["problem"], seed)] = float(s)
    instances = sorted({k[1:] for k in cost_of})
    ratios: dict[str, list[float]] = {c: [] for c in common}
    for inst in instances:
        c = {o: cost_of.get((o, *inst), math.inf) for o in common}
        m = min(c.values())
        if not math.isfinite(m):
            continue
        for o in common:
            ratios[o].append(c[o] / max(m, 1.0))
    if not any(ratios.values()):
        return {}
    return {o: np.array([np.mean(np.array(r) <= t) if r else 0.0 for t in taus]) for o, r in ratios.items()}
