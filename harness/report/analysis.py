"""Numbers for the report, all computed from the runs' stored metrics.

Definitions (also printed in the report):
- score of a run: final f - f* (final loss when f* is unknown); diverged runs score +inf;
- best lr of (problem, optimizer): the lr with the lowest median score over seeds;
- robustness: the width, in decades, of the contiguous lr range around the best lr whose median
  score is within ``FACTOR`` x the best (anything <= ``SOLVED`` counts as within);
- steps to target: the ``steps_to_<target>`` metric, median over the seeds that reached it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

FACTOR = 10.0
SOLVED = 1e-12


def target_column(target: float) -> str:
    return f"metrics.steps_to_{target:.0e}"


def lr_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, optimizer, lr): median and quartiles of the score, divergences, seeds."""
    g = runs.groupby(["problem", "optimizer", "lr"])
    out = g["score"].agg(median="median", n="size")
    with np.errstate(invalid="ignore"):
        out["q25"], out["q75"] = g["score"].quantile(0.25), g["score"].quantile(0.75)
    out["diverged"] = g["diverged"].sum().astype(int)
    return out.reset_index()


def best_lrs(runs: pd.DataFrame, target: float = 1e-6) -> pd.DataFrame:
    """The best lr per (problem, optimizer): lowest median score; among lrs whose median is
    already solved (<= SOLVED), the one with the fewest median steps to target."""
    t = lr_table(runs)
    col = target_column(target)
    steps = runs.groupby(["problem", "optimizer", "lr"])[col].median() if col in runs else None
    t["steps"] = t.set_index(["problem", "optimizer", "lr"]).index.map(steps) if steps is not None else math.nan
    t["bucket"] = t["median"].where(t["median"] > SOLVED, 0.0)
    t = t.sort_values(["problem", "optimizer", "bucket", "steps", "lr"], na_position="last")
    return t.groupby(["problem", "optimizer"]).head(1).set_index(["problem", "optimizer"])


def robustness(table: pd.DataFrame, best_lr: float, best: float) -> float:
    """Decades of contiguous lr (on the sweep's grid) around ``best_lr`` within FACTOR of the best."""
    t = table.sort_values("lr").reset_index(drop=True)
    if not math.isfinite(best):
        return 0.0
    ok = (t["median"] <= max(FACTOR * best, SOLVED)).to_numpy()
    i = int(t.index[t["lr"] == best_lr][0])
    lo = hi = i
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(t) - 1 and ok[hi + 1]:
        hi += 1
    return float(np.log10(t["lr"][hi] / t["lr"][lo]))


def summary(runs: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per (problem, optimizer): best lr, median/IQR score there, steps to target, divergence rate, robustness."""
    col = target_column(target)
    table = lr_table(runs)
    rows = []
    for (prob, opt), best in best_lrs(runs, target).iterrows():
        at = runs[(runs.problem == prob) & (runs.optimizer == opt) & (runs.lr == best["lr"])]
        all_ = runs[(runs.problem == prob) & (runs.optimizer == opt)]
        steps = at[col].dropna() if col in at else pd.Series(dtype=float)
        rows.append(
            dict(
                problem=prob,
                optimizer=opt,
                best_lr=best["lr"],
                median=best["median"],
                q25=best["q25"],
                q75=best["q75"],
                seeds=int(best["n"]),
                steps_to_target=float(steps.median()) if len(steps) else math.nan,
                reached=int(len(steps)),
                diverged=int(all_["diverged"].sum()),
                runs=int(len(all_)),
                robust_decades=robustness(table[(table.problem == prob) & (table.optimizer == opt)], best["lr"], best["median"]),
                global_share=float(at["metrics.global_min_reached"].mean()) if "metrics.global_min_reached" in at and at["metrics.global_min_reached"].notna().any() else math.nan,
            )
        )
    return pd.DataFrame(rows)


def performance_profile(runs: pd.DataFrame, target: float, taus: np.ndarray) -> dict[str, np.ndarray]:
    """Dolan-More profile over instances (problem, seed): cost = steps to target at the optimizer's
    best lr for that problem (inf if not reached). rho_s(tau) = share of instances with cost <= tau x best."""
    col = target_column(target)
    best = best_lrs(runs, target)
    cost = {}
    for (prob, opt), b in best.iterrows():
        at = runs[(runs.problem == prob) & (runs.optimizer == opt) & (runs.lr == b["lr"])]
        for _, r in at.iterrows():
            v = r.get(col, math.nan)
            cost[(opt, prob, r["seed"])] = v if isinstance(v, float) and math.isfinite(v) else math.inf
    opts = sorted({k[0] for k in cost})
    instances = sorted({k[1:] for k in cost})
    ratios = {o: [] for o in opts}
    for inst in instances:
        c = {o: cost.get((o, *inst), math.inf) for o in opts}
        m = min(c.values())
        if not math.isfinite(m):
            continue
        for o in opts:
            ratios[o].append(c[o] / max(m, 1.0) if m > 0 else (1.0 if c[o] == 0 else c[o]))
    return {o: np.array([np.mean(np.array(r) <= t) if r else 0.0 for t in taus]) for o, r in ratios.items()}


def outcome_shares(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, optimizer, lr): share of runs ending at a global minimum, a local one, none, or diverged."""
    df = runs.copy()
    glob = df.get("metrics.global_min_reached", pd.Series(np.nan, index=df.index)).fillna(0) > 0
    basin = df.get("tags.basin", pd.Series("none", index=df.index)).fillna("none")
    df["outcome"] = np.where(df["diverged"], "diverged", np.where(glob, "global", np.where(basin != "none", "local", "none")))
    out = df.groupby(["problem", "optimizer", "lr"])["outcome"].value_counts(normalize=True).unstack(fill_value=0.0)
    for c in ("global", "local", "none", "diverged"):
        if c not in out:
            out[c] = 0.0
    return out[["global", "local", "none", "diverged"]].reset_index()


def divergence_edges(runs: pd.DataFrame) -> list[tuple[str, str, float, int, int]]:
    """(problem, optimizer, lr0, diverged, runs): from lr0 upward every run diverged (lr0 the smallest such)."""
    out = []
    for (prob, opt), g in runs.groupby(["problem", "optimizer"]):
        by_lr = g.groupby("lr")["diverged"].agg(["sum", "size"]).sort_index()
        all_div = (by_lr["sum"] == by_lr["size"]).to_numpy()
        if not all_div[-1]:
            continue
        k = len(all_div) - 1
        while k > 0 and all_div[k - 1]:
            k -= 1
        lrs = by_lr.index[k:]
        out.append((prob, opt, float(by_lr.index[k]), int(by_lr["sum"][lrs].sum()), int(by_lr["size"][lrs].sum())))
    return out


def findings(runs: pd.DataFrame, summ: pd.DataFrame, target: float) -> list[str]:
    """Plain-language findings; every number comes from the runs."""
    lines = []
    for prob, s in summ.groupby("problem"):
        fin = s[np.isfinite(s["median"])]
        if fin.empty:
            lines.append(f"On {prob}, every optimizer diverged at every learning rate tried.")
            continue
        reached = s[s["reached"] > 0].sort_values("steps_to_target")
        if len(reached) >= 1:
            w = reached.iloc[0]
            text = (f"On {prob}, {w.optimizer} at lr={w.best_lr:.3g} reached f - f* <= {target:.0e} in a median "
                    f"{w.steps_to_target:.0f} steps ({w.reached}/{w.seeds} seeds)")
            if len(reached) >= 2:
                r = reached.iloc[1]
                text += f", {r.steps_to_target / max(w.steps_to_target, 1):.1f}x sooner than {r.optimizer} at lr={r.best_lr:.3g}"
            never = s[s["reached"] == 0]["optimizer"].tolist()
            if never:
                text += f"; {', '.join(never)} did not reach it at {'its' if len(never) == 1 else 'their'} best lr"
            lines.append(text + ".")
        else:
            b = fin.sort_values("median").iloc[0]
            lines.append(f"On {prob}, no optimizer reached {target:.0e}; the lowest median final value was {b['median']:.3g} ({b.optimizer}, lr={b.best_lr:.3g}).")
        rob = fin.sort_values("robust_decades", ascending=False).iloc[0]
        lines.append(f"On {prob}, {rob.optimizer} was the most robust: within {FACTOR:g}x of its best over {rob.robust_decades:.1f} decades of lr.")
        if s["global_share"].notna().any():
            parts = [f"{r.optimizer} {r.global_share * r.seeds:.0f}/{r.seeds}" for r in s.itertuples() if not math.isnan(r.global_share)]
            lines.append(f"On {prob}, runs at the best lr that ended in a global minimum: {', '.join(parts)}.")
    for prob, opt, lr0, d, n in divergence_edges(runs):
        lines.append(f"On {prob}, {opt} diverged at lr >= {lr0:.3g} in {d}/{n} runs.")
    return lines
