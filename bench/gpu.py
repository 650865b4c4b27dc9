"""Members x steps per second on the CPU and, where torch sees one, on CUDA, in the same run (issue 19).

1. The headline problem: Adam on 2-D Rosenbrock from (-1.5, 2), one learning rate per member
   (log-spaced 1e-4 .. 1e-1), float64, 10^3 .. 10^6 members. The batch is built directly (problem,
   optimizer, ``harness.plan.Batch``): validating 10^6 command-line members is not what is measured.
2. The MLP on digits (``problem=mlp``: 64-64-64-10, ReLU, cross-entropy, mini-batches of 64, float32),
   16 .. 1,024 members, built through the harness's own planning from a members file.

Each point is ``harness.job.run_batch`` (the batched loop with its stopping rules and curves, without
the store), timed after one warm-up run on the same device; the final losses of the CUDA run are
compared with the CPU's (largest relative difference). Rows print as they finish; once ``--max-seconds``
(180) have passed, the rows left are skipped, each with a line saying so.

    .venv/bin/python bench/gpu.py                  # everything
    .venv/bin/python bench/gpu.py --max-members 10000 --mlp-members 16,128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.job import run_batch  # noqa: E402
from harness.plan import Batch, plan  # noqa: E402
from harness.runner import StopRules  # noqa: E402

HEADLINE = [(10**3, 200), (10**4, 200), (10**5, 100), (10**6, 50)]  # (members, steps)
MLP_STEPS = 50


def headline_batch(members: int, steps: int, device: str) -> Batch:
    from optimizers.adam import adam
    from problems.rosenbrock import Rosenbrock

    lrs = np.logspace(-4, -1, members).tolist()
    with torch.device(device):
        problem = Rosenbrock(x0=[-1.5, 2.0], seeds=[0] * members, dtype=torch.float64)
        opt = adam(lr=lrs, batch=members, dtype=torch.float64)
    cfgs = [{"lr": lr, "optimizer": {}} for lr in lrs]
    return Batch(cfgs, problem, opt, None, [], StopRules(steps=steps), torch.float64, device=device)


def mlp_batch(members: int, steps: int, device: str) -> Batch:
    from hydra import compose, initialize_config_dir

    grid = [[f"lr={lr:.6g}", f"seed={i}"] for i, lr in enumerate(np.logspace(-3, -1, members))]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(grid, f)
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    "problem=mlp",
                    "optimizer=adam",
                    "batch_size=64",
                    f"steps={steps}",
                    "problem.eval_every=0",
                    f"device={device}",
                    f"+members={f.name}",
                ],
            )
        (batch,), _ = plan(cfg)
    finally:
        os.unlink(f.name)
    return batch


def timed(build, members: int, steps: int, device: str) -> tuple[float, np.ndarray]:
    """(members x steps per second, final losses) of one run, after a warm-up run of the same shape."""
    run_batch(build(members, min(steps, 5), device))
    batch = build(members, steps, device)
    t = time.perf_counter()
    res = run_batch(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    return members * steps / (time.perf_counter() - t), res.loss[-1]


def row(name: str, build, members: int, steps: int, devices: list[str]) -> None:
    rates, finals = {}, {}
    for d in devices:
        rates[d], finals[d] = timed(build, members, steps, d)
    cells = [f"{name:<10}", f"{members:>9,}", f"{steps:>5}"] + [f"{rates[d]:>14,.0f}" for d in devices]
    if "cuda" in rates:
        a, b = finals["cuda"], finals["cpu"]
        rel = float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))) if np.isfinite(a).any() else float("nan")
        cells += [f"{rates['cuda'] / rates['cpu']:>9.2f}x", f"{rel:>10.1e}"]
    print("  ".join(cells), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-members", type=int, default=10**6, help="largest headline batch (default 10^6)")
    ap.add_argument("--mlp-members", default="16,128,1024", help="MLP batch sizes, comma-separated")
    ap.add_argument(
        "--max-seconds", type=float, default=180.0, help="start no further row after this many seconds (default 180)"
    )
    a = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else "none: torch sees no CUDA device, CPU only"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, GPU: {gpu}", flush=True)
    head = ["problem   ", "  members", "steps"] + [f"{d + ' m*s/s':>14}" for d in devices]
    if "cuda" in devices:
        head += ["cuda/cpu", "max rel. diff of final losses"]
    print("  ".join(head), flush=True)
    t0 = time.perf_counter()
    rows = [("rosenbrock", headline_batch, m, s) for m, s in HEADLINE if m <= a.max_members]
    rows += [("mlp", mlp_batch, int(m), MLP_STEPS) for m in a.mlp_members.split(",") if m]
    for name, build, members, steps in rows:
        if time.perf_counter() - t0 > a.max_seconds:
            print(f"{name:<10}  {members:>9,}  skipped: past --max-seconds {a.max_seconds:g}", flush=True)
            continue
        row(name, build, members, steps, devices)
    print(f"done in {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
