"""Headline sweep: the harness against what a user would otherwise write, measured in one run.

1. End to end, from the command line: Adam on 2-D Rosenbrock, 7 learning rates x 10 seeds x
   2,000 steps, with MLflow logging into a fresh sqlite store:
     harness: `python -m harness optimizer=adam problem=rosenbrock -m lr=... seed=range(10)`
     plain:   a script looping over the 70 runs with torch.optim.Adam, one MLflow run each,
              the loss curve logged with one `log_batch` per run.
2. Compute alone, in-process: the harness's batched loop for those 70 runs against a
   hand-written batched torch loop of the same maths (closed-form gradient, preallocated curve).

Repetitions are interleaved; medians and ratios are printed. The machine is shared: read ratios.

    .venv/bin/python bench/sweep_vs_plain.py [--reps 3] [--quick]
"""

from __future__ import annotations

import argparse
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
        cfg = compose("config", overrides=["optimizer=adam", "problem=rosenbrock", f"steps={STEPS}", f"members=[{grid}]"])
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
    ap = argparse.ArgumentParser(description="harness sweep vs a plain torch.optim + MLflow script")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repetition of everything")
    args = ap.parse_args()
    reps = 1 if args.quick else args.reps
    import mlflow
    import torch

    print(f"{torch.get_num_threads()} torch threads; torch {torch.__version__}, mlflow {mlflow.__version__}")
    print(f"headline sweep: adam on rosenbrock, {len(LRS)} lrs x {SEEDS} seeds x {STEPS} steps, with MLflow (sqlite)")
    h, p = [], []
    for i in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            h.append(harness_cli(tmp))
            p.append(plain_script(tmp))
        print(f"  rep {i + 1}: harness {h[-1]:6.2f} s   plain {p[-1]:6.2f} s   ratio {p[-1] / h[-1]:5.1f}x", flush=True)
    hc, wc = [], []
    for _ in range(1 if args.quick else 5):
        hc.append(harness_compute())
        wc.append(handwritten_compute())
    H, P, HC, WC = (statistics.median(v) for v in (h, p, hc, wc))
    print(f"\nheadline sweep ({len(LRS) * SEEDS} runs x {STEPS} steps, with MLflow): harness {H:.1f} s, "
          f"plain torch.optim loop {P:.1f} s -> {P / H:.1f}x faster (median of {reps})")
    print(f"compute alone: harness {HC:.3f} s, hand-written batched loop {WC:.3f} s -> {HC / WC:.2f}x (median of {len(hc)})")


if __name__ == "__main__":
    main()
