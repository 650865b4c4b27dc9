"""Report time over a 1,000-run sweep (target < 15 s), measured in one run.

Makes a sweep of 5 optimizers x 10 learning rates x 20 seeds on Himmelblau (500 steps) in a
fresh sqlite store, then times `python -m harness.report` on it end to end (process start
included), --reps times; prints the median.

    .venv/bin/python bench/report_scale.py [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/r.db"
        sweep = [sys.executable, "-m", "harness", "problem=himmelblau", "steps=500", f"tracking.uri={uri}", "-m",
                 "optimizer=gd,momentum,nesterov,rmsprop,adam", "lr=1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1,3", "seed=range(20)"]
        t = time.perf_counter()
        p = subprocess.run(sweep, cwd=tmp, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(p.stderr)
        print(f"sweep of 1,000 runs: {time.perf_counter() - t:.1f} s")
        times = []
        for i in range(a.reps):
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "harness.report", "--uri", uri, "--out", tmp, "--name", f"r{i}"],
                               cwd=tmp, capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            if p.returncode != 0:
                sys.exit(p.stderr)
            print(f"  report {i + 1}: {times[-1]:.1f} s   ({p.stdout.strip()})", flush=True)
    m = statistics.median(times)
    print(f"\nreport over 1,000 runs: {m:.1f} s median of {a.reps} (target < 15 s: {'met' if m < 15 else 'missed'})")


if __name__ == "__main__":
    main()
