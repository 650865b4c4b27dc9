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

from harness import analysis, landscape, stability, summary, theory, tuning
from harness import formatting as fmt
from harness.findings import findings
from harness.protocol import MIN_SPLIT
from harness.report import figures, stability_figure
from harness.store import RunSet, shown_uri


def table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(esc, r)) + " |" for r in rows])


def _values(series: pd.Series) -> str:
    """Distinct param values, numbers sorted as numbers."""
    vals = sorted({analysis.canonical(v) for v in series.dropna().unique()}, key=analysis._sortable)
    return ", ".join(vals) if vals else "–"


def _settings(g: pd.DataFrame, prefix: str, skip=("name", "_target_", "lr")) -> str:
    cols = sorted(c for c in g.columns if c.startswith(prefix) and c[len(prefix) :] not in skip and g[c].notna().any())
    parts = []
    for c in cols:
        key = c[len(prefix) :]
        v = _values(g[c])
        if key == "x0" and v == "None":
            has_box = "params.problem.box" in g and g["params.problem.box"].notna().any()
            v = "random in box, from the seed" if has_box else "the problem's own initialisation, from the seed"
        parts.append(f"{key}={v}")
    return "; ".join(parts) or "–"


def _batch_sizes(df: pd.DataFrame) -> str:
    """``; batch_size full, 32`` where data problems ran (null: the full batch); nothing for analytic problems."""
    sizes = df["params.batch_size"] if "params.batch_size" in df else pd.Series(dtype=object)
    data = "metrics.epochs" in df and df["metrics.epochs"].notna().any()
    if not data and not (sizes.notna() & (sizes != "None")).any():
        return ""
    return "; batch_size " + _values(sizes.fillna("None")).replace("None", "full")


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
        ["steps (max)", _values(df["params.steps"]), f"dtype {_values(df['params.dtype'])}{_batch_sizes(df)}"],
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


def summary_table(a: analysis.Analysis) -> str:
    bests, target = a.bests, a.target
    head = summary.columns(target) + ["IQM interval (level)", "interval of the cost (level)", "IQR", f"robustness (decades within {analysis.FACTOR:g}x)"]
    more, more_cells = summary.metric_columns(bests)  # every declared per-run metric the runs carry (harness/metrics.py)
    head += more
    body = []
    for cells, r, extra in zip(summary.rows(bests, target), bests.itertuples(), more_cells):
        val = lambda v, f=r.fstar: fmt.value(v, f)  # noqa: E731
        iqr = f"{val(r.q25)} – {val(r.q75)}" if r.seeds > 1 else "–"
        cost_ci = fmt.interval(r.steps_lo, r.steps_hi, fmt.steps, r.steps_level) if r.fstar else "–"
        rob = f"{r.robust_decades:.1f}" if r.lrs > 1 and not math.isnan(r.robust_decades) else "–"
        cells = cells + [fmt.interval(r.iqm_lo, r.iqm_hi, val, r.iqm_level), cost_ci, iqr, rob]
        body.append(cells + extra)
    return table(head, body)


def protocol_section(a: analysis.Analysis) -> list[str]:
    """What this report counted, on which seeds it chose and reported, and what it set aside."""
    p = a.protocol
    lines = [summary.protocol_line(a).replace("\n", "  \n"), ""]
    if p.duplicates:
        lines.append(f"{p.duplicates} run(s) repeated a (problem, configuration, lr, seed) already counted (overlapping sweeps); "
                     "the newest of each was kept.")
    for what, n in sorted(p.older_code.items()):
        lines.append(f"{n} run(s) of {what} ran older code (tag `harness.code_hash`) than the newest runs of it and were set aside; "
                     "`--filter` on `tags.harness.code_hash` selects them.")
    if any(p.shared(prob) for prob in p.tune_seeds):
        lines.append(f"Where all seeds tune and report (fewer than {MIN_SPLIT} seeds), the numbers at the best lr are optimistic: "
                     "the lr was chosen on the very seeds reported.")
    return lines + [""]


def _rate(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.6f}"


def quadratic_theory(df: pd.DataFrame, prob: str) -> str:
    """On the quadratic: GD's predicted rate max(|1 - lr mu|, |1 - lr L|)^2 of f - f* against the measured
    one, and each configuration's stability edge (harness/theory.py) against where its runs diverged."""
    g = df[df.problem == prob]
    consts, edges = theory.quadratic_constants(g), theory.edges(df, prob)
    if consts is None or not edges:
        return ""
    mu, L = consts
    out = []
    gd = g[g.config.isin([c for c, e in edges.items() if e.kind == "gd"])]
    if len(gd) and "metrics.linear_rate" in gd:
        rows = []
        for (cfg, lr), s in gd.groupby(["config", "lr"]):
            pred = max(abs(1 - lr * mu), abs(1 - lr * L)) ** 2
            rows.append([cfg, fmt.lr(lr), f"{pred:.6f}" + (" (unstable)" if pred >= 1 else ""), _rate(s["metrics.linear_rate"].median()), f"{int(s['diverged'].sum())}/{len(s)}"])
        out.append(f"GD on the quadratic (mu={mu:g}, L={L:g}): stable for lr < 2/L = {2 / L:.4g}; fastest at 2/(L+mu) = {2 / (L + mu):.4g}, "
                   f"where f - f* contracts by ((L-mu)/(L+mu))^2 = {((L - mu) / (L + mu)) ** 2:.6f} per step.\n\n"
                   + table(["configuration", "lr", "predicted rate of f - f*", "measured (median linear_rate)", "diverged"], rows) + "\n")
    rows = []
    for cfg in analysis.configs(g):
        if cfg in edges:
            e = edges[cfg]
            below, above, div_below, div_above = theory.divergence_by_edge(g[g.config == cfg], e)
            rows.append([cfg, f"{e.lr:.4g} ({e.formula})", fmt.lr(below) if below == below else "–", fmt.lr(above) if above == above else "–", div_below, div_above])
    out.append("Stability edges (each configuration's own, from its hyperparameters) against the runs: theory says every run below "
               "the edge stays bounded and the iterates grow at every lr above it.\n\n"
               + table(["configuration", "edge (formula)", "largest lr below", "smallest lr at or above", "diverged below", "diverged at or above"], rows) + "\n")
    return "\n".join(out)


HOW_TO_READ = """\
- **The protocol, in short.** Each (problem, configuration, lr, seed) counts once (the newest run; runs
  of older code are set aside, never pooled). Each configuration's best lr is chosen on the *tuning*
  seeds and every number at it comes from the other, *reporting* seeds (by default the lower half of a
  problem's seeds choose, the upper half report; with fewer than {min_split} seeds all do both, and the
  report says so). Cost is counted in steps, or in gradient evaluations where configurations differ in
  evaluations per step (L-BFGS's line search), or in examples where they differ in batch size.
  `python -m harness.report --tune-seeds N --select METRIC` changes the split and the selection metric.
- **Problem and configuration.** A configuration is everything that varies among these runs except the
  learning rate and the seed: an optimizer hyperparameter, its class, `batch_size`, `steps`, `dtype`,
  stopping rules. A varying problem parameter or start point makes a separate problem. Each is named by
  what differs, e.g. `momentum (momentum=0.99)`; runs of different configurations are never pooled.
- **Final value** is f(x) − f* at the last step (the final training loss where f* is unknown); lower is
  better. `= f*` means the run ended exactly at f*. A run is **diverged** when its loss became
  non-finite or exploded; it counts as +∞ and is always shown (× at the top of the sensitivity plots).
- **Selection metric**: the final value where f* is known; the final validation loss where the runs
  logged held-out metrics and f* is unknown (the CNN), whose test metrics are then reported beside it.
- **Best lr** of a configuration on a problem, on the tuning seeds: (1) only lrs at which no seed
  diverged are candidates, unless every lr had a divergence; (2) on problems with several listed minima,
  the higher share of runs ending at a global minimum wins; (3) then the lower median selection metric,
  where medians ≤ {solved:g} count as equal and medians equal to {digits} significant digits tie; (4) then
  the lower median cost to the target (never reached counts as never); (5) then the larger lr.
  Configurations are ranked within a problem by the same rule on the reporting seeds at their best lrs.
- **Intervals** hold at the level printed beside them, for any distribution of results: the interval of
  a median is [x(k), x(n−k+1)] of the sorted reporting seeds, with the largest k whose binomial
  coverage is ≥ 95%; with too few seeds it is [min, max] at the level that reaches (3 seeds: 75%,
  5 seeds: 94%). The IQM (interquartile mean, robust to outlying seeds) has an order-statistic interval
  with a guaranteed level (conservative). Shares of runs have exact (Clopper–Pearson) 95% intervals.
- **Comparisons** are paired: on each problem the first-ranked configuration meets every other on the
  reporting seeds both ran, each at its own best lr; a seed is won by reaching a global minimum, then
  by the lower cost to the target, then by the lower selection metric. A two-sided sign test gives p,
  Holm's correction runs over every comparison in the report, and "beat" means p < 0.05 after it;
  P(better) is the share of differing seeds won, with its exact 95% interval. Otherwise the findings
  call the two indistinguishable (with fewer than 6 seeds a sign test cannot reach 0.05).
- **Cost to target**: the cost of the first step with f − f* ≤ {target:.0e}, median over the reporting
  seeds (`never` when most did not reach it; the count that did is in brackets).
- **Robustness**: the width, in decades, of the contiguous range of learning rates around the best one
  whose median selection metric (tuning seeds) is within {factor:g}× of the best.
- **Time** is not compared: `batch_wall_time_s` is the time of the whole batch a run was part of.
- **Runtime distribution** (COCO-style ECDF): for each configuration at its best lr, the share of
  (reporting seed, target) pairs, over every logged target, reached within a cost.
- **Performance profile** (Dolan–Moré, when at least two configurations ran on every problem with f*):
  the share of (problem, reporting seed) instances a configuration solved to the target within τ× the
  cost of the cheapest one on that instance.
- **Where runs ended** (problems with several listed minima): the share of runs ending within
  `stats.basin_tol` of a global minimum, of a local minimum, of no listed minimum, or diverged.
"""

HOW_TO_READ_STABILITY = """\
- **Stability** (instruments on): a run's *edge ratio* is the median, over the last third of its
  measurements, of its sharpness λmax(H) (the preconditioned λmax(P⁻¹H) for Adam, AdamW, RMSprop and
  AdaGrad) divided by the stability threshold of its optimizer and lr (2/lr for GD; see the
  README). Cohen et al. (2021): at the edge of stability sharpness rises to the threshold and hovers there.
  Each lr is classed over every seed it ran (no lr is chosen here): **diverged** when more than half of
  its runs diverged; **at the edge** when the median edge ratio of its runs that did not diverge is
  ≥ {edge:g} (within 20% of the threshold, or above it), or when some of its runs diverged; **stable**
  otherwise. The minima table: per configuration, the median final sharpness λmax(H) of the runs (every
  lr and seed that did not diverge) that ended in each listed minimum; flattest and sharpest compare only
  the minima that configuration ended in.
"""

_JOBS: list = []  # figure jobs, read by forked workers (see render)


def _draw(i: int):
    key, fn, args = _JOBS[i]
    return key, fn(*args)


def render(rs: RunSet, a: analysis.Analysis, budget: pd.DataFrame, scaling: dict, stab: dict, out: Path) -> dict:
    """Draw every figure; returns {key: file name or None}. Curves are read in the parent first (one
    query), then figures are drawn by two forked workers, which touch no store."""
    df, bests, target, units = a.df, a.bests, a.target, a.protocol.unit
    order = analysis.configs(df)
    col = figures.colours(order)
    shares = analysis.outcome_shares(df)
    jobs = [("profile", figures.profile, (df, bests, target, units, col, out))]
    for prob in analysis.problems(df):
        g = df[df.problem == prob]
        ids = [rid for r in bests[bests.problem == prob].itertuples() for rid in analysis.at_best(df, prob, r.config, r.best_lr)["run_id"]]
        if len(stab[prob]):  # instruments measured sharpness: every run's curve is drawn
            ids += g["run_id"].tolist()
            jobs.append((("stability", prob), stability_figure.sharpness, (rs, df, stab[prob], prob, out, prob)))
        figures.curves_of(rs, ids)  # prefetch into the cache
        jobs += [(("curves", prob), figures.loss_curves, (rs, df, bests, prob, units[prob], col, out, prob)),
                 (("lr", prob), figures.lr_sensitivity, (df, prob, target, units[prob], col, order, out, prob, stab[prob] if len(stab[prob]) else None)),
                 (("tuning", prob), figures.tuning_budget, (budget, prob, col, order, out, prob)),
                 (("landscape", prob), figures.landscapes, (landscape.landscapes(df, prob), prob, bool(g["has_fstar"].all()), out, prob)),
                 (("batch", prob), figures.batch_scaling, (scaling[prob], prob, target, col, out, prob)),
                 (("ecdf", prob), figures.runtime_distribution, (df, bests, prob, units[prob], col, out, prob)),
                 (("trajectories", prob), figures.trajectories, (rs, df, bests, prob, col, out, prob))]
        if g["global"].notna().all() and "tags.basin" in g:
            jobs.append((("minima", prob), figures.outcomes, (shares, prob, order, out, prob)))
    _JOBS[:] = jobs
    try:
        if len(jobs) > 2 and _single_threaded():
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            try:
                with ProcessPoolExecutor(2, mp_context=mp.get_context("fork"), initializer=_leave_interrupts_to_the_parent) as pool:
                    return dict(pool.map(_draw, range(len(jobs))))
            except BrokenProcessPool:  # a worker died: draw here instead
                pass
        return dict(_draw(i) for i in range(len(jobs)))
    finally:
        _JOBS.clear()


def _leave_interrupts_to_the_parent() -> None:
    """Ctrl-C reaches every process of the terminal's group: the report's process answers it in one
    line; a drawing worker must not print a traceback of its own."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _single_threaded() -> bool:
    """Forking is safe only without other threads (a lock held at fork time, e.g. OpenMP's, hangs the
    child), native ones included: Linux lists them in /proc/self/task."""
    if "fork" not in mp.get_all_start_methods() or threading.active_count() > 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def build(rs: RunSet, out: Path, name: str, target: float, tune="half", select: str = "auto") -> Path:
    a = analysis.analyse(rs.runs, target, tune, select)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    df = a.df
    shown = shown_uri(rs.uri)
    if rs.sweep:
        src = f"sweep `{rs.sweep}` ({rs.parents[rs.sweep]['name']})"
    else:
        src = f"the runs matching `{rs.filter}`"
    md = [f"# Optimizer report: {name}", "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M')} from {src} in experiment `{rs.experiment}` of `{shown}`: "
          f"{len(df)} finished runs counted, {df['problem'].nunique()} problem(s), {df['config'].nunique()} configuration(s).", ""]
    md += banner(rs, len(df))
    md += ["## Findings", ""] + [f"- {f}" for f in findings(a)]
    md += ["", "## Summary", "", "Per problem, configurations ranked best first (see *How to read*).", "", summary_table(a), ""]
    md += protocol_section(a)
    budget = tuning.budget(a)
    scaling = {prob: landscape.batch_scaling(a, prob) for prob in analysis.problems(df)}
    stab = {prob: stability.table(df, prob) for prob in analysis.problems(df)}
    figs = render(rs, a, budget, scaling, stab, out)
    if figs.get("profile"):
        md += ["### Across problems", "", f"![performance profile]({figs['profile']})", ""]
    md += ["## Set-up", "", setup(rs, df)]
    md += per_problem(df, figs, budget, searched(rs, df), scaling, stab)
    md += ["## How to read this report", "",
           HOW_TO_READ.format(factor=analysis.FACTOR, solved=analysis.SOLVED, digits=analysis.DIGITS, min_split=MIN_SPLIT, target=target)]
    if any(len(t) for t in stab.values()):
        md += [HOW_TO_READ_STABILITY.format(edge=stability.EDGE)]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path


def searched(rs: RunSet, df: pd.DataFrame) -> list[str]:
    """The sampled search spaces of the sweeps these runs come from (tag ``harness.search``)."""
    ids = set(df["tags.mlflow.parentRunId"].dropna()) if "tags.mlflow.parentRunId" in df else set()
    return sorted({p["tags"]["harness.search"] for pid, p in rs.parents.items() if pid in ids and p["tags"].get("harness.search")})


def tuning_section(budget: pd.DataFrame, prob: str, fig: str | None, spaces: list[str]) -> list[str]:
    """Expected best after k trials, AlgoPerf's number and the one-shot default, per configuration."""
    b = budget[budget.problem == prob]
    if b.empty:
        return []
    what = ("The trials are points sampled from the search space (" + " | ".join(spaces) + ")." if spaces else
            "The trials are the points of the lr grid that ran, taken as a set of trials (a grid, not a random sample: "
            "the numbers say how lucky k grid points drawn at random would be).")
    val = lambda v, f, inf="diverged": "–" if v != v else (inf if v == math.inf else f"≤ {analysis.SOLVED:g}" if f and v <= analysis.SOLVED * (1 + 1e-9) else fmt.value(v, f))  # noqa: E731
    rows = [[r.config, str(r.trials), val(r.curve[0], r.fstar, "∞"), val(r.curve[min(4, r.trials - 1)], r.fstar, "∞") if r.trials >= 5 else "–",
             val(r.algoperf, r.fstar), val(r.tuned, r.fstar),
             (f"{val(r.default, r.fstar)} (lr {fmt.lr(r.default_lr)})" if r.default == r.default else
              ("not run (lr " + fmt.lr(r.default_lr) + ")" if r.default_lr else "–"))] for r in b.itertuples()]
    md = ["### Tuning budget", "", what + " Each trial is chosen on the tuning seeds and reported by its median on the reporting seeds; "
          "*expected best of k* is exact over every k-subset drawn without replacement (Dodge et al., 2019), a geometric mean where f* is known; ∞ while some k trials could all have diverged. "
          "AlgoPerf's number is the median over studies of 5 trials of each study's best; *one shot* is the trial at the optimizer's default lr.", ""]
    if fig:
        md += [f"![tuning budget on {prob}]({fig})", ""]
    return md + [table(["configuration", "trials", "expected best of 1", "expected best of 5", "AlgoPerf (median best of 5)", "tuned (all trials)",
                        "one shot (default lr)"], rows), ""]


def scaling_section(scalings: list, fig: str | None) -> list[str]:
    """Batch-size scaling: each batch size's best lr and its costs to target, and the McCandlish fit."""
    if not scalings or not fig:
        return []
    rows = [[s.optimizer, f"{p.batch:g}", fmt.lr(p.best_lr), fmt.steps(p.steps), fmt.steps(p.examples), str(p.seeds)]
            for s in scalings for p in s.points.itertuples()]
    fits = [f"{s.optimizer}: S_min = {s.s_min:.3g} steps, E_min = {s.e_min:.3g} examples, critical batch size B_crit = E_min/S_min = {s.b_crit:.3g}"
            if math.isfinite(s.s_min) else f"{s.optimizer}: no fit (fewer than 3 batch sizes reached the target, or no positive S_min and E_min)"
            for s in scalings]
    return ["### Batch-size scaling", "", f"![batch-size scaling]({fig})", "",
            "Each batch size at its own best lr (chosen on the tuning seeds), medians over the reporting seeds. "
            "McCandlish et al. (2018): S = S_min (1 + B_crit/B), i.e. (S/S_min - 1)(E/E_min - 1) = 1, fitted by least squares of S on 1/B.", "",
            table(["optimizer", "batch size", "best lr", "steps to target", "examples to target", "seeds"], rows), "", *[f"- {f}" for f in fits], ""]


def stability_section(t: pd.DataFrame, fig: str | None, alt: str) -> list[str]:
    """The edge-of-stability figure and, per (configuration, lr), its threshold, edge ratio and class."""
    if t.empty:
        return []
    ratio = lambda v: "–" if math.isnan(v) else f"{v:.3g}"  # noqa: E731
    rows = [[r.config, fmt.lr(r.lr), f"{r.formula} = {r.threshold:.4g}", ratio(r.ratio), fmt.interval(r.lo, r.hi, ratio, r.level), r.cls,
             fmt.count(r.diverged, r.runs)] for r in t.itertuples()]
    md = ["### Stability", ""]
    if fig:
        md += [f"![stability on {alt}]({fig})", ""]
    return md + [f"Edge ratio: sharpness / threshold over the last third of each run (the preconditioned sharpness where the threshold is on it); "
                 f"median over the runs that did not diverge, every seed. At the edge: median ≥ {stability.EDGE:g} or some runs diverged "
                 "(see *How to read*).", "",
                 table(["configuration", "lr", "threshold", "median edge ratio", "interval (level)", "class", "diverged"], rows), ""]


def minima_section(m: pd.DataFrame) -> list[str]:
    """The sharpness of the minima each configuration ended in."""
    if m.empty:
        return []
    rows = [[r.config, f"{r.basin} ({r.kind})", str(r.runs), f"{r.sharpness:.3g}", r.rank or "–"] for r in m.itertuples()]
    return ["Sharpness of the minima runs ended in: median final λmax(H) over the runs (every lr and seed that did not diverge) "
            "that ended in each minimum; flattest / sharpest among the minima that configuration ended in.", "",
            table(["configuration", "minimum", "runs", "median final sharpness", "flatter or sharper"], rows), ""]


def per_problem(df: pd.DataFrame, figs: dict, budget: pd.DataFrame, spaces: list[str], scaling: dict, stab: dict) -> list[str]:
    md = []
    for prob in analysis.problems(df):
        g = df[df.problem == prob]
        alt = prob.replace("[", "\\[").replace("]", "\\]")
        md += [f"## {prob}", "", "### Loss curves at each configuration's best learning rate", "", f"![loss curves on {alt}]({figs['curves', prob]})", "",
               "### Learning-rate sensitivity", "", f"![lr sensitivity on {alt}]({figs['lr', prob]})", ""]
        theory = quadratic_theory(df, prob)
        if theory:
            md += [theory]
        md += stability_section(stab[prob], figs.get(("stability", prob)), alt)
        if figs.get(("landscape", prob)):
            md += ["### Two-hyperparameter landscape", "", f"![landscape on {alt}]({figs['landscape', prob]})", "",
                   "Median final value over every seed per cell (log colour scale); x: the median run of the cell diverged; outlined: the lowest median.", ""]
        md += scaling_section(scaling[prob], figs.get(("batch", prob)))
        md += tuning_section(budget, prob, figs.get(("tuning", prob)), spaces)
        for key, title, what in (("ecdf", "Runtime distribution", "runtime distribution"), ("minima", "Where runs ended", "outcomes"),
                                 ("trajectories", "Trajectories", "trajectories")):
            if figs.get((key, prob)):
                md += [f"### {title}", "", f"![{what} on {alt}]({figs[key, prob]})", ""]
            if key == "minima":
                md += minima_section(stability.minima(df, prob))
        ok = g[~g["diverged"]]
        fstar = bool(g["has_fstar"].all())
        rows = [[c, fmt.value(s.min(), fstar), fmt.value(s.median(), fstar), fmt.value(s.max(), fstar)]
                for c in analysis.configs(g) if len(s := ok[ok.config == c]["final"])]
        if rows:
            md += ["Spread of final values across all non-diverged runs (every lr and seed):", "", table(["configuration", "min", "median", "max"], rows), ""]
    return md
