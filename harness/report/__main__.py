"""``python -m harness.report``: write outputs/reports/<name>/report.md for a sweep and attach it to the sweep's run.

The figures and the markdown are written into a hidden folder beside the report's, which replaces it
only once all is written: an interrupted report leaves the previous one (or none), never half of one.

    python -m harness.report                           # the latest sweep in sqlite:///mlflow.db
    python -m harness.report --sweep <parent run id>   # a given sweep
    python -m harness.report --filter "params.problem = 'rosenbrock'" --name rosenbrock
    python -m harness.report --uri http://127.0.0.1:5000 --experiment harness
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

OUT = "outputs/reports"


def main(argv: list[str] | None = None) -> int:
    from harness.metrics import selectable  # light: no pandas before the arguments are read

    ap = argparse.ArgumentParser(prog="python -m harness.report", description="Markdown report with figures for a sweep stored in MLflow.")
    ap.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    ap.add_argument("--experiment", default=None, help="experiment name (default: $MLFLOW_EXPERIMENT_NAME, else harness)")
    ap.add_argument("--sweep", help="the sweep's parent run id (default: the latest sweep)")
    ap.add_argument("--filter", help="an MLflow filter over member runs instead of one sweep, e.g. \"params.problem = 'rosenbrock'\"")
    ap.add_argument("--name", help="report directory under --out (default: derived from the sweep)")
    ap.add_argument("--out", default=OUT, help=f"parent directory of reports (default: {OUT}, untracked)")
    ap.add_argument("--target", type=float, default=None, help="target level of f - f* for the cost to target (default 1e-6)")
    ap.add_argument("--tune-seeds", default="half", help="seeds that choose each configuration's lr: half (default: the lower half of a "
                    "problem's seeds, the rest report; all seeds do both below 4 seeds), all, or a number N (the N lowest seeds)")
    ap.add_argument("--select", default="auto", help="selection metric: auto (default: final f - f*; the validation loss where f* is "
                    f"unknown and held-out metrics were logged), {', '.join(['final', 'train_loss', *selectable()])}")
    ap.add_argument("--no-attach", action="store_true", help="do not attach the report to the sweep's parent run")
    a = ap.parse_args(argv)
    a.written = None
    try:
        return _report(a)
    except KeyboardInterrupt:
        done = f"{a.written} is complete, not attached to the sweep's run" if a.written else f"no report was written (nothing changed under {a.out})"
        print(f"interrupted: {done}", file=sys.stderr)
        return 130


def _missing(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    folder = folder.absolute()
    return [p for p in [folder, *folder.parents] if not p.exists()]


def _remove(empty_folders: list[Path]) -> None:
    for folder in empty_folders:
        try:
            folder.rmdir()
        except OSError:  # not made by us after all, or no longer empty
            return


def _staging(out: Path) -> Path:
    """A new hidden folder in ``out``, with the permissions a folder made there would have."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    return staging


def _move_into_place(staging: Path, final: Path) -> None:
    """Replace ``final`` by the finished ``staging`` folder (two renames; the old report, if any, is
    removed only once the new one is in place)."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def _report(a) -> int:
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
    made = _missing(Path(a.out))  # removed again unless a report lands in them
    try:
        staging = _staging(Path(a.out))
    except OSError as e:
        _remove(made)
        print(f"error: --out={a.out} cannot hold a report ({e.strerror or type(e).__name__}); allowed: a directory you can write to", file=sys.stderr)
        return 2
    try:
        build(rs, staging, name, a.target, tune, a.select)
        _move_into_place(staging, Path(a.out) / name)
        made = []
    except ProtocolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove(made)
    path = a.written = Path(a.out) / name / "report.md"
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


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a scheduler's time limit ends the report like Ctrl-C
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before main() took over (imports)
        print("interrupted: no report was written", file=sys.stderr)
        sys.exit(130)
