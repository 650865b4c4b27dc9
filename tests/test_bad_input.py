"""Bad input: one line naming the key, the value and what is allowed; exit 2; no traceback; no
MLflow run created. The command line runs in this process (``harness.__main__.cli``): what needs a
process of its own (signals) is in test_resume.py and test_report.py."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager

import pytest
from mlflow import MlflowClient

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
    "grid without -m": (["grid=lr_decades", "problem=quadratic"], ["grid=lr_decades is a sweep and runs only with -m", "allowed: python -m harness grid=lr_decades ... -m"]),
    "lr and optimizer.lr": (["lr=0.01", "optimizer.lr=0.1"], ["lr=0.01 and optimizer.lr=0.1 both set the learning rate", "allowed: one of them"]),
    "lr and optimizer.lr in a sweep": (["optimizer.lr=0.1", "-m", "lr=0.01,0.1"], ["lr=0.01,0.1 and optimizer.lr=0.1", "allowed: one of them"]),
    "malformed sweep override": (["-m", "seed=range(5"], ["cannot parse 'seed=range(5'", "allowed: key=value", "range(start,stop)"]),
    "malformed override": (["lr=[0.1"], ["cannot parse 'lr=[0.1'", "allowed:"]),
    "override without a value": (["foo"], ["cannot parse 'foo': missing EQUAL", "allowed: key=value"]),
    "near-miss optimizer": (["optimizer=sgd"], ["optimizer=sgd is not allowed; allowed: adagrad,", "(did you mean gd?)"]),
    "near-miss problem in a sweep": (["-m", "problem=rosenbrock,rastrign"], ["problem=rastrign", "(did you mean rastrigin?)"]),
    "near-miss key": (["step=10"], ["unknown key 'step'", "(did you mean steps?)"]),
    "internal key": (["tracking.parent_run_id=abc"], ["unknown key 'tracking.parent_run_id'", "allowed: uri, experiment, resume"]),
    "quadratic above its dimension limit": (["problem=quadratic", "problem.dim=20000"], ["problem.dim=20000 is not allowed for quadratic", "allowed: an integer 1..2000"]),
    "quadratic far above": (["problem=quadratic", "problem.dim=100000000"], ["problem.dim=100000000", "1..2000"]),
    "beyond memory": (["problem=rastrigin", "problem.dim=100000000000"], ["problem.dim=100000000000", "of memory", "available; allowed: at most"]),
    "curves beyond memory": (["steps=100000000000"], ["steps=100000000000", "of memory", "fewer steps"]),
}


def assert_one_line(p, *expected: str) -> None:
    """Exit 2, one line on stderr starting with ``error:``, holding ``expected``, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    for piece in expected:
        assert piece in err, (piece, err)


def assert_nothing_stored(db) -> None:
    if db.exists():
        client = MlflowClient(f"sqlite:///{db}")
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


@pytest.mark.parametrize("args,expected", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_clear_line_and_creates_nothing(tmp_path, harness_cli, args, expected):
    p = harness_cli(["steps=20", *args] if not any(a.startswith("steps=") for a in args) else args)
    assert_one_line(p, *expected)
    assert_nothing_stored(tmp_path / "mlflow.db")
    assert not (tmp_path / "mlruns").exists()


def test_sqlite_store_in_a_missing_directory(tmp_path, harness_cli):
    p = harness_cli(["steps=5", f"tracking.uri=sqlite:///{tmp_path}/no/such/dir/m.db"])
    assert_one_line(p, f"tracking.uri=sqlite:///{tmp_path}/no/such/dir/m.db", "not writable")


@contextmanager
def read_only(path):
    """``path`` made unwritable for this process: its mode bits, and for root (whom they do not
    stop) the immutable attribute, which stops root too."""
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        path.chmod(mode)
        pytest.skip("running as root where chattr +i is refused: nothing here can make a file read-only for root")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


def _artifact_dirs(tmp_path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "mlruns").rglob("*") if p.is_dir())


@pytest.mark.parametrize("what", ["file", "directory"])
@pytest.mark.parametrize("sweep", [False, True], ids=["single run", "sweep"])
def test_a_read_only_store_is_refused_before_computing(tmp_path, harness_cli, what, sweep):
    """A store file, or its directory, that cannot be written: one line before anything runs, and no
    artifact directory left behind for a run that was never stored."""
    (tmp_path / "store").mkdir()
    db = tmp_path / "store" / "mlflow.db"
    uri = f"tracking.uri=sqlite:///{db}"
    assert harness_cli(["steps=5", uri]).returncode == 0
    before = _artifact_dirs(tmp_path)
    with read_only(db if what == "file" else db.parent):
        p = harness_cli(["steps=5", "problem=quadratic", uri, *(["-m", "lr=0.1,0.2"] if sweep else [])])
    assert_one_line(p, uri, "allowed:")
    assert ("cannot be written" if what == "file" else f"directory {db.parent} is missing or not writable") in p.stderr
    assert _artifact_dirs(tmp_path) == before  # no orphan artifact directory
    assert len(MlflowClient(f"sqlite:///{db}").search_runs(["1"])) == 1
