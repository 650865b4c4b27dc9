"""torch's intra-op threads on a batch's small tensors: an element-wise op (sqrt, exp, a product) on a
[2000, 2] float64 tensor, the shape of a 2,000-member batch on a 2-D problem, timed with torch's default
number of threads and with one (what ``harness.job.threads_for`` sets below 2**18 elements), medians of
--reps blocks of 200 calls, and their ratio. With another process busy on the machine the default's
hand-off to its OpenMP threads costs milliseconds per op; one thread takes microseconds.

    .venv/bin/python bench/threads.py [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def per_call(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(200):
            fn()
        out.append((time.perf_counter() - t) / 200)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    x = torch.rand(2000, 2, dtype=torch.float64) + 0.5
    default = torch.get_num_threads()
    print(f"[2000, 2] float64, {default} threads by default against 1 (medians of {a.reps} x 200 calls)")
    for name, fn in (("sqrt", x.sqrt), ("exp", x.exp), ("x * x", lambda: x * x)):
        torch.set_num_threads(default)
        many = per_call(fn, a.reps)
        torch.set_num_threads(1)
        one = per_call(fn, a.reps)
        print(f"{name:>6}: {1e6 * many:9.1f} us with {default} threads, {1e6 * one:7.1f} us with 1: x{many / one:.1f}")
    torch.set_num_threads(default)


if __name__ == "__main__":
    main()
