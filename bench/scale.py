"""How sweep time grows with the number of runs, end to end from the command line.

Runs `python -m harness` sweeps of 5 optimizers x 10 learning rates x S seeds on 2-D Rosenbrock
(2,000 steps, MLflow logging into a fresh sqlite store) for S = 2, 6, 20, i.e. 100, 300 and
1,000 runs, and prints the wall time, the time per run and the growth between sizes. The
target for 1,000 runs is <= 60 s. Each size is repeated --reps times (interleaved); medians.

    .venv/bin/python bench/scale.py [--reps 1] [--steps 2000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS = "gd,momentum,nesterov,rmsprop,adam"
LRS = "1e-5,3e-5,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1,3e-1"


def sweep(seeds: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "harness", "problem=rosenbrock", f"steps={steps}",
               f"tracking.uri=sqlite:///{tmp}/scale.db", "-m", f"optimizer={OPTIMIZERS}", f"lr={LRS}",
               f"seed=range({seeds})"]
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            sys.exit(f"harness failed:\n{p.stderr}")
        return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    sizes = {100: 2, 300: 6, 1000: 20}
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for rep in range(args.reps):
        for n, seeds in sizes.items():
            times[n].append(sweep(seeds, args.steps))
            print(f"rep {rep + 1}: {n:>5} runs  {times[n][-1]:6.1f} s", flush=True)
    print(f"\n{'runs':>6} {'median s':>9} {'ms/run':>8}   (5 optimizers x 10 lrs x seeds, rosenbrock, {args.steps} steps, sqlite)")
    prev = None
    for n in sizes:
        m = statistics.median(times[n])
        growth = "" if prev is None else f"   x{m / prev[1]:.2f} time for x{n / prev[0]:.1f} runs"
        print(f"{n:>6} {m:>9.1f} {1000 * m / n:>8.1f}{growth}")
        prev = (n, m)
    m = statistics.median(times[1000])
    print(f"\n1,000 runs end to end: {m:.1f} s (target <= 60 s: {'met' if m <= 60 else 'missed'})")


if __name__ == "__main__":
    main()
