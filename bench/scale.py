"""Per-run cost at scale, measured in one run: time, validation, store size and peak memory of sweeps
of 100, 1,000 and 10,000 runs, the report over the 10,000, and one run into an existing store.

The sweep (issue 10's): 5 optimizers (gd, momentum, nesterov, rmsprop, adam) x 20 learning rates
(1e-5 ... 1, log-spaced) x S seeds on 2-D Rosenbrock, 2,000 steps, from the command line into a fresh
sqlite store, for S = 1, 10, 100. Printed per size: wall time, the sweep's own "validated in" time,
the store (database file plus artifact files, in bytes; and `du` of both, which counts whole disk
blocks) per run, and the peak resident memory of the process. Then, on the 10,000-run store: the
report end to end (`python -m harness.report`, median of --reps), and one more run
(`python -m harness`) against `python -c "import torch"` (medians of --reps, interleaved).

Targets: 10,000 runs <= 60 s, <= 50 KB per run, <= 1 GB peak, validation <= 2 s; report <= 10 s;
one run <= 1 s beyond importing torch.

    .venv/bin/python bench/scale.py [--reps 3] [--sizes 1,10,100]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OPTIMIZERS = "gd,momentum,nesterov,rmsprop,adam"
LRS = ",".join(f"{v:.3g}" for v in np.logspace(-5, 0, 20))


def timed(cmd: list[str], cwd: str) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in bytes, stdout) of a command, failing loudly."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out[-3000:]}")
    return dt, usage.ru_maxrss * 1024, out


def size(tmp: str) -> tuple[int, int]:
    """(bytes of files, disk usage) of the database and the artifacts."""
    files = [Path(tmp) / "s.db", *[p for p in (Path(tmp) / "mlruns").rglob("*") if p.is_file()]]
    out = subprocess.run(["du", "-s", "--block-size=1", f"{tmp}/s.db", f"{tmp}/mlruns"], capture_output=True, text=True).stdout
    du = sum(int(line.split()[0]) for line in out.splitlines())
    return sum(p.stat().st_size for p in files), du


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="1,10,100", help="seeds per size (runs = 100 x seeds)")
    a = ap.parse_args()
    seeds = [int(s) for s in a.sizes.split(",")]
    print(f"5 optimizers x 20 lrs x seeds, rosenbrock, 2,000 steps, fresh sqlite store ({os.cpu_count()} cores)")
    print(f"{'runs':>7} {'wall s':>7} {'ms/run':>7} {'validate s':>10} {'KB/run':>7} {'du KB/run':>9} {'peak MB':>8}")
    rows, keep = [], None
    for s in seeds:
        tmp = tempfile.mkdtemp(prefix="scale-")
        cmd = [sys.executable, "-m", "harness", "problem=rosenbrock", "steps=2000", f"tracking.uri=sqlite:///{tmp}/s.db", "-m",
               f"optimizer={OPTIMIZERS}", f"lr={LRS}", f"seed=range({s})"]
        dt, peak, out = timed(cmd, tmp)
        n = 100 * s
        valid = float(re.search(r"validated in ([0-9.]+) s", out).group(1))
        b, du = size(tmp)
        rows.append((n, dt, valid, b / n, du / n, peak))
        print(f"{n:>7} {dt:>7.1f} {1000 * dt / n:>7.2f} {valid:>10.1f} {b / n / 1024:>7.1f} {du / n / 1024:>9.1f} {peak / 2**20:>8.0f}", flush=True)
        if keep is not None:
            subprocess.run(["rm", "-rf", keep])
        keep = tmp
    for (n0, t0, *_), (n1, t1, *_) in zip(rows, rows[1:]):
        print(f"  {n0} -> {n1} runs: x{t1 / t0:.1f} time for x{n1 / n0:.0f} runs")
    n, dt, valid, per, du, peak = rows[-1]
    uri = f"sqlite:///{keep}/s.db"
    rep, one, imp = [], [], []
    for _ in range(a.reps):
        rep.append(timed([sys.executable, "-m", "harness.report", "--uri", uri, "--out", f"{keep}/reports", "--no-attach"], keep)[0])
        one.append(timed([sys.executable, "-m", "harness", f"tracking.uri={uri}", "seed=12345"], keep)[0])
        imp.append(timed([sys.executable, "-c", "import torch"], keep)[0])
    R, ONE, IMP = (statistics.median(v) for v in (rep, one, imp))
    print(f"report over {n} runs: {R:.1f} s (median of {a.reps}, process start included)")
    print(f"one run into that store: {ONE:.2f} s; `import torch` alone {IMP:.2f} s -> {ONE - IMP:.2f} s beyond it (medians of {a.reps})")
    print(f"\ntargets at {n} runs: {dt:.1f} s <= 60 s, {per / 1024:.1f} KB/run (du {du / 1024:.1f}) <= 50 KB, {peak / 2**30:.2f} GB <= 1 GB, "
          f"validation {valid:.1f} s <= 2 s, report {R:.1f} s <= 10 s, one run +{ONE - IMP:.2f} s <= 1 s")
    subprocess.run(["rm", "-rf", keep])


if __name__ == "__main__":
    main()
