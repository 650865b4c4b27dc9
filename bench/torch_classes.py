"""A torch.optim class against the built-in functional optimizer, on the headline sweep.

Both run end to end from the command line into a fresh sqlite store: 2-D Rosenbrock, 7 learning
rates x 10 seeds x 2,000 steps (70 runs), once with the built-in ``optimizer=adam`` and once with
``optimizer=nadam`` (``torch.optim.NAdam``, batched through param groups: optimizers/torch_batched.py).
Also ``optimizer=torch optimizer._target_=torch.optim.Adam``, the same maths as the built-in through
torch's class. Interleaved repetitions; medians, and ratios against the built-in adam of the same run:
the ratio of the medians, and the median of each repetition's ratio (the two cases ran back to back,
so the shared machine's load mostly cancels). The target for NAdam is <= 1.5x.

    .venv/bin/python bench/torch_classes.py [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

LRS = "0.001,0.003,0.01,0.03,0.1,0.3,1.0"
CASES = {
    "adam (built-in, functional)": ["optimizer=adam"],
    "nadam (torch.optim.NAdam)": ["optimizer=nadam"],
    "torch.optim.Adam": ["optimizer=torch", "optimizer._target_=torch.optim.Adam"],
}


def timed(args: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "harness", "problem=rosenbrock", "steps=2000", f"tracking.uri=sqlite:///{tmp}/b.db", *args,
               "-m", f"lr={LRS}", "seed=range(10)"]
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t
    if p.returncode != 0 or "Sweep done: 70 of 70 runs" not in p.stdout:
        sys.exit(f"harness failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions (at least 3)")
    args = ap.parse_args()
    if args.reps < 3:
        ap.error("--reps must be at least 3: the ratios are medians")
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for rep in range(args.reps):
        for name, case in CASES.items():
            times[name].append(timed(case))
        print(f"rep {rep + 1}: " + "  ".join(f"{n} {times[n][-1]:.1f} s" for n in CASES), flush=True)
    base = statistics.median(times["adam (built-in, functional)"])
    print(f"\n70 runs (rosenbrock, 7 lrs x 10 seeds x 2,000 steps), end to end, medians of {args.reps}:")
    for name in CASES:
        m = statistics.median(times[name])
        print(f"  {name:<30} {m:6.1f} s   {m / base:5.2f}x the built-in adam's time")
    nadam, adam = times["nadam (torch.optim.NAdam)"], times["adam (built-in, functional)"]
    r = statistics.median(nadam) / base
    paired = statistics.median(n / a for n, a in zip(nadam, adam))
    print(f"\nNAdam / built-in adam: {r:.2f}x (target <= 1.5x: {'met' if r <= 1.5 else 'missed'}); "
          f"median of the repetitions' ratios {paired:.2f}x")


if __name__ == "__main__":
    main()
