"""The closing summary of a sweep: the report's summary table, as text, from the same analysis."""

from __future__ import annotations

import math

from harness import analysis, metrics
from harness import formatting as fmt

TARGET = analysis.DEFAULT_TARGET


def columns(target: float) -> list[str]:
    return ["problem", "configuration", "best lr", "median final", "interval (level)", "IQM", f"cost to {target:.0e}",
            "diverged at best lr", "diverged (all lrs)", "global min (best lr)"]


def rows(bests, target: float) -> list[list[str]]:
    """One row per (problem, configuration), ranked within each problem; the report's table starts with these cells."""
    out = []
    for r in bests.itertuples():
        cost = fmt.steps(r.steps) + (f" {r.unit}" if math.isfinite(r.steps) else "")
        cost += f" ({r.reached}/{r.seeds})" if r.fstar and 0 < r.reached < r.seeds else ""
        val = lambda v, f=r.fstar: fmt.value(v, f)  # noqa: E731
        out.append([r.problem, r.config, fmt.lr(r.best_lr), val(r.median), fmt.interval(r.ci_lo, r.ci_hi, val, r.ci_level), val(r.iqm),
                    cost if r.fstar else "–", fmt.count(r.diverged_best, r.seeds), fmt.count(r.diverged_all, r.runs),
                    fmt.share(r.global_share) if r.minima else "–"])
    return out


def metric_columns(bests) -> tuple[list[str], list[list[str]]]:
    """(header, one row of cells per row of ``bests``) for every declared per-run metric these rows carry
    (harness/metrics.py): the median over the reporting seeds at the best lr, with its interval where declared."""
    shown = metrics.shown(bests)
    head = [f"{m.label} (median)" if m.aggregate == "median" else f"{m.label} (median, interval)" for m in shown]
    return head, [[_metric_cell(m, r) for m in shown] for _, r in bests.iterrows()]


def _metric_cell(m: metrics.Metric, r) -> str:
    v = r[f"metrics.{m.name}"]
    if m.aggregate == "median" or (ci := r.get(f"interval.{m.name}")) is None or not isinstance(ci, tuple):
        return m.format(v)
    lo, hi, level = ci
    shown = fmt.interval(lo, hi, m.format, level)
    return m.format(v) + (f" {shown}" if shown != "–" else "")


def text_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header)] + [line(r) for r in body])


def protocol_line(a) -> str:
    """The protocol in one line per problem group: seeds that tune and report, selection metric, unit."""
    from harness.protocol import UNITS, selectable

    p = a.protocol
    parts = []
    for prob in sorted(p.tune_seeds):
        n = len(p.tune_seeds[prob])
        both = f"all {n} seeds tune and report" if n > 1 else "its one seed tunes and reports"
        split = (f"{both} (too few to split: optimistic)" if p.shared(prob)
                 else f"lr chosen on seeds {_seeds(p.tune_seeds[prob])}, reported on seeds {_seeds(p.report_seeds[prob])}")
        parts.append(f"{prob}: {split}; selected by {selectable()[p.select[prob]].split(' (')[0]}; cost in {UNITS[p.unit[prob]]}")
    return "\n".join(parts)


def _seeds(s: list[int]) -> str:
    return ", ".join(map(str, s)) if len(s) <= 6 else f"{s[0]}–{s[-1]} ({len(s)})"


def sweep_summary(uri: str, experiment: str, experiment_id: str, parent: str, seconds: float, expected: int) -> str:
    """One screen: runs, divergences, the best lr per (problem, configuration), where to look."""
    from harness.store import read_runs, runs_view, shown_uri
    from harness.store.reader import NOT_ANALYSED

    rs = read_runs(uri, experiment, sweep=parent, skip=NOT_ANALYSED)
    a = analysis.analyse(rs.runs, TARGET)
    df, bests = a.df, a.bests
    aside = a.protocol.duplicates + sum(a.protocol.older_code.values())
    extra = f" ({aside} older runs of the same members set aside)" if aside else ""
    lines = [f"\nSweep done: {len(df)} of {expected} runs in {seconds:.1f} s, {int(df['diverged'].sum())} diverged{extra}.", ""]
    lines.append(text_table(columns(TARGET), rows(bests, TARGET)))
    shown = shown_uri(uri)  # relative when in the launch dir
    page = runs_view(uri, experiment_id)
    ui = f"open {page}" if uri.startswith("http") else f"mlflow ui --backend-store-uri {shown}  then open {page}"
    lines += ["", protocol_line(a),
              "median final = median over reporting seeds of f - f* (loss where f* is unknown) at the best lr; interval: order-statistic",
              "interval of that median with the level it reaches; IQM: interquartile mean. Best lr: see the report's How to read.",
              f"Runs: parent run {parent} in {shown}. Report: python -m harness.report", f"Browse: {ui}"]
    return "\n".join(lines)
