"""The closing summary of a sweep: the report's summary table, as text, from the same analysis."""

from __future__ import annotations

import os

from harness import analysis
from harness import formatting as fmt

TARGET = 1e-6  # the report's default target


def columns(target: float) -> list[str]:
    return ["problem", "configuration", "best lr", "median final", "95% interval", f"steps to {target:.0e}",
            "diverged at best lr", "diverged (all lrs)", "global min (best lr)"]


def rows(bests, target: float) -> list[list[str]]:
    """One row per (problem, configuration), ranked within each problem; the report's table starts with these cells."""
    out = []
    for r in bests.itertuples():
        steps = fmt.steps(r.steps) + (f" ({r.reached}/{r.seeds})" if r.fstar and 0 < r.reached < r.seeds else "")
        out.append([r.problem, r.config, fmt.lr(r.best_lr), fmt.value(r.median, r.fstar), fmt.interval(r.ci_lo, r.ci_hi, lambda v, f=r.fstar: fmt.value(v, f)),
                    steps if r.fstar else "–", fmt.count(r.diverged_best, r.seeds), fmt.count(r.diverged_all, r.runs),
                    fmt.share(r.global_share) if r.minima else "–"])
    return out


def text_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header)] + [line(r) for r in body])


def sweep_summary(uri: str, experiment: str, experiment_id: str, parent: str, seconds: float, expected: int) -> str:
    """One screen: runs, divergences, the best lr per (problem, configuration), where to look."""
    from harness.store import read_runs, runs_view

    rs = read_runs(uri, experiment, sweep=parent)
    df = analysis.prepare(rs.runs)
    bests = analysis.best(df, TARGET)
    lines = [f"\nSweep done: {len(df)} of {expected} runs in {seconds:.1f} s, {int(df['diverged'].sum())} diverged.", ""]
    lines.append(text_table(columns(TARGET), rows(bests, TARGET)))
    shown = uri.replace("sqlite:///" + os.getcwd() + "/", "sqlite:///")  # relative when in the launch dir
    page = runs_view(uri, experiment_id)
    ui = f"open {page}" if uri.startswith("http") else f"mlflow ui --backend-store-uri {shown}  then open {page}"
    lines += ["", "median final = median over seeds of f - f* (loss where f* is unknown) at the best lr, with its 95% bootstrap",
              "interval; best lr: no divergence, most global minima, lowest median, fewest steps, larger lr (see the report).",
              f"Runs: parent run {parent} in {shown}. Report: python -m harness.report", f"Browse: {ui}"]
    return "\n".join(lines)
