"""CNN throughput, measured in one run (issue: data problems).

1. Overhead: the harness training one CNN member (momentum SGD, batch 64, N steps, in-process, no
   MLflow) against a plain hand-written torch loop doing the same steps with torch.optim.SGD on
   the same network and data. Target: overhead <= 10%.
2. Batching: 8 members (8 learning rates) as one vmap batch against the same 8 run one after another.

    .venv/bin/python bench/cnn.py [--steps 500] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LRS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1]


def harness(steps: int, lrs: list[float]) -> float:
    from hydra import compose, initialize_config_dir

    from harness.job import run_batch
    from harness.plan import plan

    grid = ",".join(f"['lr={lr}']" for lr in lrs)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["problem=cnn", "optimizer=momentum", "batch_size=64", f"steps={steps}",
                                           "problem.eval_every=0", f"+members=[{grid}]"])
    (batch,), _ = plan(cfg)
    t = time.perf_counter()
    run_batch(batch)
    return time.perf_counter() - t


def plain(steps: int, lr: float) -> float:
    """What a user would write: the module, torch.optim.SGD, shuffled mini-batches of 64."""
    from problems.cnn import CNN, DigitsNet

    data = CNN(seeds=[0], batch_size=64, dtype=torch.float32)  # the same standardised training images
    X, y = data.X, data.y
    torch.manual_seed(0)
    net = DigitsNet(16, 32)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    perm, j = torch.randperm(len(y), generator=g), 0
    losses = torch.empty(steps + 1)
    t = time.perf_counter()
    for step in range(steps + 1):
        if (j + 1) * 64 > len(y):
            perm, j = torch.randperm(len(y), generator=g), 0
        idx = perm[j * 64 : (j + 1) * 64]
        j += 1
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(X[idx]), y[idx])
        losses[step] = loss.detach()
        if step < steps:
            loss.backward()
            opt.step()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    harness(20, [0.01])  # warm-up (imports, data)
    one_h, one_p, b8, s8 = [], [], [], []
    for _ in range(a.reps):
        one_h.append(harness(a.steps, [0.01]))
        one_p.append(plain(a.steps, 0.01))
        b8.append(harness(a.steps, LRS))
        s8.append(sum(harness(a.steps, [lr]) for lr in LRS))
        print(f"  rep: harness 1 member {one_h[-1]:.2f} s, plain loop {one_p[-1]:.2f} s, 8 batched {b8[-1]:.2f} s, 8 one by one {s8[-1]:.2f} s", flush=True)
    H, P, B, S = (statistics.median(v) for v in (one_h, one_p, b8, s8))
    print(f"\nCNN, {a.steps} steps, batch 64, float32, {torch.get_num_threads()} threads (medians of {a.reps}):")
    print(f"  harness {H:.2f} s vs plain torch loop {P:.2f} s -> overhead {100 * (H / P - 1):+.0f}%  ({a.steps / H:.0f} vs {a.steps / P:.0f} steps/s)")
    print(f"  8 members batched {B:.2f} s vs one after another {S:.2f} s -> {S / B:.2f}x")


if __name__ == "__main__":
    main()
