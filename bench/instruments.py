"""What the instruments cost: the wall-time factor of each measure at every in {1, 4, 16, 64} against the
same batch without instruments, measured in the same run (medians of --reps, run in turn so that load
drifts hit both), beside Cockpit's published factors (Schneider et al., 2021: "economy" 1.5x at every
step and 1.0x at every 16; "full", with the top Hessian eigenvalue, 21x at every step, 2.3x at every 16
and 1.3x at every 64; one network, one run at a time).

- headline: the headline sweep's batch (Adam on 2-D Rosenbrock, 7 lrs x 10 seeds = 70 members,
  2,000 steps); the noise scale on the same batch with problem.grad_noise=0.1, against that batch;
- network: problem=mlp (64-64 relu on the digits, 8,970 parameters), Adam, 8 lrs, mini-batches of 64,
  128 steps; measured on a fixed sample of 64 training examples (``instruments.examples=64``, what
  Cockpit measures on: the step's mini-batch), and the sharpness also on all 1,079 (the default).

The batch's compute is timed (``run_batch``: the loop, the instruments inside it), not the store, on one
torch thread (on a shared machine two threads' times vary tenfold with the load).

    .venv/bin/python bench/instruments.py [--reps 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from harness.job import run_batch
from harness.plan import plan

ROOT = Path(__file__).resolve().parents[1]
EVERY = (1, 4, 16, 64)
COCKPIT_FULL = {1: "21x", 4: "–", 16: "2.3x", 64: "1.3x"}
ALL = "[sharpness,preconditioned_sharpness,noise_scale]"
# shape -> (overrides, members, {row: (instrument overrides, the everies measured)})
SHAPES = {
    "headline": (
        ["problem=rosenbrock", "optimizer=adam", "steps=2000"],
        [{"lr": lr, "seed": s} for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0) for s in range(10)],
        {"sharpness": (["instruments.measures=[sharpness]"], EVERY),
         "preconditioned": (["instruments.measures=[preconditioned_sharpness]"], EVERY)},
    ),
    "headline, noisy gradients": (
        ["problem=rosenbrock", "problem.grad_noise=0.1", "optimizer=adam", "steps=2000"],
        [{"lr": lr, "seed": s} for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0) for s in range(10)],
        {"noise scale": (["instruments.measures=[noise_scale]"], EVERY)},
    ),
    "network": (
        ["problem=mlp", "problem.eval_every=0", "optimizer=adam", "batch_size=64", "steps=128"],
        [{"lr": lr, "seed": 0} for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)],
        {"sharpness": (["instruments.measures=[sharpness]", "instruments.examples=64"], EVERY),
         "preconditioned": (["instruments.measures=[preconditioned_sharpness]", "instruments.examples=64"], EVERY),
         "noise scale": (["instruments.measures=[noise_scale]", "instruments.examples=64"], EVERY),
         "all three": ([f"instruments.measures={ALL}", "instruments.examples=64"], EVERY),
         "sharpness, all 1,079": (["instruments.measures=[sharpness]"], (16, 64))},
    ),
}


def batch_time(overrides: list[str], grid: list[dict]) -> float:
    inner = ",".join("[" + ",".join(f"'{k}={v}'" for k, v in m.items()) + "]" for m in grid)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"+members=[{inner}]"])
    (batch,), _ = plan(cfg)
    t = time.perf_counter()
    run_batch(batch)
    return time.perf_counter() - t


def _cell(times: list[float] | None, base: float) -> str:
    return f"{statistics.median(times) / base:>8.2f}x" if times else f"{'–':>9}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="every=16 only, one rep (a smoke run)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    reps = 1 if a.quick else a.reps
    for shape, (overrides, grid, rows) in SHAPES.items():
        batch_time(overrides, grid[:2])  # warm up: imports, the problem's first build, torch.func's first transform
        cells = [(r, e) for r, (_, everies) in rows.items() for e in everies if not a.quick or e == 16]
        times: dict = {c: [] for c in [None, *cells]}
        for _ in range(reps):  # in turn: a load change hits the baseline and the instruments alike
            times[None].append(batch_time(overrides, grid))
            for r, e in cells:
                times[(r, e)].append(batch_time([*overrides, "instruments=full", f"instruments.every={e}", *rows[r][0]], grid))
        base = statistics.median(times[None])
        print(f"\n{shape}: {len(grid)} members, {' '.join(overrides)}; without instruments {base:.2f} s (median of {reps})")
        print(f"{'':>26} " + " ".join(f"{'every=' + str(e):>9}" for e in EVERY))
        for r in rows:
            print(f"{r:>26} " + " ".join(_cell(times.get((r, e)), base) for e in EVERY))
        print(f"{'Cockpit full (published)':>26} " + " ".join(f"{COCKPIT_FULL[e]:>9}" for e in EVERY) + "   one network, one run, its mini-batch")


if __name__ == "__main__":
    main()
