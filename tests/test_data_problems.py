"""Data problems: exact f* (on the training split), the tutorials' linear-regression example,
stochastic gradients, batched members equal to members run alone (held-out metrics too), and a CNN
that learns. Held-out splits themselves: tests/test_validation_split.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from harness.job import results, run_batch
from harness.plan import plan
from problems.data import LinearRegression, LogisticRegression
from tests.conftest import cli_here, make_cfg, members


def run(*overrides):
    (batch,), (ov,) = plan(make_cfg(*overrides))
    res = run_batch(batch)
    return res, results(batch, res)


@pytest.mark.parametrize("dataset", ["synthetic", "diabetes", "seed_example"])
def test_linear_regression_f_star_matches_scikit_learn(dataset):
    from sklearn.linear_model import LinearRegression as SkLR

    p = LinearRegression(dataset=dataset)
    X, y = p.X.numpy(), p.y.numpy()
    sk = SkLR().fit(X, y)
    f_sk = float(np.mean((sk.predict(X) - y) ** 2))
    assert p.f_star == pytest.approx(f_sk, rel=1e-10, abs=1e-20)
    theta = torch.tensor([[sk.intercept_, *sk.coef_]], dtype=torch.float64)
    assert float(p.loss(theta)[0]) == pytest.approx(p.f_star, rel=1e-10, abs=1e-20)


def test_logistic_regression_f_star_matches_an_independent_solver():
    from sklearn.linear_model import LogisticRegression as SkLogit

    p = LogisticRegression(l2=0.01)
    X, y = p.X.numpy(), p.y.numpy()
    sk = SkLogit(C=1.0 / (len(y) * 0.01), tol=1e-12, max_iter=100_000).fit(X, y)
    theta = torch.tensor([[sk.intercept_[0], *sk.coef_[0]]], dtype=torch.float64)
    f_sk = float(p.loss(theta)[0])
    assert p.f_star <= f_sk + 1e-12  # ours is at least as low
    assert p.f_star == pytest.approx(f_sk, rel=1e-8)
    _, g = p.loss_and_grad(torch.tensor([p.minima[0].x], dtype=torch.float64))
    assert g.norm() < 1e-10


def test_seed_example_linear_regression():
    # x = (1, 2, 3), y = (2, 3, 4), theta = 0, lr 0.1, MSE: epoch 1 (0.6, 1.3333), 2 (0.5467, 1.1822),
    # 3 (0.5644, 1.1935); after 100 epochs (0.9588, 1.0181). The least-squares optimum is (1, 1).
    res, (m,) = run("problem=linear_regression", "problem.dataset=seed_example", "optimizer=gd", "lr=0.1", "steps=100")
    th = res.trajectory[:, 0]
    np.testing.assert_allclose(th[1], [0.6, 4 / 3], rtol=1e-12)
    np.testing.assert_allclose(th[2], [0.5467, 1.1822], atol=1e-4)
    np.testing.assert_allclose(th[3], [0.5644, 1.1935], atol=1e-4)
    np.testing.assert_allclose(th[100], [0.9588, 1.0181], atol=1e-4)
    assert m.summary["epochs"] == 100  # all 3 examples train: too few to hold any out
    assert not any(k.startswith(("final_val", "final_test")) for k in m.summary)
    # batch_size = 3 is the full batch: the same numbers
    res3, _ = run("problem=linear_regression", "problem.dataset=seed_example", "optimizer=gd", "lr=0.1", "steps=100", "batch_size=3")
    np.testing.assert_allclose(res3.trajectory, res.trajectory, rtol=1e-12)  # shuffled order: rounding only


def test_sgd_seeds_differ_and_repeat():
    common = ("problem=logistic_regression", "optimizer=gd", "lr=0.1", "steps=200", "batch_size=1")
    a, _ = run(*common, members({"seed": 0}, {"seed": 1}))
    b, _ = run(*common, members({"seed": 0}, {"seed": 1}))
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.allclose(a.loss[:, 0], a.loss[:, 1])
    _, (m,) = run(*common)
    assert m.summary["epochs"] == pytest.approx(200 / 341)  # an epoch is the training split: 569 less 114 validation and 114 test


@pytest.mark.parametrize(
    "problem,extra",
    [
        ("logistic_regression", ("steps=60", "batch_size=32")),
        ("linear_regression", ("steps=60", "batch_size=8", "problem.dataset=diabetes")),
        ("cnn", ("steps=20", "batch_size=16", "dtype=float64", "problem.eval_every=10")),  # networks: 20 steps, 3 evaluations
        ("mlp", ("steps=20", "batch_size=16", "dtype=float64", "problem.eval_every=10", "problem.activation=tanh", "problem.loss=mse")),
        ("rosenbrock", ("steps=60", "problem.grad_noise=0.5")),
    ],
)
def test_batched_members_equal_members_alone(problem, extra):
    grid = [{"lr": lr, "seed": s} for lr in (1e-3, 1e-2) for s in (0, 1)]
    common = (f"problem={problem}", "optimizer=adam", *extra)
    (batch,), _ = plan(make_cfg(*common, members(*grid)))
    res = run_batch(batch)
    for i, g in enumerate(grid):
        (alone,), _ = plan(make_cfg(*common, members(g)))
        one = run_batch(alone)
        np.testing.assert_allclose(res.loss[:, i], one.loss[:, 0], rtol=1e-6)
        np.testing.assert_allclose(res.final_x[i], one.final_x[0], rtol=1e-6, atol=1e-12)
        for k, (_steps, vals) in res.evals.items():
            np.testing.assert_allclose(vals[:, i], one.evals[k][1][:, 0], rtol=1e-6)


def test_cnn_learns_quickly():
    res, (m,) = run("problem=cnn", "optimizer=momentum", "lr=0.01", "batch_size=64", "steps=300", "problem.eval_every=100")
    assert m.summary["final_test_accuracy"] > 0.85
    assert res.loss[-20:, 0].mean() < 0.5 * res.loss[0, 0]


def test_data_commands_from_the_cli(tmp_path, store):
    for args in (
        ["problem=linear_regression", "optimizer=gd", "-m", "lr=0.01,0.1"],
        ["problem=logistic_regression", "optimizer=adam", "batch_size=32", "steps=300", "-m", "lr=1e-3,1e-2,1e-1", "seed=0,1,2"],
    ):
        p = cli_here([*args, f"tracking.uri={store}"], cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    c = MlflowClient(store)
    runs = [r for r in c.search_runs([c.get_experiment_by_name("harness").experiment_id], max_results=100) if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 11
    logit = [r for r in runs if r.data.params["problem"] == "logistic_regression"]
    assert all(r.data.params["batch_size"] == "32" and "final_suboptimality" in r.data.metrics for r in logit)
    assert all({"final_val_loss", "final_val_accuracy", "final_test_loss", "final_test_accuracy"} <= set(r.data.metrics) for r in logit)
    assert all({"final_val_loss", "final_test_loss"} <= set(r.data.metrics) for r in runs if r not in logit)
    hist = c.get_metric_history(logit[0].info.run_id, "epoch")
    assert max(h.value for h in hist) == pytest.approx(300 * 32 / 341)  # epochs of the 341-example training split


@pytest.mark.slow
def test_cnn_default_settings_reach_95_percent_within_two_minutes(tmp_path, store):
    p = cli_here(["problem=cnn", "optimizer=momentum", "batch_size=64", "steps=2000", f"tracking.uri={store}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    r = MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("harness").experiment_id])[0]
    assert r.data.metrics["final_test_accuracy"] >= 0.95
    assert r.data.metrics["final_val_accuracy"] >= 0.95  # seed 0: 96.9% validation, 97.8% test (1,079 training images)
    assert r.data.metrics["batch_wall_time_s"] < 120
    assert r.data.params["dtype"] == "float32"  # dtype=null, resolved to the problem's default
    assert len(MlflowClient(store).get_metric_history(r.info.run_id, "test_accuracy")) == 21
