"""Headline sweep: the harness against what a user would otherwise run, measured in one run.

1. End to end, from the command line: Adam on 2-D Rosenbrock, 7 learning rates x 10 seeds x
   2,000 steps, every step of every curve recorded, into a fresh store:
     harness:           `python -m harness optimizer=adam problem=rosenbrock -m lr=... seed=range(10)` (sqlite)
     plain script:      torch.optim.Adam, the 70 runs one after another, one MLflow run each,
                        the loss curve logged with one `log_batch` per run (sqlite)
     benchopt (numpy):  benchopt 1.10 with a hand-written numpy Adam solver, the fastest thing a
                        benchopt user would write; the objective evaluated at every step
                        (`get_next` = +1, `-n 2001`), lrs as solver parameters, seeds as dataset ones
     benchopt (torch):  the same benchmark with a torch.optim.Adam solver
   benchopt runs from a scratch virtual environment (``--benchopt-venv``, made with pip if missing,
   never the project's .venv).
2. Compute alone, in-process: the harness's batched loop for those 70 runs against a
   hand-written batched torch loop of the same maths (closed-form gradient, preallocated curve).

Repetitions are interleaved; medians and ratios are printed. The machine is shared: read ratios.

    .venv/bin/python bench/headline.py [--reps 3] [--quick] [--benchopt-venv DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]
SEEDS, STEPS = 10, 2000

PLAIN = textwrap.dedent(
    """
    import sys, time, torch, mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    LRS, SEEDS, STEPS = {lrs}, {seeds}, {steps}
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("plain")
    client = MlflowClient()
    for lr in LRS:
        for seed in range(SEEDS):
            g = torch.Generator().manual_seed(seed)
            x = (torch.rand(2, generator=g, dtype=torch.float64) * 4 - 2).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=lr)
            losses = []
            for step in range(STEPS + 1):
                opt.zero_grad()
                f = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
                losses.append(f.item())
                if step < STEPS:
                    f.backward()
                    opt.step()
            with mlflow.start_run(run_name=f"adam-lr={{lr}}-seed={{seed}}") as run:
                mlflow.log_params({{"lr": lr, "seed": seed}})
                now = int(time.time() * 1000)
                client.log_batch(run.info.run_id, metrics=[Metric("loss", v, now, i) for i, v in enumerate(losses)])
    """
)


BENCHOPT = "benchopt==1.10.0"
OBJECTIVE = textwrap.dedent(
    """
    import numpy as np
    from benchopt import BaseObjective

    class Objective(BaseObjective):
        name = "rosenbrock"
        min_benchopt_version = "1.5"

        def set_data(self, x0):
            self.x0 = x0

        def evaluate_result(self, x):
            return dict(value=float(100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2))

        def get_one_result(self):
            return dict(x=np.zeros(2))

        def get_objective(self):
            return dict(x0=self.x0)
    """
)
DATASET = textwrap.dedent(
    """
    import numpy as np
    from benchopt import BaseDataset

    class Dataset(BaseDataset):
        name = "rosenbrock"
        parameters = {{"seed": list(range({seeds}))}}

        def get_data(self):
            return dict(x0=np.random.default_rng(self.seed).uniform(-2, 2, 2))
    """
)
SOLVER_HEAD = """
import numpy as np
from benchopt import BaseSolver
from benchopt.stopping_criterion import SufficientProgressCriterion

class Solver(BaseSolver):
    name = "{name}"
    parameters = {{"lr": {lrs}}}
    sampling_strategy = "callback"
    stopping_criterion = SufficientProgressCriterion(patience=10**9, strategy="callback")  # all 2,000 steps

    steps = {steps}
{get_next}
    def set_objective(self, x0):
        self.x0 = x0

    def get_result(self):
        return dict(x=self.x)
"""
NUMPY_RUN = """
    def run(self, cb):
        b1, b2, eps = 0.9, 0.999, 1e-8
        x = self.x0.copy()
        m, v, k = np.zeros(2), np.zeros(2), 0
        self.x = x
        while k < self.steps and cb():
            a, b = x
            r = b - a * a
            g = np.array([-400 * a * r - 2 * (1 - a), 200 * r])
            k += 1
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            x = x - self.lr / (1 - b1**k) * m / (np.sqrt(v / (1 - b2**k)) + eps)
            self.x = x
"""
TORCH_RUN = """
    def run(self, cb):
        import torch

        x = torch.tensor(self.x0, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([x], lr=self.lr)
        self.x = self.x0.copy()
        for _ in range(self.steps):
            if not cb():
                break
            opt.zero_grad()
            f = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
            f.backward()
            opt.step()
            self.x = x.detach().numpy().copy()
"""


def benchopt_venv(path: Path) -> Path:
    """A scratch virtual environment with benchopt (and torch for its torch solver), made if missing."""
    py = path / "bin" / "python"
    if not (path / "bin" / "benchopt").exists():
        print(f"installing {BENCHOPT} into {path} (scratch, not .venv) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
        import torch

        extra = os.environ.get("PIP_ARGS", "").split()  # as the Makefile: where pip finds the CPU build of torch
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *extra, BENCHOPT,
                        f"torch=={torch.__version__.split('+')[0]}"], check=True)
    return path / "bin" / "benchopt"


def benchopt_run(benchopt: Path, tmp: str, solver: str) -> float:
    root = Path(tmp) / "benchmark_rosenbrock"
    (root / "datasets").mkdir(parents=True, exist_ok=True)
    (root / "solvers").mkdir(exist_ok=True)
    (root / "objective.py").write_text(OBJECTIVE)
    (root / "datasets" / "rosenbrock.py").write_text(DATASET.format(seeds=SEEDS))
    every = not solver.endswith("-log")
    get_next = "    def get_next(self, stop_val):\n        return stop_val + 1  # the objective at every step, as the harness records it\n"
    head = SOLVER_HEAD.format(name=solver, lrs=LRS, steps=STEPS, get_next=get_next if every else "")
    (root / "solvers" / f"{solver}.py").write_text(head + (TORCH_RUN if "torch" in solver else NUMPY_RUN))
    # every step: 2,001 evaluations; benchopt's own sampling: every 1.5x more steps, until the solver's 2,000
    cmd = [str(benchopt), "run", str(root), "-s", solver, "-d", "rosenbrock", "-n", str(STEPS + 1 if every else 1000), "-r", "1",
           "--no-timeout", "--no-plot", "--no-html", "--no-cache", "--output", f"{solver}"]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"benchopt failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt


def benchopt_points(tmp: str, solver: str) -> int:
    """How many curve points benchopt recorded (70 runs x 2,001 steps when it did the same work)."""
    import glob

    import pandas as pd

    (path,) = glob.glob(f"{tmp}/benchmark_rosenbrock/outputs/{solver}.parquet") or glob.glob(f"{tmp}/benchmark_rosenbrock/outputs/{solver}.csv")
    df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    return len(df)


def harness_cli(tmp: str) -> float:
    cmd = [sys.executable, "-m", "harness", "optimizer=adam", "problem=rosenbrock", f"steps={STEPS}",
           f"tracking.uri=sqlite:///{tmp}/h.db", "-m", "lr=" + ",".join(map(str, LRS)), f"seed=range({SEEDS})"]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"harness failed:\n{p.stderr}")
    return dt


def plain_script(tmp: str) -> float:
    script = Path(tmp) / "plain.py"
    script.write_text(PLAIN.format(lrs=LRS, seeds=SEEDS, steps=STEPS))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, str(script), f"sqlite:///{tmp}/p.db"], cwd=tmp, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"plain script failed:\n{p.stderr}")
    return dt


def harness_compute() -> float:
    from hydra import compose, initialize_config_dir

    from harness.job import run_batch
    from harness.plan import plan

    grid = ",".join(f"['lr={lr}','seed={s}']" for lr in LRS for s in range(SEEDS))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["optimizer=adam", "problem=rosenbrock", f"steps={STEPS}", f"+members=[{grid}]"])
    (batch,), _ = plan(cfg)
    t = time.perf_counter()
    run_batch(batch)
    return time.perf_counter() - t


def handwritten_compute() -> float:
    import torch

    B = len(LRS) * SEEDS
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, 2, generator=g, dtype=torch.float64) * 4 - 2
    lr = torch.tensor([lr for lr in LRS for _ in range(SEEDS)], dtype=torch.float64)[:, None]
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    b1, b2, eps = 0.9, 0.999, 1e-8
    curve = torch.empty(STEPS + 1, B, dtype=torch.float64)
    t = time.perf_counter()
    with torch.no_grad():
        for step in range(STEPS + 1):
            a, b = x[:, 0], x[:, 1]
            r = b - a * a
            curve[step] = 100 * r * r + (1 - a) ** 2
            if step == STEPS:
                break
            grad = torch.stack([-400 * a * r - 2 * (1 - a), 200 * r], 1)
            m = b1 * m + (1 - b1) * grad
            v = b2 * v + (1 - b2) * grad * grad
            k = step + 1
            x = x - lr / (1 - b1**k) * m / ((v / (1 - b2**k)).sqrt() + eps)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description="the headline sweep: harness vs a plain script and benchopt")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repetition of everything")
    ap.add_argument("--benchopt-venv", default=str(Path.home() / ".cache" / "optbench-harness" / "benchopt-venv"))
    args = ap.parse_args()
    reps = 1 if args.quick else args.reps
    import mlflow
    import torch

    benchopt = benchopt_venv(Path(args.benchopt_venv))
    print(f"{torch.get_num_threads()} torch threads; torch {torch.__version__}, mlflow {mlflow.__version__}, {BENCHOPT}")
    print(f"headline sweep: adam on rosenbrock, {len(LRS)} lrs x {SEEDS} seeds x {STEPS} steps, every step recorded")
    names = ("harness", "plain script", "benchopt (numpy)", "benchopt (numpy, log)", "benchopt (torch)")
    solvers = {"benchopt (numpy)": "adam-numpy", "benchopt (numpy, log)": "adam-numpy-log", "benchopt (torch)": "adam-torch"}
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            times["harness"].append(harness_cli(tmp))
            times["plain script"].append(plain_script(tmp))
            for name, solver in solvers.items():
                times[name].append(benchopt_run(benchopt, tmp, solver))
            if i == 0:
                for solver in solvers.values():
                    n = benchopt_points(tmp, solver)
                    print(f"  benchopt {solver}: {n} curve points recorded for {len(LRS) * SEEDS} runs of {STEPS} steps")
        print(f"  rep {i + 1}: " + "   ".join(f"{n} {times[n][-1]:6.2f} s" for n in names), flush=True)
    hc, wc = [], []
    for _ in range(1 if args.quick else 5):
        hc.append(harness_compute())
        wc.append(handwritten_compute())
    med = {n: statistics.median(v) for n, v in times.items()}
    H = med["harness"]
    print(f"\nheadline sweep ({len(LRS) * SEEDS} runs x {STEPS} steps, end to end from the command line, median of {reps}):")
    print(f"  {'harness':<18} {H:6.1f} s")
    for n in names[1:]:
        print(f"  {n:<18} {med[n]:6.1f} s   harness {med[n] / H:4.1f}x faster")
    HC, WC = statistics.median(hc), statistics.median(wc)
    print(f"compute alone: harness {HC:.3f} s, hand-written batched loop {WC:.3f} s -> {HC / WC:.2f}x (median of {len(hc)})")
    peer = min(med["benchopt (numpy)"], med["benchopt (numpy, log)"])
    ok = med["plain script"] / H >= 10 and peer / H >= 2
    print(f"targets: >= 10x the plain script ({med['plain script'] / H:.1f}x), >= 2x the faster benchopt numpy run ({peer / H:.1f}x): "
          f"{'met' if ok else 'missed'}")


if __name__ == "__main__":
    main()
