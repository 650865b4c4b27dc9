"""The one analysis of a set of runs. The sweep's closing summary and the report both call it.

Definitions (the report's "How to read" section and the README state them too):

1. **Problem and configuration.** A *problem* is a problem name plus every problem parameter that
   varies among the runs analysed (``quadratic (L=1000)``, ``rosenbrock (x0=[-1.5, 2])``). A
   *configuration* is an optimizer plus every other setting that varies (its hyperparameters,
   its class, ``batch_size``, ``steps``, ``dtype``, stopping rules, ...): ``momentum (momentum=0.99)``.
   The learning rate and the seed are the only things pooled: the runs of one (problem,
   configuration, lr) are the seeds of one experiment.
2. **Score.** A run's final f - f* (its final loss where f* is unknown); a diverged run scores +inf.
3. **Best lr** of a configuration on a problem:
   a. only lrs at which no seed diverged are candidates, unless every lr had a divergence;
   b. on problems with listed minima, the higher share of runs ending at a global minimum first;
   c. then the lower median score, where medians <= ``SOLVED`` count as equal and medians equal to
      ``DIGITS`` significant digits tie;
   d. then the fewer median steps to the target (a run that never reached it counts as never);
   e. then the larger lr.
   Configurations are ranked on a problem by the same keys, taken at their best lrs.
4. **Intervals.** 95% percentile-bootstrap intervals over seeds (``BOOTSTRAP`` resamples from a
   fixed seed, so reports are reproducible) of the median score and the median steps to target.
   A comparison is stated only where the two intervals do not overlap.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import yaml

SOLVED = 1e-12  # medians at or below this count as solved (equal)
DIGITS = 6  # medians equal to this many significant digits tie
FACTOR = 10.0  # robustness: lrs whose median is within FACTOR x the best
BOOTSTRAP = 1000
BOOT_SEED = 0
ORDER = ["gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam", "lbfgs"]
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


def _labels(df: pd.DataFrame, by: list[str], name: pd.Series, keys: list[str]) -> tuple[pd.Series, pd.Series]:
    """Per row: ``name (k=v, ...)`` over the keys that vary within its ``by`` group, and a sort key."""
    label = name.astype(str).copy()
    order = pd.Series([()] * len(df), index=df.index, dtype=object)
    for _, g in df.groupby(by, sort=False):
        vals = g[[k for k in keys if k in g]].map(canonical)
        if "params.problem.x0" in vals:
            vals["params.problem.x0"] = vals["params.problem.x0"].replace("None", "random")
        varying = [k for k in vals if vals[k].nunique() > 1]
        if not varying:
            continue
        parts = vals[varying].apply(lambda r, v=varying: ", ".join(f"{_short(k)}={r[k]}" for k in v), axis=1)
        label[g.index] = name[g.index].astype(str) + " (" + parts + ")"
        order[g.index] = vals[varying].apply(lambda r, v=varying: tuple(_sortable(r[k]) for k in v), axis=1)
    return label, order


def _fold_schedule(df: pd.DataFrame) -> None:
    """One ``params.schedule`` column: the schedule's name, with its settings where runs of the same
    schedule differ in them (``step(gamma=0.5, step_size=100)``). Runs logged before schedules
    existed ran with a constant lr."""
    keys = sorted(c for c in df.columns if c.startswith("params.schedule.") and c != "params.schedule.name")
    if "params.schedule.name" not in df and not keys:
        return
    names = df.get("params.schedule.name", pd.Series(None, index=df.index, dtype=object)).fillna("constant").astype(str)
    settings = df[keys].map(canonical) if keys else pd.DataFrame(index=df.index)
    full = names + "(" + settings.apply(lambda r: ", ".join(f"{k.rsplit('.', 1)[1]}={v}" for k, v in r.items() if v != "–"), axis=1) + ")"
    full = full.str.replace("()", "", regex=False)
    several = full.groupby(names).transform("nunique") > 1
    df["params.schedule"] = names.where(~several, full)


def prepare(raw: pd.DataFrame) -> pd.DataFrame:
    """Runs as read from the store -> one row per run with the analysis columns:
    problem, config (labels), optimizer, lr, seed, has_fstar, final, score, diverged, global."""
    df = raw.copy()
    df["lr"] = df["params.lr"].astype(float)
    df["seed"] = df["params.seed"].astype(int)
    df["problem_name"] = df["params.problem"].astype(str)
    df["optimizer"] = df["params.optimizer"].astype(str)
    _fold_schedule(df)
    params = [c for c in df.columns if c.startswith("params.") and c not in POOLED and not c.startswith("params.schedule.")]
    pkeys = sorted(c for c in params if c.startswith("params.problem."))
    ckeys = sorted(c for c in params if not c.startswith("params.problem."))
    df["problem"], _ = _labels(df, ["problem_name"], df["problem_name"], pkeys)
    df["config"], corder = _labels(df, ["problem", "optimizer"], df["optimizer"], ckeys)
    df["config_order"] = [(o not in ORDER, ORDER.index(o) if o in ORDER else 0, o, k) for o, k in zip(df["optimizer"], corder)]
    df["diverged"] = df.get("metrics.diverged", pd.Series(0.0, index=df.index)).fillna(0).astype(float) > 0
    sub = df["metrics.final_suboptimality"] if "metrics.final_suboptimality" in df else pd.Series(np.nan, index=df.index)
    known = sub.notna() | (df["tags.f_star"].notna() if "tags.f_star" in df else False)
    df["has_fstar"] = known.groupby(df["problem"]).transform("any").astype(bool)
    df["final"] = sub.where(sub.notna(), df["metrics.final_loss"]).astype(float)
    df["score"] = df["final"].where(~df["diverged"] & np.isfinite(df["final"]), math.inf)
    df["global"] = df["metrics.global_min_reached"].astype(float) if "metrics.global_min_reached" in df else np.nan
    return df.reset_index(drop=True)


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


def median(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.median(v)) if v.size else math.nan


def bootstrap(values, seeds, stat=np.median) -> tuple[float, float]:
    """95% percentile-bootstrap interval of ``stat`` (the median; the mean for shares) over seeds;
    (nan, nan) with fewer than 2 seeds. Seeded: the same runs always give the same interval."""
    v = np.asarray(values, dtype=float)[np.argsort(np.asarray(seeds), kind="stable")]
    if v.size < 2 or np.isnan(v).any():
        return math.nan, math.nan
    idx = np.random.default_rng(BOOT_SEED).integers(0, v.size, size=(BOOTSTRAP, v.size))
    stats = stat(v[idx], axis=1)
    return float(np.quantile(stats, 0.025, method="lower")), float(np.quantile(stats, 0.975, method="higher"))


def _bucket(m: float) -> float:
    if not math.isfinite(m):
        return math.inf
    return 0.0 if m <= SOLVED else float(f"{m:.{DIGITS - 1}e}")


def lr_table(df: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per (problem, config, lr): seeds, diverged, median / quartiles of the score, global share, median steps."""
    d = df.assign(steps_t=steps_to(df, target))
    g = d.groupby(["problem", "config", "lr"])
    out = g["score"].agg(median="median", n="size")
    out["q25"] = g["score"].quantile(0.25, interpolation="lower")
    out["q75"] = g["score"].quantile(0.75, interpolation="higher")
    out["diverged"] = g["diverged"].sum().astype(int)
    out["global_share"] = g["global"].mean()
    out["steps"] = g["steps_t"].median()
    return out.reset_index()


def rank_key(row, minima: bool) -> tuple:
    """Sort key of rule 3 (b-e): lower is better."""
    steps = row["steps"] if isinstance(row["steps"], float) and not math.isnan(row["steps"]) else math.inf
    return (-row["global_share"] if minima else 0.0, _bucket(row["median"]), steps, -row["lr"])


def robustness(t: pd.DataFrame, best_lr: float, best: float) -> float:
    """Decades of contiguous lr (on the grid run) around ``best_lr`` whose median is within FACTOR of ``best``."""
    t = t.sort_values("lr").reset_index(drop=True)
    if not math.isfinite(best) or len(t) < 2:
        return 0.0
    ok = (t["median"] <= max(FACTOR * best, SOLVED)).to_numpy()
    i = int(t.index[t["lr"] == best_lr][0])
    lo = hi = i
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(t) - 1 and ok[hi + 1]:
        hi += 1
    return float(np.log10(t["lr"][hi] / t["lr"][lo]))


def best(df: pd.DataFrame, target: float) -> pd.DataFrame:
    """One row per (problem, config) at its best lr (rule 3), ranked within the problem (rank 1 = best)."""
    table = lr_table(df, target)
    extra = [c for c in ("metrics.final_test_accuracy", "metrics.final_test_loss") if c in df]
    rows = []
    for (prob, cfg), t in table.groupby(["problem", "config"], sort=False):
        g = df[(df.problem == prob) & (df.config == cfg)]
        minima = has_minima(g)
        cand = t[t["diverged"] == 0] if (t["diverged"] == 0).any() else t
        b = min((r for _, r in cand.iterrows()), key=lambda r: rank_key(r, minima))
        at = g[g.lr == b["lr"]].sort_values("seed")
        st = steps_to(at, target)
        lo, hi = bootstrap(at["score"], at["seed"])
        slo, shi = bootstrap(st, at["seed"]) if at["has_fstar"].all() else (math.nan, math.nan)
        glo, ghi = bootstrap(at["global"], at["seed"], np.mean) if minima else (math.nan, math.nan)
        row = dict(
            problem=prob, config=cfg, optimizer=g["optimizer"].iloc[0], config_order=g["config_order"].iloc[0],
            best_lr=float(b["lr"]), seeds=int(b["n"]), median=float(b["median"]), q25=float(b["q25"]), q75=float(b["q75"]),
            ci_lo=lo, ci_hi=hi, steps=float(b["steps"]), steps_lo=slo, steps_hi=shi,
            reached=int(np.isfinite(st).sum()), fstar=bool(at["has_fstar"].all()), minima=minima,
            diverged_best=int(b["diverged"]), diverged_all=int(t["diverged"].sum()), runs=int(t["n"].sum()), lrs=len(t),
            global_share=float(b["global_share"]) if minima else math.nan, global_lo=glo, global_hi=ghi,
            global_max=float(t["global_share"].max()) if minima else math.nan,
            global_max_lr=float(t.loc[t["global_share"].idxmax(), "lr"]) if minima else math.nan,
            robust_decades=robustness(t, b["lr"], b["median"]),
        )
        for c in extra:
            row[c[len("metrics.final_") :]] = median(at[c].dropna()) if at[c].notna().any() else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    out["rank"] = 0
    for _, g in out.groupby("problem"):
        minima = bool(g["minima"].all())
        keys = {i: (*rank_key(r.rename({"best_lr": "lr"}), minima)[:3], r["config_order"]) for i, r in g.iterrows()}
        for k, i in enumerate(sorted(keys, key=keys.get), start=1):
            out.loc[i, "rank"] = k
    return out.sort_values(["problem", "rank"]).reset_index(drop=True)


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


def ecdf(df: pd.DataFrame, bests: pd.DataFrame, prob: str, grid: np.ndarray, resamples: int = 200) -> dict[str, tuple]:
    """COCO-style runtime distribution per configuration at its best lr: the share of (seed, target)
    pairs with f - f* <= target by step t, over every logged target, with a 95% bootstrap band over
    seeds. Returns {config: (share[len(grid)], lo, hi, targets)}."""
    g = df[df.problem == prob]
    levels = target_levels(g)
    out = {}
    if not levels or not g["has_fstar"].all():
        return out
    for _, b in bests[bests.problem == prob].iterrows():
        at = g[(g.config == b["config"]) & (g.lr == b["best_lr"])].sort_values("seed")
        hits = np.column_stack([steps_to(at, lv).to_numpy() for lv in levels])  # [seeds, targets]
        share = (hits[:, :, None] <= grid).mean(axis=(0, 1))
        if len(at) >= 2:
            idx = np.random.default_rng(BOOT_SEED).integers(0, len(at), size=(resamples, len(at)))
            boot = (hits[idx][..., None] <= grid).mean(axis=(1, 2))
            lo, hi = np.quantile(boot, 0.025, axis=0), np.quantile(boot, 0.975, axis=0)
        else:
            lo = hi = share
        out[b["config"]] = (share, lo, hi, levels)
    return out


def separated(a_hi: float, b_lo: float) -> bool:
    return not (math.isnan(a_hi) or math.isnan(b_lo)) and a_hi < b_lo


def findings(df: pd.DataFrame, bests: pd.DataFrame, target: float) -> list[str]:
    """Plain-language findings; a comparison is stated only where the intervals separate."""
    from harness.formatting import lr as fl
    from harness.formatting import share, value

    lines = []
    for prob, s in bests.groupby("problem", sort=True):
        s = s.sort_values("rank")
        if not np.isfinite(s["median"]).any():
            lines.append(f"On {prob}, every run diverged at every learning rate tried.")
            continue
        lead = next(s.itertuples())
        who = f"{lead.config} at lr={fl(lead.best_lr)}"
        if lead.minima:
            others = "; ".join(f"{r.config} at most {share(r.global_max)}" for r in s.iloc[1:].itertuples())
            lines.append(f"On {prob}, {who} reached a global minimum from {share(lead.global_share)} of starts "
                         f"({round(lead.global_share * lead.seeds)}/{lead.seeds})" + (f"; {others} at any lr." if others else "."))
        if lead.fstar and math.isfinite(lead.steps):
            lines.append(f"On {prob}, {who} reached f - f* <= {target:.0e} in a median {lead.steps:.0f} steps "
                         f"({lead.reached}/{lead.seeds} seeds).")
        elif lead.fstar:
            lines.append(f"On {prob}, no configuration reached f - f* <= {target:.0e} in most seeds at its best lr; "
                         f"the best median final value was {value(lead.median, True)} ({who}).")
        behind, tied, names = [], [], []
        for r in s.iloc[1:].itertuples():
            before = len(behind)
            if lead.fstar and math.isfinite(lead.steps) and separated(lead.steps_hi, r.steps_lo):
                ratio = f"{r.steps / max(lead.steps, 1):.1f}x sooner" if math.isfinite(r.steps) else "where it did not"
                behind.append(f"{lead.config} reached {target:.0e} {ratio} than {r.config} "
                              f"(median {lead.steps:.0f} vs {r.steps:.0f} steps; 95% intervals separate)")
            elif separated(lead.ci_hi, r.ci_lo):
                behind.append(f"{lead.config} ended lower than {r.config} (median {value(lead.median, lead.fstar)} vs {value(r.median, r.fstar)}; 95% intervals separate)")
            elif lead.minima and separated(r.global_hi, lead.global_lo):
                behind.append(f"{lead.config} reached a global minimum more often than {r.config} ({share(lead.global_share)} vs {share(r.global_share)}; 95% intervals separate)")
            else:
                tied.append(r.config)
            if len(behind) > before:
                names.append(r.config)
        if len(behind) > 4:
            behind = behind[:3] + [f"{lead.config} was also clearly ahead of {', '.join(names[3:])} (95% intervals separate)"]
        lines += [f"On {prob}, {b}." for b in behind]
        if tied:
            n = int(s["seeds"].min())
            lines.append(f"On {prob}, {', '.join(tied)} {'is' if len(tied) == 1 else 'are'} indistinguishable from {lead.config} on {n} seed{'s' * (n != 1)}.")
        fin = s[np.isfinite(s["median"]) & (s["lrs"] > 1)]
        if len(fin) > 1:
            top = fin[fin["robust_decades"] == fin["robust_decades"].max()]
            if len(top) == 1:
                rob = next(top.itertuples())
                lines.append(f"On {prob}, {rob.config} was the most robust: within {FACTOR:g}x of its best over {rob.robust_decades:.1f} decades of lr.")
            else:
                lines.append(f"On {prob}, {', '.join(top['config'])} were equally robust: within {FACTOR:g}x of their best over {top['robust_decades'].iloc[0]:.1f} decades of lr.")
    for prob, cfg, lr0, d, n in divergence_edges(df):
        lines.append(f"On {prob}, {cfg} diverged at lr >= {fl(lr0)} in {d}/{n} runs.")
    return lines


def performance_profile(df: pd.DataFrame, bests: pd.DataFrame, target: float, taus: np.ndarray) -> dict[str, np.ndarray]:
    """Dolan-More profile over (problem, seed) instances of problems with f*, for configurations run on
    every such problem: cost = steps to target at the best lr. Empty when fewer than two configurations
    qualify or no instance was solved."""
    b = bests[bests["fstar"]]
    if b.empty:
        return {}
    probs = set(b["problem"])
    common = [c for c in configs(df) if set(b[b.config == c]["problem"]) == probs]
    if len(common) < 2:
        return {}
    cost: dict[tuple, float] = {}
    for _, r in b[b.config.isin(common)].iterrows():
        at = df[(df.problem == r["problem"]) & (df.config == r["config"]) & (df.lr == r["best_lr"])]
        for seed, s in zip(at["seed"], steps_to(at, target)):
            cost[(r["config"], r["problem"], seed)] = float(s)
    instances = sorted({k[1:] for k in cost})
    ratios: dict[str, list[float]] = {c: [] for c in common}
    for inst in instances:
        c = {o: cost.get((o, *inst), math.inf) for o in common}
        m = min(c.values())
        if not math.isfinite(m):
            continue
        for o in common:
            ratios[o].append(c[o] / max(m, 1.0))
    if not any(ratios.values()):
        return {}
    return {o: np.array([np.mean(np.array(r) <= t) if r else 0.0 for t in taus]) for o, r in ratios.items()}
