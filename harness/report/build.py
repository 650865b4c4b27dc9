"""Assemble report.md: banner, findings, summary, set-up, then figures and tables per problem.

Every number comes from :mod:`harness.analysis`; the summary table starts with exactly the cells
the sweep's closing summary prints (:func:`harness.summary.rows`).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import pandas as pd

from harness import analysis, summary
from harness import formatting as fmt
from harness.report import figures
from harness.store import RunSet


def table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(esc, r)) + " |" for r in rows])


def _values(series: pd.Series) -> str:
    """Distinct param values, numbers sorted as numbers."""
    vals = sorted({analysis.canonical(v) for v in series.dropna()}, key=analysis._sortable)
    return ", ".join(vals) if vals else "–"


def _settings(g: pd.DataFrame, prefix: str, skip=("name", "_target_", "lr")) -> str:
    cols = sorted(c for c in g.columns if c.startswith(prefix) and c[len(prefix) :] not in skip and g[c].notna().any())
    parts = []
    for c in cols:
        key = c[len(prefix) :]
        v = _values(g[c])
        if key == "x0" and v == "None":
            v = "random in box, from the seed"
        parts.append(f"{key}={v}")
    return "; ".join(parts) or "–"


def banner(rs: RunSet, n: int) -> list[str]:
    """A notice when the runs shown are not the whole sweep."""
    if not rs.sweep:
        return []
    info = rs.parents[rs.sweep]
    expected = int(info["tags"].get("harness.runs", n))
    if n >= expected and info["status"] == "FINISHED":
        return []
    why = {"RUNNING": "the sweep is still running", "KILLED": "the sweep was stopped", "FAILED": "the sweep failed"}.get(info["status"], f"status {info['status']}")
    extra = f" ({rs.unfinished} unfinished runs left out)" if rs.unfinished else ""
    return [f"> **Partial sweep: {n} of {expected} runs finished** ({why}){extra}. Numbers below cover only these runs.", ""]


def setup(rs: RunSet, df: pd.DataFrame) -> str:
    rows = []
    for prob in analysis.problems(df):
        rows.append(["problem", prob, _settings(df[df.problem == prob], "params.problem.")])
    for cfg in analysis.configs(df):
        g = df[df.config == cfg]
        target = _values(g["params.optimizer._target_"]) if "params.optimizer._target_" in g else "–"
        sched = ""
        if "params.schedule.name" in g and g["params.schedule.name"].notna().any():
            sched = f"; schedule {_values(g['params.schedule.name'])}"
            more = _settings(g, "params.schedule.", skip=("name",))
            sched += f" ({more})" if more != "–" else ""
        rows.append(["configuration", cfg, f"{target}: {_settings(g, 'params.optimizer.')}{sched}"])
    lrs = sorted(df["lr"].unique())
    seeds = sorted(df["seed"].unique())
    rows += [
        ["learning rates", str(len(lrs)), ", ".join(fmt.lr(v) for v in lrs)],
        ["seeds", str(len(seeds)), ", ".join(map(str, seeds)) if len(seeds) <= 24 else f"{seeds[0]} … {seeds[-1]}"],
        ["steps (max)", _values(df["params.steps"]), f"dtype {_values(df['params.dtype'])}; batch_size {_values(df['params.batch_size']) if 'params.batch_size' in df else '–'}"],
        ["stopping rules", "", _settings(df, "params.stop.", skip=()).replace("None", "off")],
        ["targets logged", "", _settings(df, "params.stats.", skip=())],
        ["runs", str(len(df)), f"{int(df['diverged'].sum())} diverged"],
    ]
    sweeps = {pid: p for pid, p in rs.parents.items() if p["tags"].get("harness.sweep") == "true"}
    in_df = set(df["tags.mlflow.parentRunId"].dropna()) if "tags.mlflow.parentRunId" in df else set()
    sweeps = {pid: p for pid, p in sweeps.items() if pid in in_df}
    singles = df[df["tags.mlflow.parentRunId"].isna()] if "tags.mlflow.parentRunId" in df else df
    tag = lambda k: sorted({p["tags"].get(k, "not recorded") for p in sweeps.values()} | set(singles.get(f"tags.{k}", pd.Series(dtype=str)).dropna()))  # noqa: E731
    rows += [["versions", "", "; ".join(tag("harness.versions")) or "not recorded"],
             ["git commit", "", ", ".join(tag("harness.git_commit")) or "not recorded"]]
    out = table(["", "", "details"], rows)
    src = []
    if rs.filter:
        out += (f"\n\nThe runs match the filter `{rs.filter}`: {len(df) - len(singles)} runs from {len(sweeps)} sweep(s) and "
                f"{len(singles)} single run(s). Runs are grouped by problem and configuration, never pooled across them.")
    for pid, p in sorted(sweeps.items(), key=lambda kv: kv[1]["start_time"]):
        src.append(f"# sweep {pid} ({p['name']})\n{p['tags'].get('harness.command', 'command not recorded')}")
    for cmd in sorted(set(singles.get("tags.harness.command", pd.Series(dtype=str)).dropna())):
        src.append(f"# single run\n{cmd}")
    return out + "\n\nReproduce with:\n\n```\n" + "\n".join(src) + "\n```\n"


def summary_table(bests: pd.DataFrame, target: float) -> str:
    head = summary.columns(target) + [f"95% interval (steps to {target:.0e})", "IQR", f"robustness (decades within {analysis.FACTOR:g}x)"]
    extra = [c for c in ("test_accuracy", "test_loss") if c in bests and bests[c].notna().any()]
    head += [f"{c.replace('_', ' ')} (median)" for c in extra]
    body = []
    for cells, r in zip(summary.rows(bests, target), bests.itertuples()):
        iqr = f"{fmt.value(r.q25, r.fstar)} – {fmt.value(r.q75, r.fstar)}" if r.seeds > 1 else "–"
        steps_ci = fmt.interval(r.steps_lo, r.steps_hi, fmt.steps) if r.fstar else "–"
        cells = cells + [steps_ci, iqr, f"{r.robust_decades:.1f}" if r.lrs > 1 else "–"]
        cells += [(f"{getattr(r, c):.3f}" if not math.isnan(getattr(r, c)) else "–") for c in extra]
        body.append(cells)
    return table(head, body)


def _rate(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.6f}"


def quadratic_theory(df: pd.DataFrame, prob: str) -> str:
    """GD on the quadratic: predicted rate max(|1 - lr mu|, |1 - lr L|)^2 of f - f* against the measured one."""
    g = df[(df.problem == prob) & (df.problem_name == "quadratic") & (df.optimizer == "gd")]
    if g.empty or "metrics.linear_rate" not in g or g["params.problem.mu"].nunique() != 1 or g["params.problem.L"].nunique() != 1:
        return ""
    mu, L = float(g["params.problem.mu"].iloc[0]), float(g["params.problem.L"].iloc[0])
    rows = []
    for (cfg, lr), s in g.groupby(["config", "lr"]):
        pred = max(abs(1 - lr * mu), abs(1 - lr * L)) ** 2
        rows.append([cfg, fmt.lr(lr), f"{pred:.6f}" + (" (unstable)" if pred >= 1 else ""), _rate(s["metrics.linear_rate"].median()), f"{int(s['diverged'].sum())}/{len(s)}"])
    return (f"GD on the quadratic (mu={mu:g}, L={L:g}): stable for lr < 2/L = {2 / L:.4g}; fastest at 2/(L+mu) = {2 / (L + mu):.4g}, "
            f"where f - f* contracts by ((L-mu)/(L+mu))^2 = {((L - mu) / (L + mu)) ** 2:.6f} per step.\n\n"
            + table(["configuration", "lr", "predicted rate of f - f*", "measured (median linear_rate)", "diverged"], rows) + "\n")


HOW_TO_READ = """\
- **Problem and configuration.** A configuration is everything that varies among these runs except the
  learning rate and the seed: an optimizer hyperparameter, its class, `batch_size`, `steps`, `dtype`,
  stopping rules. A varying problem parameter or start point makes a separate problem. Each is named by
  what differs, e.g. `momentum (momentum=0.99)`; runs of different configurations are never pooled.
- **Final value** is f(x) − f* at the last step (the final training loss where f* is unknown); lower is
  better. `= f*` means the run ended exactly at f*. A run is **diverged** when its loss became
  non-finite or exploded; it counts as +∞ and is always shown (× at the top of the sensitivity plots).
- **Best lr** of a configuration on a problem: (1) only lrs at which no seed diverged are candidates,
  unless every lr had a divergence; (2) on problems with several listed minima, the higher share of runs
  ending at a global minimum wins; (3) then the lower median final value, where medians ≤ {solved:g}
  count as equal and medians equal to {digits} significant digits tie; (4) then fewer median steps to
  the target (a seed that never reached it counts as never); (5) then the larger lr. Configurations are
  ranked within a problem by the same rule at their best lrs; the summary lists them in that order.
- **95% interval**: a percentile bootstrap over seeds ({boot} resamples, fixed seed: the same runs give
  the same interval) of the median final value and of the median steps to target. A finding compares
  two configurations only where their intervals do not overlap; otherwise it says they are
  indistinguishable on that many seeds. One seed gives no interval.
- **Steps to target**: the first step with f − f* ≤ {target:.0e}, median over all seeds at the best lr
  (`never` when most seeds did not reach it; the count of seeds that did is in brackets).
- **Robustness**: the width, in decades, of the contiguous range of learning rates around the best one
  whose median final value is within {factor:g}× of the best (any value ≤ {solved:g} counts as within).
- **Runtime distribution** (COCO-style ECDF): for each configuration at its best lr, the share of
  (seed, target) pairs, over every logged target, reached by step t; the band is a 95% bootstrap over seeds.
- **Performance profile** (Dolan–Moré, when at least two configurations ran on every problem with f*):
  the share of (problem, seed) instances a configuration solved to the target within τ× the steps of the
  fastest one on that instance.
- **Where runs ended** (problems with several listed minima): the share of runs ending within
  `stats.basin_tol` of a global minimum, of a local minimum, of no listed minimum, or diverged.
"""

_JOBS: list = []  # figure jobs, read by forked workers (see render)


def _draw(i: int):
    key, fn, args = _JOBS[i]
    return key, fn(*args)


def render(rs: RunSet, df: pd.DataFrame, bests: pd.DataFrame, target: float, out: Path) -> dict:
    """Draw every figure; returns {key: file name or None}. Curves are read in the parent first (one
    query), then figures are drawn by two forked workers, which touch no store."""
    order = analysis.configs(df)
    col = figures.colours(order)
    shares = analysis.outcome_shares(df)
    jobs = [("profile", figures.profile, (df, bests, target, col, out))]
    for prob in analysis.problems(df):
        g = df[df.problem == prob]
        key = "suboptimality" if bool(g["has_fstar"].all()) else "loss"
        ids = [rid for r in bests[bests.problem == prob].itertuples() for rid in g[(g.config == r.config) & (g.lr == r.best_lr)]["run_id"]]
        tests = tuple(k for k in ("test_loss", "test_accuracy") if f"metrics.final_{k}" in g and g[f"metrics.final_{k}"].notna().any())
        figures.read_curves(rs, ids, (key, *tests))  # prefetch into the cache
        jobs += [(("curves", prob), figures.loss_curves, (rs, df, bests, prob, col, out, prob)),
                 (("lr", prob), figures.lr_sensitivity, (df, prob, target, col, order, out, prob)),
                 (("ecdf", prob), figures.runtime_distribution, (df, bests, prob, col, out, prob)),
                 (("trajectories", prob), figures.trajectories, (rs, df, bests, prob, col, out, prob))]
        if g["global"].notna().all() and "tags.basin" in g:
            jobs.append((("minima", prob), figures.outcomes, (shares, prob, order, out, prob)))
    _JOBS[:] = jobs
    try:
        if len(jobs) > 2 and _single_threaded():
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            try:
                with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
                    return dict(pool.map(_draw, range(len(jobs))))
            except BrokenProcessPool:  # a worker died: draw here instead
                pass
        return dict(_draw(i) for i in range(len(jobs)))
    finally:
        _JOBS.clear()


def _single_threaded() -> bool:
    """Forking is safe only without other threads (a lock held at fork time, e.g. OpenMP's, hangs the
    child), native ones included: Linux lists them in /proc/self/task."""
    if "fork" not in mp.get_all_start_methods() or threading.active_count() > 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def build(rs: RunSet, out: Path, name: str, target: float) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    df = analysis.prepare(rs.runs)
    bests = analysis.best(df, target)
    shown_uri = rs.uri.replace("sqlite:///" + os.getcwd() + "/", "sqlite:///")
    if rs.sweep:
        src = f"sweep `{rs.sweep}` ({rs.parents[rs.sweep]['name']})"
    else:
        src = f"the runs matching `{rs.filter}`"
    md = [f"# Optimizer report: {name}", "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M')} from {src} in experiment `{rs.experiment}` of `{shown_uri}`: "
          f"{len(df)} finished runs, {df['problem'].nunique()} problem(s), {df['config'].nunique()} configuration(s).", ""]
    md += banner(rs, len(df))
    md += ["## Findings", ""] + [f"- {f}" for f in analysis.findings(df, bests, target)]
    md += ["", "## Summary", "", "Per problem, configurations ranked best first (see *How to read*).", "", summary_table(bests, target), ""]
    figs = render(rs, df, bests, target, out)
    if figs.get("profile"):
        md += ["### Across problems", "", f"![performance profile]({figs['profile']})", ""]
    md += ["## Set-up", "", setup(rs, df)]
    for prob in analysis.problems(df):
        g = df[df.problem == prob]
        alt = prob.replace("[", "\\[").replace("]", "\\]")
        md += [f"## {prob}", "", "### Loss curves at each configuration's best learning rate", "", f"![loss curves on {alt}]({figs['curves', prob]})", "",
               "### Learning-rate sensitivity", "", f"![lr sensitivity on {alt}]({figs['lr', prob]})", ""]
        theory = quadratic_theory(df, prob)
        if theory:
            md += [theory]
        if figs.get(("ecdf", prob)):
            md += ["### Runtime distribution", "", f"![runtime distribution on {alt}]({figs['ecdf', prob]})", ""]
        if figs.get(("minima", prob)):
            md += ["### Where runs ended", "", f"![outcomes on {alt}]({figs['minima', prob]})", ""]
        if figs.get(("trajectories", prob)):
            md += ["### Trajectories", "", f"![trajectories on {alt}]({figs['trajectories', prob]})", ""]
        ok = g[~g["diverged"]]
        fstar = bool(g["has_fstar"].all())
        rows = [[c, fmt.value(s.min(), fstar), fmt.value(s.median(), fstar), fmt.value(s.max(), fstar)]
                for c in analysis.configs(g) if len(s := ok[ok.config == c]["final"])]
        if rows:
            md += ["Spread of final values across all non-diverged runs (every lr and seed):", "", table(["configuration", "min", "median", "max"], rows), ""]
    md += ["## How to read this report", "",
           HOW_TO_READ.format(factor=analysis.FACTOR, solved=analysis.SOLVED, digits=analysis.DIGITS, boot=analysis.BOOTSTRAP, target=target)]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path
