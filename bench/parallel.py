"""A 1,000-run sweep on one process and on two joblib workers, and the rerun of a finished sweep.

The sweep is bench/scale.py's: 5 optimizers x 10 learning rates x 20 seeds on 2-D Rosenbrock, end
to end from the command line into a fresh sqlite store, at 2,000 steps (the store's writes dominate:
each worker imports torch again, and sqlite takes one writer at a time)
and at 20,000 steps (the same rows to write, ten times the compute). Each runs

  1. with Hydra's basic launcher (one process: the batched jobs one after another);
  2. with ``hydra/launcher=joblib hydra.launcher.n_jobs=2`` (two worker processes);

and then the 2,000-step command of 2 runs again on its finished store: resume finds every run
stored and does nothing. Each is repeated --reps times, interleaved so that the machine's load
falls on all of them alike; medians, and ratios against the one-process sweep of the same run.

    .venv/bin/python bench/parallel.py [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = [
    "problem=rosenbrock",
    "-m",
    "optimizer=gd,momentum,nesterov,rmsprop,adam",
    "lr=1e-5,3e-5,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1,3e-1",
    "seed=range(20)",
]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def timed(args: list[str], cwd: str, expect: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0 or expect not in p.stdout:
        sys.exit(f"harness failed (exit {p.returncode}, expected {expect!r}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    cases = [
        (2000, "1 process"),
        (2000, "2 joblib workers"),
        (2000, "rerun, finished"),
        (20000, "1 process"),
        (20000, "2 joblib workers"),
    ]
    times: dict[tuple[int, str], list[float]] = {c: [] for c in cases}
    done = "Sweep done: 1000 of 1000 runs"
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory() as tmp:
            for steps, name in cases:
                uri = f"tracking.uri=sqlite:///{tmp}/{steps}-{'one' if name == '1 process' else 'two'}.db"
                launcher = [] if name == "1 process" else JOBLIB
                expect = "Sweep already complete: all 1000 runs are stored" if name.startswith("rerun") else done
                times[steps, name].append(timed([uri, f"steps={steps}", *launcher, *SWEEP], tmp, expect))
        print(f"rep {rep + 1}: " + "  ".join(f"{s} steps, {n}: {times[s, n][-1]:.1f} s" for s, n in cases), flush=True)

    print(
        f"\n1,000 runs (5 optimizers x 10 lrs x 20 seeds, rosenbrock, sqlite), end to end, medians of {args.reps} on {os.cpu_count()} cores:"
    )
    for steps, name in cases:
        m, base = statistics.median(times[steps, name]), statistics.median(times[steps, "1 process"])
        print(f"  {steps:>6} steps  {name:<18} {m:7.1f} s   {base / m:5.2f}x the 1-process sweep's speed")


if __name__ == "__main__":
    main()
