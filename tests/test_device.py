"""The device key: ``device=cpu | cuda | auto``. Every tensor of a batch lives on it, results match the
CPU's to float tolerance (where torch sees CUDA), bad values and ``device=cuda`` without CUDA are one
line with exit 2, and bench/gpu.py runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.job import run_batch
from harness.plan import plan
from optimizers.base import ConfigError
from tests.conftest import ROOT, cli_here, make_cfg, members

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="torch sees no CUDA device")
GRID = members({"lr": 1e-3, "seed": 0}, {"lr": 1e-2, "seed": 1}, {"lr": 3e-2, "seed": 2})
CASES = {
    "rosenbrock, adam": ("problem=rosenbrock", "optimizer=adam", "steps=200"),
    "logistic regression, mini-batches, gradient noise": (
        "problem=logistic_regression",
        "optimizer=momentum",
        "batch_size=16",
        "problem.grad_noise=0.1",
        "problem.eval_every=20",
        "steps=100",
    ),
    "mlp, tanh, mse": (
        "problem=mlp",
        "problem.activation=tanh",
        "problem.loss=mse",
        "batch_size=32",
        "problem.eval_every=20",
        "steps=60",
    ),
    "a torch.optim class": ("problem=quadratic", "optimizer=nadam", "steps=100"),
}


def test_auto_takes_cuda_only_where_torch_sees_it():
    (batch,), _ = plan(make_cfg("problem=mlp", "device=auto", "steps=3"))
    assert batch.device == ("cuda" if CUDA else "cpu")
    assert batch.problem.X.device.type == batch.optimizer.hyperparams["lr"].device.type == batch.device


def test_cpu_is_the_default_and_auto_without_cuda_gives_the_same_numbers():
    (a,), _ = plan(make_cfg("problem=rosenbrock", "steps=50", GRID))
    assert a.device == "cpu"
    if not CUDA:
        (b,), _ = plan(make_cfg("problem=rosenbrock", "steps=50", "device=auto", GRID))
        np.testing.assert_array_equal(run_batch(a).loss, run_batch(b).loss)


@pytest.mark.parametrize("value", ["tpu", "gpu", "cuda:0"])
def test_an_unknown_device_is_one_line(value):
    with pytest.raises(ConfigError) as e:
        plan(make_cfg(f"device={value}", "steps=5"))
    assert str(e.value) == f"device={value!r} is not allowed; allowed: auto | cpu | cuda"


@pytest.mark.skipif(CUDA, reason="torch sees a CUDA device here")
def test_cuda_without_cuda_exits_2_in_one_line_and_stores_nothing(tmp_path):
    p = cli_here(["device=cuda", "steps=5", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"], cwd=tmp_path)
    err = p.stderr.strip()
    assert p.returncode == 2 and "Traceback" not in p.stderr + p.stdout and len(err.splitlines()) == 1, p.stderr
    assert err.startswith(f"error: device=cuda is not allowed: torch {torch.__version__}") and err.endswith(
        "sees no CUDA device here; allowed: auto or cpu"
    )
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


@needs_cuda
@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_cuda_matches_the_cpu(overrides):
    (cpu,), _ = plan(make_cfg(*overrides, GRID))
    (gpu,), _ = plan(make_cfg(*overrides, "device=cuda", GRID))
    a, b = run_batch(cpu), run_batch(gpu)
    rtol = 1e-9 if cpu.dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(b.loss, a.loss, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(b.final_x, a.final_x, rtol=rtol, atol=1e-6)
    for k, (steps, vals) in a.evals.items():
        np.testing.assert_allclose(b.evals[k][1], vals, rtol=rtol, atol=1e-6)
        np.testing.assert_array_equal(b.evals[k][0], steps)
    assert gpu.problem.init().device.type == "cuda"


def test_bench_gpu_runs_and_prints_members_times_steps_per_second():
    p = subprocess.run(
        [sys.executable, "bench/gpu.py", "--max-members", "1000", "--mlp-members", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[1].split()[:4] == ["problem", "members", "steps", "cpu"]
    rows = [ln.split() for ln in lines[2:-1]]
    assert [r[:3] for r in rows] == [["rosenbrock", "1,000", "200"], ["mlp", "4", "50"]]
    assert all(float(r[3].replace(",", "")) > 0 for r in rows)
    if CUDA:
        assert all(r[-2].endswith("x") for r in rows)
