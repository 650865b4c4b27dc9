"""What the instruments cost: the wall-time factor of each measure at every in {1, 4, 16, 64} against the
same batch without instruments, measured in the same run (medians of --reps, run in turn so that load
drifts hit both), beside Cockpit's published factors (Schneider et al., 2021: "economy" 1.5x at every
step and 1.0x at every 16; "full", with the top Hessian eigenvalue, 21x at every step, 2.3x at every 16
and 1.3x at every 64; one network, one run at a time).

- headline: the headline sweep's batch (Adam on 2-D Rosenbrock, 7 lrs x 10 seeds = 70 members,
  2,000 steps), problem.grad_noise=0.1 so that the noise scale has something to measure;
- network: problem=mlp (64-64 relu on the digits, 8,970 parameters), Adam, 8 lrs, mini-batches of 64,
  300 steps.

The batch's compute is timed (``run_batch``: the loop, the instruments inside it), not the store.

    .venv/bin/python bench/instruments.py [--reps 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from harness.job import run_batch
from harness.plan import plan

ROOT = Path(__file__).resolve().parents[1]
MEASURES = {
    "sharpness": "[sharpness]",
    "preconditioned": "[preconditioned_sharpness]",
    "noise scale": "[noise_scale]",
    "all three": "[sharpness,preconditioned_sharpness,noise_scale]",
}
EVERY = (1, 4, 16, 64)
COCKPIT_FULL = {1: "21x", 4: "–", 16: "2.3x", 64: "1.3x"}
SHAPES = {
    "headline": (["problem=rosenbrock", "problem.grad_noise=0.1", "optimizer=adam", "steps=2000"],
                 [{"lr": lr, "seed": s} for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0) for s in range(10)]),
    "network": (["problem=mlp", "problem.eval_every=0", "optimizer=adam", "batch_size=64", "steps=300"],
                [{"lr": lr, "seed": 0} for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)]),
}


def batch_time(overrides: list[str], grid: list[dict]) -> float:
    inner = ",".join("[" + ",".join(f"'{k}={v}'" for k, v in m.items()) + "]" for m in grid)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"+members=[{inner}]"])
    (batch,), _ = plan(cfg)
    t = time.perf_counter()
    run_batch(batch)
    return time.perf_counter() - t


def instruments(measures: str, every: int) -> list[str]:
    return ["instruments=full", f"instruments.measures={measures}", f"instruments.every={every}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="every=16 only, one rep (a smoke run)")
    a = ap.parse_args()
    every = (16,) if a.quick else EVERY
    reps = 1 if a.quick else a.reps
    for shape, (overrides, grid) in SHAPES.items():
        batch_time(overrides, grid[:2])  # warm up: imports, the problem's first build, torch.func's first transform
        cells = [(m, e) for m in MEASURES for e in every]
        times: dict = {c: [] for c in [None, *cells]}
        for _ in range(reps):  # in turn: a load change hits the baseline and the instruments alike
            times[None].append(batch_time(overrides, grid))
            for m, e in cells:
                times[(m, e)].append(batch_time([*overrides, *instruments(MEASURES[m], e)], grid))
        base = statistics.median(times[None])
        print(f"\n{shape}: {len(grid)} members, {' '.join(overrides)}; without instruments {base:.2f} s (median of {reps})")
        print(f"{'measure':>16} " + " ".join(f"{'every=' + str(e):>10}" for e in every))
        for m in MEASURES:
            print(f"{m:>16} " + " ".join(f"{statistics.median(times[(m, e)]) / base:>9.2f}x" for e in every))
        print(f"{'Cockpit full':>16} " + " ".join(f"{COCKPIT_FULL[e]:>10}" for e in every) + "   (published; one run, not a batch)")


if __name__ == "__main__":
    main()
