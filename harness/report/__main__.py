"""``python -m harness.report``: write reports/<name>/report.md for a sweep and attach it to the sweep's run.

    python -m harness.report                           # the latest sweep in sqlite:///mlflow.db
    python -m harness.report --sweep <parent run id>   # a given sweep
    python -m harness.report --filter "params.problem = 'rosenbrock'" --name rosenbrock
    python -m harness.report --uri http://127.0.0.1:5000 --experiment harness
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.report", description="Markdown report with figures for a sweep stored in MLflow.")
    ap.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    ap.add_argument("--experiment", default=None, help="experiment name (default: $MLFLOW_EXPERIMENT_NAME, else harness)")
    ap.add_argument("--sweep", help="the sweep's parent run id (default: the latest sweep)")
    ap.add_argument("--filter", help="an MLflow filter over member runs instead of one sweep, e.g. \"params.problem = 'rosenbrock'\"")
    ap.add_argument("--name", help="report directory under --out (default: derived from the sweep)")
    ap.add_argument("--out", default="reports", help="parent directory of reports (default: reports)")
    ap.add_argument("--target", type=float, default=None, help="target level of f - f* for the cost to target (default 1e-6)")
    ap.add_argument("--tune-seeds", default="half", help="seeds that choose each configuration's lr: half (default: the lower half of a "
                    "problem's seeds, the rest report; all seeds do both below 4 seeds), all, or a number N (the N lowest seeds)")
    ap.add_argument("--select", default="auto", help="selection metric: auto (default: final f - f*; the validation loss where f* is "
                    "unknown and held-out metrics were logged), final, train_loss, val_loss or val_accuracy")
    ap.add_argument("--no-attach", action="store_true", help="do not attach the report to the sweep's parent run")
    a = ap.parse_args(argv)

    from harness.store import StoreError, experiment_name, read_runs, resolve_uri

    t0 = time.perf_counter()
    from harness.analysis import DEFAULT_TARGET

    a.target = DEFAULT_TARGET if a.target is None else a.target
    uri = resolve_uri(a.uri)
    try:
        if a.target <= 0:
            raise StoreError(f"--target={a.target} is not allowed; allowed: a number > 0 (a logged level such as 1e-6)")
        rs = read_runs(uri, experiment_name(a.experiment or "harness"), a.sweep, a.filter)
        levels = _levels(rs.runs)
        if levels and not any(math.isclose(a.target, v, rel_tol=1e-9) for v in levels):
            raise StoreError(f"--target={a.target:g} is not a level these runs logged; allowed: {', '.join(f'{v:.0e}' for v in levels)} (stats.targets)")
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bad run id or filter: one line, no traceback
        print(f"error: cannot read runs from {uri}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    if a.name:
        name = a.name
    elif rs.sweep:
        name = "sweep-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(rs.parents[rs.sweep]["start_time"] / 1000))
    else:
        name = "filter-" + time.strftime("%Y%m%d-%H%M%S")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    from harness.protocol import ProtocolError
    from harness.report.build import build

    tune = int(a.tune_seeds) if a.tune_seeds.isdigit() else a.tune_seeds
    try:
        path = build(rs, Path(a.out) / name, name, a.target, tune, a.select)
    except ProtocolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    figs = len(list(path.parent.glob("*.png")))
    attached = ""
    if rs.sweep and not a.no_attach:
        rs.attach(rs.sweep, path.parent, "report")
        attached = f"; attached to run {rs.sweep} (artifacts/report)"
    print(f"Report: {path} ({len(rs.runs)} runs, {figs} figures, {time.perf_counter() - t0:.1f} s){attached}")
    return 0


def _levels(runs) -> list[float]:
    from harness.analysis import target_levels

    return target_levels(runs)


if __name__ == "__main__":
    sys.exit(main())
