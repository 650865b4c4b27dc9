"""Bad input: one line naming the key, the value and what is allowed; non-zero exit; no
traceback; no MLflow run created."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli

CASES = {
    "unknown optimizer": (["optimizer=adamx"], ["optimizer=adamx", "allowed:", "adam, adamw"]),
    "unknown problem in a sweep": (["-m", "problem=rosenbrock,nope"], ["problem=nope", "allowed:", "rastrigin"]),
    "non-numeric lr": (["lr=abc"], ["lr='abc'", "allowed: a number > 0"]),
    "zero lr": (["lr=0"], ["lr=0", "allowed: a number > 0"]),
    "negative lr": (["lr=-0.1"], ["lr=-0.1", "allowed: a number > 0"]),
    "one bad lr in a sweep": (["-m", "lr=0.1,-1,0.01"], ["lr=-1", "allowed"]),
    "zero steps": (["steps=0"], ["steps=0", "allowed: an integer > 0"]),
    "negative steps": (["steps=-5"], ["steps=-5", "allowed: an integer > 0"]),
    "beta >= 1": (["optimizer.betas=[0.9,1.0]"], ["optimizer.betas[1]=1.0", "allowed: 0 <= beta < 1"]),
    "negative momentum": (["optimizer=momentum", "optimizer.momentum=-0.5"], ["optimizer.momentum=-0.5", "allowed: momentum >= 0"]),
    "negative eps": (["optimizer=rmsprop", "optimizer.eps=-1e-8"], ["optimizer.eps=-1e-08", "allowed: eps >= 0"]),
    "bad torch.optim value": (["optimizer=nadam", "optimizer.momentum_decay=-1"], ["momentum_decay", "-1"]),
    "unknown top-level key": (["foo=1"], ["'foo'", "allowed:", "lr, steps"]),
    "unknown added key": (["+foo=1"], ["'foo'", "allowed:"]),
    "unknown optimizer key": (["optimizer.betaz=0.9"], ["'optimizer.betaz'", "allowed:", "betas"]),
    "unknown stop rule": (["stop.gradtol=1e-6"], ["'stop.gradtol'", "allowed:", "grad_tol"]),
    "wrong x0 length": (["problem.x0=[1,2,3]"], ["problem.x0=[1.0, 2.0, 3.0]", "allowed: 2 numbers"]),
    "zero batch_size": (["problem=logistic_regression", "batch_size=0"], ["batch_size=0", "allowed: null (full batch) or an integer 1..341"]),
    "batch_size above the dataset": (["problem=linear_regression", "problem.dataset=diabetes", "batch_size=1000"], ["batch_size=1000", "1..266"]),
    "batch_size on an analytic problem": (["problem=rosenbrock", "batch_size=8"], ["batch_size=8", "allowed: null"]),
    "unknown dataset": (["problem=linear_regression", "problem.dataset=iris"], ["problem.dataset='iris'", "allowed: synthetic, diabetes, seed_example, or a path to a .csv or .npz file"]),
    "dim of a data problem": (["problem=linear_regression", "+problem.dim=3"], ["'problem.dim'", "allowed:", "fit_intercept"]),
    "box of a data problem": (["problem=logistic_regression", "+problem.box=[0,1]"], ["'problem.box'", "allowed:", "target"]),
    "dim of a 2-D landscape": (["problem=himmelblau", "+problem.dim=3"], ["'problem.dim'", "allowed:"]),
    "non-boolean fit_intercept": (["problem=linear_regression", "problem.fit_intercept=maybe"], ["problem.fit_intercept='maybe'", "allowed: true or false"]),
    "target with a bundled dataset": (["problem=linear_regression", "problem.target=y"], ["problem.target='y'", "allowed: null"]),
    "negative l2": (["problem=logistic_regression", "problem.l2=-0.1"], ["problem.l2=-0.1", "allowed: a number >= 0"]),
    "negative gradient noise": (["problem.grad_noise=-1"], ["problem.grad_noise=-1", "allowed: a number >= 0"]),
    "interval with a > b": (["-m", "lr=interval(1, 0.1)"], ["lr=interval(1, 0.1)", "allowed: interval(a, b) with finite a < b"]),
    "log interval from 0": (["-m", "lr=tag(log, interval(0, 1))", "search.trials=4"], ["lr=tag(log, interval(0, 1))", "0 < a < b"]),
    "interval over problems": (["-m", "problem=interval(0,1)"], ["problem=interval(0,1)", "allowed: a list of problem names"]),
    "no trials": (["-m", "lr=interval(0.1, 1)", "search.trials=0"], ["search.trials=0", "allowed: an integer >= 1"]),
    "unreachable tracking server": (["tracking.uri=http://127.0.0.1:9"], ["tracking.uri=http://127.0.0.1:9", "unreachable", "allowed:"]),
    "unreachable tracking server in a sweep": (["tracking.uri=http://127.0.0.1:9", "-m", "lr=0.1,0.2"], ["tracking.uri=http://127.0.0.1:9", "unreachable"]),
}


@pytest.mark.parametrize("args,expected", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_clear_line_and_creates_nothing(tmp_path, args, expected):
    p = run_cli(["steps=20", *args] if not any(a.startswith("steps=") for a in args) else args, cwd=tmp_path)
    assert p.returncode != 0
    err = p.stderr.strip()
    assert "Traceback" not in p.stderr + p.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for piece in expected:
        assert piece in err, (piece, err)
    db = tmp_path / "mlflow.db"
    if db.exists():
        client = MlflowClient(f"sqlite:///{db}")
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_sqlite_store_in_a_missing_directory(tmp_path):
    p = run_cli(["steps=5", f"tracking.uri=sqlite:///{tmp_path}/no/such/dir/m.db"], cwd=tmp_path)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error: tracking.uri=sqlite:///") and "not writable" in p.stderr
