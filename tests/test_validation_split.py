"""Held-out splits of the data problems: a validation and a test split drawn from ``data_seed``,
disjoint from each other and from the training split; f* on the training split alone; held-out
metrics logged per member as ``final_val_loss``, ``final_test_loss`` (and accuracies for
classification); bad fractions refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from harness.job import results, run_batch, run_job
from harness.plan import plan
from optimizers.base import ConfigError
from problems.base import rng
from problems.cnn import CNN
from problems.data import LinearRegression, LogisticRegression, split
from tests.conftest import cli_here, make_cfg, members, parquet_curves

HELD_OUT = {"linear_regression": ["val_loss", "test_loss"],
            "logistic_regression": ["val_loss", "val_accuracy", "test_loss", "test_accuracy"],
            "cnn": ["val_loss", "val_accuracy", "test_loss", "test_accuracy"]}


def _rows(*arrays) -> list[set]:
    """Each array's examples as a set of rows."""
    return [set(map(tuple, np.asarray(a).tolist())) for a in arrays]


@pytest.mark.parametrize("n, val, test", [(442, 0.2, 0.2), (569, None, None), (1797, 0.1, 0.3), (7, 0.3, 0.3), (60, 0, 0.25)])
def test_split_is_disjoint_covers_every_example_and_has_the_asked_sizes(n, val, test):
    train, v, t = split(n, val, test, 0, "data_split")
    assert len(np.intersect1d(train, v)) == len(np.intersect1d(train, t)) == len(np.intersect1d(v, t)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, v, t])), np.arange(n))
    fv, ft = (0.2 if f is None else f for f in (val, test))  # null: 0.2 from 50 examples on
    assert (len(v), len(t)) == (round(fv * n), round(ft * n))
    assert all(np.all(np.diff(s) > 0) for s in (train, v, t))  # each split keeps the data's order


def test_the_same_data_seed_gives_the_same_split_and_another_one_a_different_split():
    a, b, c = (split(569, 0.2, 0.2, s, "data_split") for s in (0, 0, 1))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[2], c[2])
    # the problems too: their held-out examples follow data_seed, not the run's seed
    p0, p0_again, p1 = LogisticRegression(data_seed=0, seeds=[3]), LogisticRegression(data_seed=0, seeds=[4]), LogisticRegression(data_seed=1)
    for k in ("val", "test"):
        assert torch.equal(p0.held_out[k][0], p0_again.held_out[k][0]) and torch.equal(p0.held_out[k][1], p0_again.held_out[k][1])
        assert not torch.equal(p0.held_out[k][0], p1.held_out[k][0])
    assert torch.equal(p0.X, p0_again.X) and not torch.equal(p0.X, p1.X)
    assert LinearRegression(data_seed=0).held_out["val"][1].tolist() != LinearRegression(data_seed=1).held_out["val"][1].tolist()


def test_each_problem_trains_on_the_rest_and_holds_out_disjoint_validation_and_test_examples():
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

    cases = [(LinearRegression(dataset="diabetes", standardize=False), load_diabetes(return_X_y=True), 266, 88),
             (LogisticRegression(standardize=False), load_breast_cancer(return_X_y=True), 341, 114)]
    for p, (X, y), n_train, n_held in cases:
        train, val, test = p.X.numpy(), p.held_out["val"][0].numpy(), p.held_out["test"][0].numpy()
        assert (len(train), len(val), len(test)) == (n_train, n_held, n_held) and p.samples == n_train
        tr, va, te = _rows(train, val, test)
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr | va | te == _rows(X)[0]  # every example is in exactly one split
        # labels travel with their examples
        full = {tuple(r): lab for r, lab in zip(X.tolist(), y.tolist())}
        for k, (Xs, ys) in p.held_out.items():
            assert all(full[tuple(r)] == lab for r, lab in zip(Xs.tolist(), ys.tolist())), k
    # the CNN: 60/20/20 from the same kind of split, and its test split is the former 80/20 split's test split
    cnn = CNN()
    X, _ = load_digits(return_X_y=True)
    train, val, test = split(1797, 0.2, 0.2, 0, "digits_split", auto=False)
    assert (cnn.samples, len(val), len(test)) == (1079, 359, 359)
    np.testing.assert_array_equal(test, np.sort(rng(0, "digits_split").permutation(1797)[:359]))
    mean, std = (X[train] / 16).mean(), (X[train] / 16).std()  # training pixels only
    for got, rows in ((cnn.X, train), (cnn.held_out["val"][0], val), (cnn.held_out["test"][0], test)):
        np.testing.assert_allclose(got.reshape(len(rows), 64).numpy(), (X[rows] / 16 - mean) / std, rtol=1e-6, atol=1e-6)


def test_f_star_and_standardization_come_from_the_training_split_alone():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    train, _, _ = split(442, None, None, 0, "data_split")
    p = LinearRegression(dataset="diabetes")
    Xt = X[train]
    Xs = (Xt - Xt.mean(0)) / Xt.std(0)  # training statistics: no held-out example leaks into training
    np.testing.assert_allclose(p.X.numpy(), Xs, rtol=1e-12, atol=1e-12)
    A = np.column_stack([np.ones(len(train)), Xs])
    theta, *_ = np.linalg.lstsq(A, y[train], rcond=None)
    assert p.f_star == pytest.approx(float(np.mean((A @ theta - y[train]) ** 2)), rel=1e-12)
    whole = LinearRegression(dataset="diabetes", val_fraction=0, test_fraction=0)
    assert whole.samples == 442 and not whole.held_out and abs(whole.f_star - p.f_star) > 1.0  # the split changes f*
    np.testing.assert_allclose(p.minima[0].x, theta, rtol=1e-10)


def test_tiny_data_is_fitted_whole_unless_asked():
    p = LinearRegression(dataset="seed_example")  # null fractions: under 50 examples nothing is held out
    assert p.samples == 3 and p.held_out == {} and p.evaluate(p.init()) == {}
    q = LinearRegression(dataset="seed_example", val_fraction=0.34)  # asked for: one example held out
    assert q.samples == 2 and len(q.held_out["val"][1]) == 1 and "test" not in q.held_out
    assert set(q.evaluate(q.init())) == {"val_loss"}


def _reference(problem: str, x: np.ndarray) -> dict[str, float]:
    """Held-out metrics at x computed from scratch with numpy: the split from ``split``, features
    standardized with training statistics, MSE or log-loss (no penalty) and accuracy."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    X, y = load_diabetes(return_X_y=True) if problem == "linear_regression" else load_breast_cancer(return_X_y=True)
    train, val, test = split(len(y), None, None, 0, "data_split")
    X = (X - X[train].mean(0)) / X[train].std(0)
    out = {}
    for k, rows in (("val", val), ("test", test)):
        z = x[0] + X[rows] @ x[1:]
        if problem == "linear_regression":
            out[f"{k}_loss"] = float(np.mean((z - y[rows]) ** 2))
        else:
            out[f"{k}_loss"] = float(np.mean(np.logaddexp(0, z) - y[rows] * z))
            out[f"{k}_accuracy"] = float(np.mean((z > 0) == (y[rows] == 1)))
    return out


@pytest.mark.parametrize("problem, extra", [("logistic_regression", ()), ("linear_regression", ("problem.dataset=diabetes",))])
def test_held_out_metrics_are_logged_per_member_and_equal_a_reference(tmp_path, store, problem, extra):
    args = [f"problem={problem}", "optimizer=gd", "steps=40", "problem.eval_every=10", *extra]
    grid = [{"lr": 0.1, "seed": 0}, {"lr": 0.01, "seed": 0}]
    rows = run_job(make_cfg(*args, members(*grid), f"tracking.uri={store}"))
    (batch,), _ = plan(make_cfg(*args, members(*grid)))
    res = run_batch(batch)  # the same deterministic runs, in process, for their final points
    c = MlflowClient(store)
    runs = {r.info.run_id: r for r in c.search_runs([c.get_experiment_by_name("harness").experiment_id])}
    assert len(runs) == 2
    finals = []
    for i, row in enumerate(rows):
        m = runs[row["run_id"]].data.metrics
        assert {k.removeprefix("final_") for k in m if k.startswith(("final_val", "final_test"))} == set(HELD_OUT[problem])
        ref = _reference(problem, res.final_x[i])
        for k in HELD_OUT[problem]:
            assert m[f"final_{k}"] == pytest.approx(ref[k], rel=1e-9), k
        finals.append(m["final_val_loss"])
        curves = parquet_curves(store, row["run_id"]).dropna(subset=["val_loss"])  # held-out metrics: null between evaluations
        assert curves["step"].tolist() == [0, 10, 20, 30, 40]  # every eval_every steps and the last
        assert curves["val_loss"].iloc[-1] == m["final_val_loss"] and curves["test_loss"].iloc[-1] == m["final_test_loss"]
    assert finals[0] != finals[1]  # per member, not one number for the batch


def test_the_regressions_evaluate_only_at_the_end_by_default():
    res, (m,) = _run("problem=logistic_regression", "optimizer=gd", "lr=0.1", "steps=30")
    assert {k: s.tolist() for k, (s, _) in res.evals.items()} == {k: [30] for k in HELD_OUT["logistic_regression"]}
    assert 0.9 < m.summary["final_val_accuracy"] <= 1 and 0.9 < m.summary["final_test_accuracy"] <= 1


def _run(*overrides):
    (batch,), _ = plan(make_cfg(*overrides))
    res = run_batch(batch)
    return res, results(batch, res)


def test_the_cnn_logs_validation_and_test_metrics(tmp_path, store):
    rows = run_job(make_cfg("problem=cnn", "optimizer=momentum", "lr=0.05", "batch_size=64", "steps=4", "problem.eval_every=2",
                            f"tracking.uri={store}"))
    c = MlflowClient(store)
    r = c.get_run(rows[0]["run_id"])
    for k in HELD_OUT["cnn"]:
        assert f"final_{k}" in r.data.metrics, k
        assert [h.step for h in c.get_metric_history(r.info.run_id, k)] == [0, 2, 4]
    assert 0 <= r.data.metrics["final_val_accuracy"] <= 1 and r.data.metrics["final_val_loss"] != r.data.metrics["final_test_loss"]
    # the numbers are the network's on each split: evaluate the final parameters split by split
    (batch,), _ = plan(make_cfg("problem=cnn", "optimizer=momentum", "lr=0.05", "batch_size=64", "steps=4"))
    res = run_batch(batch)
    cnn, x = batch.problem, torch.as_tensor(res.final_x, dtype=torch.float32)
    for k, (images, labels) in cnn.held_out.items():
        lg = cnn.outputs(x, images.view(-1, 1, 8, 8))[0]
        assert r.data.metrics[f"final_{k}_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(lg, labels)), rel=1e-5)
        assert r.data.metrics[f"final_{k}_accuracy"] == pytest.approx(float((lg.argmax(-1) == labels).double().mean()), abs=1e-12)


BAD = {
    "validation fraction of 1": (["problem=linear_regression", "problem.val_fraction=1.0"],
                                 "error: problem.val_fraction=1.0 is not allowed; allowed: null (auto: 0.2 with at least 50 examples, else 0) "
                                 "or a number in [0, 1) (0: no such split)"),
    "negative test fraction": (["problem=logistic_regression", "problem.test_fraction=-0.1"],
                               "error: problem.test_fraction=-0.1 is not allowed; allowed: null (auto: 0.2 with at least 50 examples, else 0) "
                               "or a number in [0, 1) (0: no such split)"),
    "fractions summing to 1": (["problem=logistic_regression", "problem.val_fraction=0.5", "problem.test_fraction=0.5"],
                               "error: problem.val_fraction=0.5 with problem.test_fraction=0.5 sums to 1; allowed: fractions that sum to less than 1 "
                               "(the rest is the training set)"),
    "a split of no example": (["problem=linear_regression", "problem.test_fraction=0.001"],
                              "error: problem.test_fraction=0.001 holds out 0 of the 200 examples; allowed: a fraction >= 0.005 (at least one example) or 0"),
    "no training example": (["problem=linear_regression", "problem.dataset=seed_example", "problem.val_fraction=0.5", "problem.test_fraction=0.4"],
                            "error: problem.val_fraction=0.5 with problem.test_fraction=0.4 holds out 2 + 1 of the 3 examples; "
                            "allowed: fractions that leave at least one training example"),
    "no validation split for the CNN": (["problem=cnn", "problem.val_fraction=0"], "error: problem.val_fraction=0 is not allowed; allowed: a number in (0, 1)"),
    "negative data_seed": (["problem=logistic_regression", "problem.data_seed=-1"], "error: problem.data_seed=-1 is not allowed; allowed: an integer >= 0"),
    "negative eval_every": (["problem=linear_regression", "problem.eval_every=-5"],
                            "error: problem.eval_every=-5 is not allowed; allowed: an integer >= 0 (0: only at the end)"),
}


@pytest.mark.parametrize("args, expected", BAD.values(), ids=BAD.keys())
def test_bad_fractions_are_refused_in_one_line(args, expected):
    with pytest.raises(ConfigError) as e:
        plan(make_cfg(*args))
    assert "error: " + str(e.value) == expected


@pytest.mark.parametrize("name", ["fractions summing to 1", "no validation split for the CNN"])
def test_bad_fractions_from_the_command_line_exit_2_with_one_line_and_store_nothing(tmp_path, name):
    args, expected = BAD[name]
    p = cli_here([*args, "steps=5", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"], cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == expected, p.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_a_member_that_stops_early_still_has_its_held_out_metrics(store):
    # lr=1 meets stop.grad_tol long before the batch's last step (the only evaluation): its metrics are
    # those of the point it stopped at, which it keeps while the others run on
    args = ["problem=logistic_regression", "optimizer=gd", "steps=300", "stop.grad_tol=0.005"]
    grid = [{"lr": 1.0, "seed": 0}, {"lr": 0.001, "seed": 0}]
    rows = run_job(make_cfg(*args, members(*grid), f"tracking.uri={store}"))
    (batch,), _ = plan(make_cfg(*args, members(*grid)))
    res = run_batch(batch)
    early = next(r for r in rows if r["lr"] == 1.0)
    assert early["stop_reason"] == "grad_tol" and early["steps"] < 300
    ref = _reference("logistic_regression", res.final_x[0])
    for k in HELD_OUT["logistic_regression"]:
        assert early[f"final_{k}"] == pytest.approx(ref[k], rel=1e-9)
    (m,) = results(batch, res)[:1]
    assert m.sparse["val_loss"][0].tolist() == [early["steps"]]  # recorded at its own stop step
