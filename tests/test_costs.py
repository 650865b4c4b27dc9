"""Runs compared in the right unit: gradient evaluations (L-BFGS's closure calls, as torch counts
them), examples seen on data problems, and curves that end exactly at the final metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from harness.job import run_job
from harness.plan import plan
from harness.stats import evals_key, target_key
from harness.store import read_runs, run_curves
from tests.conftest import make_cfg, parquet_curves

ROSENBROCK_START = [-1.2, 1.0]
LBFGS = {"lr": 1.0, "max_iter": 20, "history_size": 100, "line_search_fn": "strong_wolfe"}  # conf/optimizer/lbfgs.yaml


def logged(store: str, *overrides: str) -> tuple[dict[str, float], MlflowClient, str]:
    """Run the harness in-process into ``store``; (the member's metrics as stored, client, run id)."""
    (row,) = run_job(make_cfg(*overrides, f"tracking.uri={store}"))
    c = MlflowClient(store)
    return c.get_run(row["run_id"]).data.metrics, c, row["run_id"]


def training_examples(*overrides: str) -> int:
    """The size of the problem's training set (the examples a full-batch gradient uses)."""
    (batch,), _ = plan(make_cfg(*overrides))
    return batch.problem.samples


def lbfgs_by_hand(steps: int) -> tuple[list[int], list[float]]:
    """torch.optim.LBFGS on Rosenbrock from (-1.2, 1), ``steps`` calls of step(): its own
    ``state['func_evals']`` and the loss at the start and after each step."""
    p = torch.tensor(ROSENBROCK_START, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([p], **LBFGS)

    def f(x):
        return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2

    def closure():
        opt.zero_grad()
        loss = f(p)
        loss.backward()
        return loss

    evals, losses = [0], [float(f(p.detach()))]
    for _ in range(steps):
        opt.step(closure)
        evals.append(opt.state[p]["func_evals"])
        losses.append(float(f(p.detach())))
    return evals, losses


def lbfgs_cfg(steps: int) -> list[str]:
    return [
        "problem=rosenbrock",
        f"problem.x0=[{ROSENBROCK_START[0]},{ROSENBROCK_START[1]}]",
        "optimizer=lbfgs",
        f"steps={steps}",
    ]


@pytest.mark.parametrize("steps", [2, 10])
def test_lbfgs_grad_evals_equal_torchs_own_func_evals(store, steps):
    m, _, _ = logged(store, *lbfgs_cfg(steps))
    evals, _ = lbfgs_by_hand(steps)
    assert m["steps"] == steps
    assert m["grad_evals"] == evals[-1]
    assert m["grad_evals"] > 2 * steps  # the line search evaluates several times per step: not one per step


def test_lbfgs_evals_to_a_target_is_the_closure_count_at_that_step(store):
    steps = 10
    m, _, _ = logged(store, *lbfgs_cfg(steps))
    evals, losses = lbfgs_by_hand(steps)
    assert m["evals_to_1e-06"] == evals[int(m["steps_to_1e-06"])]
    for level in (1e-2, 1e-4, 1e-6):
        hit = next(t for t, f in enumerate(losses) if f <= level)  # f* = 0
        assert m[target_key(level)] == hit and m[evals_key(level)] == evals[hit]
        assert evals_key(level) == target_key(level).replace("steps_to_", "evals_to_")


def test_a_functional_optimizer_takes_one_gradient_per_step(store):
    m, _, _ = logged(store, "problem=rosenbrock", "optimizer=adam", "lr=0.01", "steps=37")
    assert m["steps"] == 37 and m["grad_evals"] == 37
    assert not any(k.startswith("evals_to_") for k in m)  # one per step: evals_to would repeat steps_to
    assert "examples" not in m and "epochs" not in m  # not a data problem


def test_a_mini_batch_data_run_counts_the_examples_it_has_seen(store):
    args = ["problem=logistic_regression", "optimizer=adam", "lr=0.01", "batch_size=32", "steps=50"]
    m, _, _ = logged(store, *args)
    assert m["steps"] == 50 and m["grad_evals"] == 50
    assert m["examples"] == 50 * 32
    assert m["epochs"] == pytest.approx(50 * 32 / training_examples(*args))


def test_a_full_batch_data_run_sees_the_training_set_at_every_step(store):
    args = ["problem=linear_regression", "optimizer=gd", "lr=0.1", "steps=20"]
    m, _, _ = logged(store, *args)
    n = training_examples(*args)
    assert n > 32 and m["examples"] == 20 * n and m["epochs"] == 20


def test_the_stored_curve_ends_at_final_suboptimality_below_float32s_range(store):
    """Nesterov on the demo's quadratic (lr=0.01, 1000 steps, seed 0) ends at f - f* ~ 1e-52, which
    float32 flushes to 0: the curve's last step is stored in float64."""
    m, c, run_id = logged(store, "problem=quadratic", "optimizer=nesterov", "lr=0.01", "seed=0", "steps=1000")
    assert 0 < m["final_suboptimality"] < np.finfo(np.float32).smallest_subnormal
    full = parquet_curves(store, run_id)  # the file itself, read with pandas
    assert full["suboptimality"].iloc[-1] == m["final_suboptimality"]
    assert full["loss"].iloc[-1] == m["final_loss"] and full["grad_norm"].iloc[-1] == m["final_grad_norm"]
    assert len(full) == 1001 and (full["suboptimality"] > 0).all()  # no step flushed to 0 on the way either
    ours = run_curves(read_runs(store, "harness", filter_string=f"attributes.run_id = '{run_id}'"), run_id)  # and through the harness
    assert ours["suboptimality"][-1] == m["final_suboptimality"] and ours["loss"][-1] == m["final_loss"]
