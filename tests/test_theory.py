"""Measured behaviour against theory (numbers in the README's theory section) and the worked
examples of the tutorials this project grew from."""

from __future__ import annotations

import math

import pytest

from harness.job import results, run_batch
from harness.plan import plan
from tests.conftest import make_cfg, members

MU, L = 1.0, 100.0
KAPPA = L / MU
SEEDS = members({"seed": 0}, {"seed": 1}, {"seed": 2})


def run(*overrides):
    (batch,), (ov,) = plan(make_cfg(*overrides))
    res = run_batch(batch)
    return res, results(batch, res)


def test_gd_rate_at_the_optimal_step_matches_theory():
    # At lr = 2/(L+mu) the error contracts by rho = (kappa-1)/(kappa+1), so f - f* by rho^2.
    _, ms = run("problem=quadratic", "optimizer=gd", f"lr={2 / (L + MU)}", "steps=1500", SEEDS)
    rho = (KAPPA - 1) / (KAPPA + 1)
    for m in ms:
        assert m.summary["linear_rate"] == pytest.approx(rho**2, rel=1e-6)


def test_heavy_ball_rate_at_optimal_parameters_matches_theory():
    # Polyak's optimum: lr = 4/(sqrt L + sqrt mu)^2, momentum = rho^2, rho = (sqrt k - 1)/(sqrt k + 1).
    # At this critical damping the iteration matrix has a double eigenvalue, so the error is
    # ~ t rho^t and f - f* ~ t^2 rho^(2t): the fitted rate sits ~1.3% above rho^2.
    rho = (math.sqrt(KAPPA) - 1) / (math.sqrt(KAPPA) + 1)
    lr = 4 / (math.sqrt(L) + math.sqrt(MU)) ** 2
    _, ms = run("problem=quadratic", "optimizer=momentum", f"lr={lr}", f"optimizer.momentum={rho**2}", "steps=1500", SEEDS)
    for m in ms:
        assert m.summary["linear_rate"] == pytest.approx(rho**2, rel=0.02)
    # and it is far faster than the best GD rate, as theory says
    assert max(m.summary["linear_rate"] for m in ms) < ((KAPPA - 1) / (KAPPA + 1)) ** 2 - 0.2


@pytest.mark.parametrize("factor,diverges", [(1.95, False), (2.05, True)])
def test_gd_diverges_just_past_2_over_L(factor, diverges):
    res, ms = run("problem=quadratic", "optimizer=gd", f"lr={factor / L}", "steps=3000", SEEDS)
    for m in ms:
        assert (m.reason == "diverged") is diverges
        assert m.summary["diverged"] == float(diverges)
        if not diverges:
            assert m.summary["final_suboptimality"] < 1e-12


def test_seed_example_theta_minus_3_squared():
    # L(theta) = (theta - 3)^2 from theta = 0 with lr 0.1: 0.6, 1.08, ... -> 3.
    res, _ = run("problem=quadratic", "problem.dim=1", "problem.mu=2", "problem.L=2", "problem.center=[3]",
                 "problem.x0=[0]", "optimizer=gd", "lr=0.1", "steps=100")
    theta = res.trajectory[:, 0, 0]
    assert theta[1] == pytest.approx(0.6, rel=1e-12) and theta[2] == pytest.approx(1.08, rel=1e-12)
    assert theta[100] == pytest.approx(3.0, abs=1e-8)


def test_seed_example_x_squared():
    # f(x) = x^2 from x = 10 with lr 0.1: after 100 steps x = 10 * 0.8^100 ~ 2.04e-9.
    res, ms = run("problem=quadratic", "problem.dim=1", "problem.mu=2", "problem.L=2", "problem.x0=[10]",
                  "optimizer=gd", "lr=0.1", "steps=100")
    assert res.trajectory[100, 0, 0] == pytest.approx(10 * 0.8**100, rel=1e-12)
    assert ms[0].summary["final_loss"] == pytest.approx((10 * 0.8**100) ** 2, rel=1e-12)


def test_double_well_traps_gd_while_momentum_escapes():
    for opt, basin, reached in (("gd", "right", 0.0), ("momentum", "left", 1.0)):
        _, (m,) = run("problem=double_well", f"optimizer={opt}", "lr=0.01", "problem.x0=[2.0]", "steps=3000")
        assert m.tags["basin"] == basin and m.summary["global_min_reached"] == reached


def test_stopping_rules_fire_with_their_reason():
    common = ("problem=quadratic", "optimizer=gd", "lr=0.01", "steps=5000")
    cases = {"stop.grad_tol=1e-6": "grad_tol", "stop.x_tol=1e-9": "x_tol", "stop.target_loss=1e-8": "target_loss"}
    for override, reason in cases.items():
        res, (m,) = run(*common, override)
        assert m.reason == reason and m.summary["converged"] == 1.0 and m.summary["steps"] < 5000
    res, (m,) = run(*common, "stop.grad_tol=1e-6")
    assert res.grad_norm[-1, 0] <= 1e-6 < res.grad_norm[-2, 0]
    res, (m,) = run(*common, "stop.target_loss=1e-8")
    assert m.summary["final_loss"] <= 1e-8 and m.summary["steps_to_1e-08"] == m.summary["steps"]


# ---- each optimizer's stability edge (harness/theory.py) -------------------------------------------
EDGE_CASES = {  # optimizer, its overrides, the edge theory gives on L = 100
    "gd": ("gd", [], 2 / L),
    "heavy ball, b=0.9": ("momentum", [], 2 * 1.9 / L),
    "heavy ball, b=0.5": ("momentum", ["optimizer.momentum=0.5"], 2 * 1.5 / L),
    "nesterov, b=0.9": ("nesterov", [], 2 * 1.9 / (2.8 * L)),
}


def edge_of(optimizer: str, overrides: list[str]):
    import pandas as pd

    from harness import theory

    (batch,), _ = plan(make_cfg("problem=quadratic", f"optimizer={optimizer}", *overrides))
    params = {f"params.optimizer.{k}": str(v) for k, v in batch.members[0]["optimizer"].items()}
    return theory.stability_edge(pd.DataFrame([params]), L)


@pytest.mark.parametrize("optimizer, overrides, expected", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_each_edge_is_read_from_the_configuration_and_holds(optimizer, overrides, expected):
    edge = edge_of(optimizer, overrides)
    assert edge.lr == pytest.approx(expected, rel=1e-12)
    for factor, diverges in ((0.95, False), (1.05, True)):  # 5% either side of the edge
        _, ms = run("problem=quadratic", f"optimizer={optimizer}", *overrides, f"lr={factor * edge.lr}", "steps=3000", SEEDS)
        assert all((m.reason == "diverged") is diverges for m in ms), (factor, [m.reason for m in ms])


@pytest.mark.parametrize("optimizer, stable, diverged", [("gd", 0.01, 0.0316), ("momentum", 0.0316, 0.1), ("nesterov", 0.01, 0.0316)])
def test_demo_grid_diverges_one_grid_step_past_each_edge(optimizer, stable, diverged):
    """The demo's quadratic and half-decade grid: the last stable lr and the first diverged one bracket the edge."""
    edge = edge_of(optimizer, [])
    assert stable < edge.lr < diverged
    for lr, diverges in ((stable, False), (diverged, True)):
        _, ms = run("problem=quadratic", f"optimizer={optimizer}", f"lr={lr}", "steps=1000", SEEDS)
        assert all((m.reason == "diverged") is diverges for m in ms)


def test_edges_belong_only_to_their_own_configurations():
    import pandas as pd

    from harness import theory

    rows = []
    for cfg, target, b, nesterov in (("gd", "optimizers.sgd.sgd", 0.0, False), ("momentum (momentum=0.5)", "optimizers.sgd.sgd", 0.5, False),
                                     ("momentum (momentum=0.9)", "optimizers.sgd.sgd", 0.9, False), ("nesterov", "optimizers.sgd.sgd", 0.9, True),
                                     ("adam", "optimizers.adam.adam", None, None)):
        rows.append({"problem": "quadratic", "problem_name": "quadratic", "config": cfg, "config_order": (len(rows),), "params.problem.mu": "1.0", "params.problem.L": "100.0",
                     "params.optimizer._target_": target, "params.optimizer.momentum": None if b is None else str(b),
                     "params.optimizer.nesterov": None if nesterov is None else str(nesterov)})
    edges = theory.edges(pd.DataFrame(rows), "quadratic")
    assert list(edges) == [r["config"] for r in rows[:4]]  # in the report's order
    assert {c: round(e.lr, 6) for c, e in edges.items()} == {"gd": 0.02, "momentum (momentum=0.5)": 0.03, "momentum (momentum=0.9)": 0.038,
                                                             "nesterov": round(3.8 / 280, 6)}
    other = pd.DataFrame(rows).assign(problem_name="rosenbrock")
    assert theory.edges(other, "quadratic") == {}  # no quadratic, no edge
