"""What the command line costs beyond importing torch: one run into an existing store, and the headline sweep
into a fresh one, against `python -c "import torch"`.

    one run:   python -m harness tracking.uri=sqlite:///<existing store> seed=12345
    the sweep: python -m harness optimizer=adam problem=rosenbrock tracking.uri=sqlite:///<fresh store>
                   -m lr=0.001,0.003,0.01,0.03,0.1,0.3,1 "seed=range(10)"     (70 runs x 2,000 steps)

Each command is a process of its own, started as a user starts it; the three alternate, --reps times, and
their medians are printed with the load average over the measurement (the machine may be shared: read the
differences to `import torch`, measured in the same minutes). With --against COMMIT, COMMIT's code (its
files from `git archive`, first on PYTHONPATH) runs the same commands in the same rotation. --store runs the
one run into that store (e.g. the 100,000 runs `bench/scale.py` makes) instead of a small new one.

Targets (issue 18): each at most `import torch` + 1.0 s.

    .venv/bin/python bench/startup.py [--reps 5] [--against COMMIT] [--store PATH.db]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LRS = "0.001,0.003,0.01,0.03,0.1,0.3,1"


def timed(cmd: list[str], cwd: str, code: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = code
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--against", metavar="COMMIT", help="also run COMMIT's code, in the same rotation")
    ap.add_argument("--store", metavar="PATH", help="an existing sqlite store for the one run (default: a new small one)")
    a = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="startup-")
    codes = {"this tree": str(ROOT)}
    if a.against:
        old = Path(scratch) / "against"
        old.mkdir()
        archive = subprocess.run(["git", "archive", a.against], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        codes = {a.against: str(old), **codes}
    py = sys.executable
    stores = {}
    for name, code in codes.items():
        if a.store:
            stores[name] = str(Path(a.store).resolve())
        else:
            stores[name] = f"{scratch}/one-{len(stores)}.db"
            timed([py, "-m", "harness", f"tracking.uri=sqlite:///{stores[name]}", "steps=10"], scratch, code)  # a new store
    times: dict[str, list[float]] = {"import torch": []}
    loads = [os.getloadavg()[0]]
    for i in range(a.reps):
        times["import torch"].append(timed([py, "-c", "import torch"], scratch, str(ROOT)))
        for name, code in codes.items():
            times.setdefault(f"one run ({name})", []).append(
                timed([py, "-m", "harness", f"tracking.uri=sqlite:///{stores[name]}", "seed=12345"], str(Path(stores[name]).parent), code))
            fresh = tempfile.mkdtemp(dir=scratch)
            times.setdefault(f"sweep ({name})", []).append(
                timed([py, "-m", "harness", "optimizer=adam", "problem=rosenbrock", f"tracking.uri=sqlite:///{fresh}/s.db", "-m", f"lr={LRS}",
                       "seed=range(10)"], fresh, code))
            shutil.rmtree(fresh)
        loads.append(os.getloadavg()[0])
        print(f"  rep {i + 1}: " + "   ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    shutil.rmtree(scratch)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["import torch"]
    print(f"medians of {a.reps}, load average {min(loads):.1f}-{max(loads):.1f} ({os.cpu_count()} cores):")
    for k, m in med.items():
        extra = "" if k == "import torch" else f"   import torch {m - base:+.2f} s ({'met' if m - base <= 1.0 else 'missed'}: <= +1.0 s)"
        print(f"  {k:<{max(map(len, med))}}  {m:5.2f} s{extra}")


if __name__ == "__main__":
    main()
