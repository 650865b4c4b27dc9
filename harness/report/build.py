"""Assemble report.md: set-up, findings, summary tables and the figures, per problem."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

from harness.report import analysis, figures
from harness.report.data import Sweep, curves


def _fmt(v, spec=".3g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "diverged"
    return format(v, spec)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _setup(sweep: Sweep) -> str:
    r = sweep.runs
    tags = sweep.parent.data.tags if sweep.parent is not None else r.filter(like="tags.harness.").iloc[0].rename(lambda k: k[5:]).to_dict()
    lrs = sorted(r["lr"].unique())
    seeds = sorted(r["seed"].unique())
    stop = {k[len("params.stop."):]: v for k, v in r.iloc[0].items() if k.startswith("params.stop.") and isinstance(v, str)}
    rules = ", ".join(f"{k}={v}" for k, v in stop.items() if v not in ("None", "null")) or "none"
    rows = []
    for prob, g in r.groupby("problem"):
        pp = {k[len("params.problem."):]: v for k, v in g.iloc[0].items() if k.startswith("params.problem.") and isinstance(v, str) and not k.endswith(("_target_", ".name"))}
        rows.append(["problem", prob, ", ".join(f"{k}={v}" for k, v in pp.items())])
    for opt, g in r.groupby("optimizer"):
        op = {k[len("params.optimizer."):]: v for k, v in g.iloc[0].items() if k.startswith("params.optimizer.") and isinstance(v, str) and not k.endswith((".name", ".lr"))}
        rows.append(["optimizer", opt, ", ".join(f"{k}={v}" for k, v in op.items())])
    rows += [
        ["learning rates", f"{len(lrs)}", ", ".join(f"{v:.3g}" for v in lrs)],
        ["seeds", f"{len(seeds)}", ", ".join(map(str, seeds)) if len(seeds) <= 20 else f"{seeds[0]} … {seeds[-1]}"],
        ["steps (max)", ", ".join(sorted(r["params.steps"].unique())), f"stopping rules: {rules}; dtype {r['params.dtype'].iloc[0]}"],
        ["runs", str(len(r)), f"{int(r['diverged'].sum())} diverged"],
        ["versions", "", tags.get("harness.versions", "not recorded")],
        ["git commit", "", tags.get("harness.git_commit", "not recorded")],
    ]
    cmd = tags.get("harness.command", "not recorded")
    return _table(["", "", "details"], rows) + f"\n\nReproduce with:\n\n```\n{cmd}\n```\n"


def _summary_table(summ: pd.DataFrame, target: float) -> str:
    rows = []
    for s in summ.itertuples():
        rows.append([
            s.problem, s.optimizer, _fmt(s.best_lr), _fmt(s.median), f"{_fmt(s.q25)} – {_fmt(s.q75)}",
            _fmt(s.steps_to_target, ".0f") + (f" ({s.reached}/{s.seeds})" if s.reached < s.seeds else ""),
            f"{s.diverged}/{s.runs}", _fmt(s.robust_decades, ".1f"),
            "–" if math.isnan(s.global_share) else f"{s.global_share:.0%}",
        ])
    return _table(["problem", "optimizer", "best lr", "median final", "IQR", f"steps to {target:.0e}", "diverged (all lrs)",
                   f"robustness (decades within {analysis.FACTOR:g}x)", "global min (best lr)"], rows)


def _ranking(summ: pd.DataFrame) -> str:
    ranks = summ.assign(rank=summ.groupby("problem")["median"].rank(method="min"))
    mean = ranks.groupby("optimizer")["rank"].agg(["mean", "count"]).sort_values("mean")
    return _table(["optimizer", "mean rank of median final value (1 = best)", "problems"],
                  [[o, f"{m['mean']:.2f}", str(int(m['count']))] for o, m in mean.iterrows()])


def _quadratic_theory(runs: pd.DataFrame) -> str:
    """GD on the quadratic: predicted rate max(|1 - lr mu|, |1 - lr L|)^2 of f - f* against the measured one."""
    g = runs[(runs.problem == "quadratic") & (runs.optimizer == "gd")]
    if g.empty or "metrics.linear_rate" not in g:
        return ""
    mu, L = float(g["params.problem.mu"].iloc[0]), float(g["params.problem.L"].iloc[0])
    rows = []
    for lr, s in g.groupby("lr"):
        pred = max(abs(1 - lr * mu), abs(1 - lr * L)) ** 2
        meas = s["metrics.linear_rate"].median()
        rows.append([_fmt(lr), _fmt(pred, ".6f") + (" (unstable)" if pred >= 1 else ""), _fmt(meas, ".6f"), f"{int(s['diverged'].sum())}/{len(s)}"])
    return (f"\nGD on the quadratic (mu={mu:g}, L={L:g}): stable for lr < 2/L = {2 / L:.4g}; fastest at 2/(L+mu) = {2 / (L + mu):.4g}, where f - f* "
            f"contracts by ((L-mu)/(L+mu))^2 = {((L - mu) / (L + mu)) ** 2:.6f} per step.\n\n") + _table(
        ["lr", "predicted rate of f - f*", "measured (median linear_rate)", "diverged"], rows) + "\n"


HOW_TO_READ = """\
- **Final value** is f(x) − f* at the last step (the final loss where f* is unknown); lower is better.
  A run is **diverged** when its loss became non-finite or exploded; diverged runs count as +∞ and are
  always shown (× markers at the top of the sensitivity plots), never dropped.
- **Best lr** of an optimizer on a problem is the learning rate with the lowest median final value over seeds.
  Loss curves show each optimizer at its best lr: the line is the median over seeds, the band the
  inter-quartile range.
- **Robustness** is the width, in decades, of the contiguous range of learning rates around the best one whose
  median final value is within {factor:g}× of the best (any value ≤ {solved:g} counts as within). Wider is more forgiving.
- **Steps to target** is the first step at which f − f* ≤ {target:.0e}, median over the seeds that reached it.
- The **performance profile** (Dolan–Moré) shows, for each optimizer, the share of (problem, seed) instances
  it solved to the target within τ× the steps of the fastest optimizer on that instance; higher and further
  left is better. The value at τ = 1 is the share of instances on which it was the fastest.
- **Where runs ended** (multi-minimum problems): the share of runs ending within 0.01 of a global minimum, a
  local minimum, no listed minimum, or diverged.
"""


_JOBS: list = []  # figure jobs, read by forked workers (see render)


def _draw(i: int):
    key, fn, args = _JOBS[i]
    return key, fn(*args)


def render(sweep: Sweep, runs: pd.DataFrame, best: pd.DataFrame, shares: pd.DataFrame, target: float, col: dict, out: Path) -> dict:
    """Draw every figure; returns {key: file name or None}. Curves are fetched in the parent first
    (one query), then figures are drawn by two forked workers, which touch no store."""
    import multiprocessing as mp

    jobs = [("profile", figures.profile, (runs, target, col, out))]
    for prob in sorted(runs["problem"].unique()):
        g = runs[runs.problem == prob]
        key = "suboptimality" if bool(g["has_fstar"].all()) else "loss"
        ids = [rid for opt in best.loc[prob].index for rid in g[(g.optimizer == opt) & (g.lr == best.loc[(prob, opt), "lr"])]["run_id"]]
        curves(sweep, ids, (key,))  # prefetch into the cache
        jobs += [(("curves", prob), figures.loss_curves, (sweep, prob, best, col, out)),
                 (("lr", prob), figures.lr_sensitivity, (sweep, prob, target, col, out)),
                 (("trajectories", prob), figures.trajectories, (sweep, prob, best, col, out))]
        if "tags.basin" in g and g["tags.basin"].notna().any():
            jobs.append((("minima", prob), figures.outcomes, (shares, prob, out)))
    _JOBS[:] = jobs
    try:
        if len(jobs) > 2 and "fork" in mp.get_all_start_methods():
            with mp.get_context("fork").Pool(2) as pool:
                return dict(pool.map(_draw, range(len(jobs))))
        return dict(_draw(i) for i in range(len(jobs)))
    finally:
        _JOBS.clear()


def build(sweep: Sweep, out: Path, name: str, target: float) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    runs = sweep.runs
    col = figures.colours(runs["optimizer"].unique())
    best = analysis.best_lrs(runs, target)
    summ = analysis.summary(runs, target)
    shares = analysis.outcome_shares(runs)
    import os

    shown_uri = sweep.uri.replace("sqlite:///" + os.getcwd() + "/", "sqlite:///")
    src = f"sweep `{sweep.parent.info.run_id}` ({sweep.parent.info.run_name})" if sweep.parent is not None else "the runs matching the filter"
    md = [f"# Optimizer report: {name}", "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M')} from {src} in experiment `{sweep.experiment}` of `{shown_uri}`: "
          f"{len(runs)} finished runs, {runs['problem'].nunique()} problem(s), {runs['optimizer'].nunique()} optimizer(s)."]
    if sweep.in_progress or sweep.unfinished:
        md += ["", f"> **Partial results:** {'the sweep is still running; ' if sweep.in_progress else ''}"
                   f"{sweep.unfinished} run(s) not finished are left out. Regenerate the report when it completes."]
    md += ["", "## Findings", ""] + [f"- {f}" for f in analysis.findings(runs, summ, target)]
    md += ["", "## Set-up", "", _setup(sweep), "## Summary", "", _summary_table(summ, target), ""]
    if runs["problem"].nunique() > 1 and runs["optimizer"].nunique() > 1:
        md += ["### Ranking across problems", "", _ranking(summ), ""]
    figs = render(sweep, runs, best, shares, target, col, out)
    if figs.get("profile"):
        md += [f"![performance profile]({figs['profile']})", ""]
    for prob in sorted(runs["problem"].unique()):
        md += [f"## {prob}", "", "### Loss curves at each optimizer's best learning rate", "",
               f"![loss curves on {prob}]({figs['curves', prob]})", "",
               "### Learning-rate sensitivity", "", f"![lr sensitivity on {prob}]({figs['lr', prob]})", ""]
        if prob == "quadratic":
            md += [_quadratic_theory(runs)]
        g = runs[runs.problem == prob]
        if figs.get(("minima", prob)):
            md += ["### Where runs ended", "", f"![outcomes on {prob}]({figs['minima', prob]})", ""]
        if figs.get(("trajectories", prob)):
            md += ["### Trajectories", "", f"![trajectories on {prob}]({figs['trajectories', prob]})", ""]
        spread = g[~g["diverged"]].groupby("optimizer")["final"].agg(["min", "median", "max"])
        md += ["Spread of final values across all non-diverged runs:", "",
               _table(["optimizer", "min", "median", "max"], [[o, _fmt(s["min"]), _fmt(s["median"]), _fmt(s["max"])] for o, s in spread.iterrows()]), ""]
    md += ["## How to read this report", "", HOW_TO_READ.format(factor=analysis.FACTOR, solved=analysis.SOLVED, target=target)]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path
