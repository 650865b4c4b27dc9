"""Sampled sweeps: ``interval(a, b)`` and ``tag(log, interval(a, b))`` as scrambled Sobol trials.

One real sweep through the CLI into a sqlite store: the points it stored are scipy's, crossed with the
grid keys and seeds; the same command finds every point stored (the resume path), and another
``search.seed`` draws other points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import qmc

from harness.search import Interval, sample
from optimizers.base import ConfigError
from tests.conftest import cli_here, sweep_runs

ARGS = [
    "problem=quadratic",
    "problem.dim=2",
    "steps=10",
    "search.trials=4",
    "search.seed=3",
    "-m",
    "optimizer=momentum,nesterov",
    "seed=0,1",
    "lr=tag(log, interval(1e-4, 0.1))",
    "optimizer.momentum=interval(0, 0.99)",
]


def scipy_points(trials: int, seed: int) -> list[tuple[float, float]]:
    """(lr, momentum) per trial from scipy's scrambled Sobol sequence, mapped here without the harness."""
    u = qmc.Sobol(2, scramble=True, seed=seed).random(trials)
    lr = np.exp(np.log(1e-4) + u[:, 0] * (np.log(0.1) - np.log(1e-4)))
    return list(zip(lr, 0.99 * u[:, 1]))


def stored(uri: str) -> dict[tuple[str, int], list[tuple[float, float]]]:
    _, kids = sweep_runs(uri)
    out: dict[tuple[str, int], list] = {}
    for r in kids:
        p = r.data.params
        out.setdefault((p["optimizer"], int(p["seed"])), []).append((float(p["lr"]), float(p["optimizer.momentum"])))
    return {k: sorted(v) for k, v in out.items()}


def close(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-9) for p, q in zip(sorted(a), sorted(b)) for x, y in zip(p, q)
    )


def test_sampled_sweep_stores_scipys_points_crossed_with_the_grid_and_resumes(tmp_path, store):
    p = cli_here([f"tracking.uri={store}", *ARGS], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    runs = stored(store)
    assert set(runs) == {
        (o, s) for o in ("momentum", "nesterov") for s in (0, 1)
    }  # crossed with the grid keys and seeds
    for points in runs.values():
        assert close(points, scipy_points(4, 3))
    parents, kids = sweep_runs(store)
    assert len(parents) == 1 and len(kids) == 16
    assert (
        parents[0].data.tags["harness.search"]
        == "lr=tag(log, interval(0.0001, 0.1)); optimizer.momentum=interval(0, 0.99); 4 Sobol trials, seed 3"
    )
    assert "Sweep: 16 runs in 2 batched job(s)" in p.stdout + p.stderr  # sampled members batch like grid points

    again = cli_here(
        [f"tracking.uri={store}", *ARGS], cwd=tmp_path
    )  # the same command draws the same points: nothing to rerun
    assert again.returncode == 0 and "Sweep already complete: all 16 runs" in again.stdout, (
        again.stdout + again.stderr[-2000:]
    )

    from mlflow import MlflowClient

    for r in kids[:3]:  # as if the sweep had stopped before these: the same command runs exactly them
        MlflowClient(store).delete_run(r.info.run_id)
    resumed = cli_here([f"tracking.uri={store}", *ARGS], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "13 of 16 runs stored from the current code; 3 runs not stored yet" in resumed.stdout + resumed.stderr
    assert stored(store) == runs and len(sweep_runs(store)[0]) == 1

    other = cli_here(
        [f"tracking.uri={store}", *[a.replace("search.seed=3", "search.seed=4") for a in ARGS]], cwd=tmp_path
    )
    assert other.returncode == 0, other.stderr[-2000:]
    assert len(sweep_runs(store)[0]) == 2  # other points, a new sweep
    assert not close(scipy_points(4, 4), scipy_points(4, 3))


def test_points_are_scipys_and_log_points_stay_inside():
    spaces = [Interval("lr", 1e-5, 1.0, True), Interval("optimizer.momentum", 0.0, 0.9, False)]
    points = sample(spaces, 8, 0)
    u = qmc.Sobol(2, scramble=True, seed=0).random(8)
    for row, (lr, m) in zip(u, points):
        assert math.isclose(float(lr.split("=")[1]), 10 ** (-5 + 5 * row[0]), rel_tol=1e-5)
        assert math.isclose(float(m.split("=")[1]), 0.9 * row[1], rel_tol=1e-5, abs_tol=1e-9)
    assert sample(spaces, 8, 0) == points and sample(spaces, 8, 1) != points


@pytest.mark.parametrize(
    "space, trials, message",
    [
        (
            Interval("lr", 1.0, 0.1, False),
            4,
            "lr=interval(1, 0.1) is not allowed; allowed: interval(a, b) with finite a < b",
        ),
        (
            Interval("lr", 0.0, 1.0, True),
            4,
            "lr=tag(log, interval(0, 1)) is not allowed; allowed: tag(log, interval(a, b)) with 0 < a < b",
        ),
        (Interval("lr", 0.1, 1.0, False), 0, "search.trials=0 is not allowed; allowed: an integer >= 1"),
    ],
)
def test_bad_spaces_are_named(space, trials, message):
    with pytest.raises(ConfigError) as e:
        sample([space], trials, 0)
    assert str(e.value) == message
