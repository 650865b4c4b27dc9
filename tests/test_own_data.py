"""Your own data for linear and logistic regression: .csv and .npz files, a target column, with or
without an intercept, standardized or not; validation and test splits as for the bundled data (none
for the tutorial's 4 examples); f* exact on the training split; bad files get one line and exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.job import run_batch
from harness.plan import plan
from problems.data import LinearRegression, LogisticRegression, split
from tests.conftest import ROOT, cli_here, make_cfg, run_cli

TUTORIAL = ROOT / "examples" / "tutorial_regression.csv"


def test_the_tutorials_example_without_intercept_from_the_command_line(tmp_path, store):
    """X = [[1,2],[2,3],[3,4],[4,5]], y = (1,2,3,4), no intercept, MSE, theta = 0, lr 0.01, 1,000 GD
    steps: theta = (0.8051, 0.1450); the least-squares optimum is (1, 0) with f* = 0."""
    args = ["problem=linear_regression", f"problem.dataset={TUTORIAL}", "problem.target=y", "problem.fit_intercept=false",
            "problem.standardize=false", "optimizer=gd", "lr=0.01", "steps=1000", f"tracking.uri={store}"]
    p = cli_here(args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (batch,), _ = plan(make_cfg(*args[:-1]))
    assert batch.problem.f_star == pytest.approx(0.0, abs=1e-28)
    assert batch.problem.samples == 4 and not batch.problem.held_out  # under 50 examples nothing is held out (null fractions)
    np.testing.assert_allclose(batch.problem.minima[0].x, [1.0, 0.0], atol=1e-12)
    res = run_batch(batch)
    np.testing.assert_allclose(res.final_x[0], [0.8051, 0.1450], atol=5e-5)
    np.testing.assert_allclose(res.trajectory[1, 0], [0.15, 0.2], rtol=1e-12)  # theta1 = -lr * 2/n X^T(0 - y)


def test_csv_and_npz_give_the_same_problem_and_exact_f_star(tmp_path):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression as SkLR

    X, y = load_diabetes(return_X_y=True)
    cols = [f"f{j}" for j in range(X.shape[1])]
    csv = tmp_path / "diabetes.csv"
    np.savetxt(csv, np.column_stack([y, X]), delimiter=",", header=",".join(["progression", *cols]), comments="")
    npz = tmp_path / "diabetes.npz"
    np.savez(npz, X=X, progression=y)
    a = LinearRegression(dataset=str(csv), target="progression", fit_intercept=False, standardize=False)
    b = LinearRegression(dataset=str(npz), target="progression", fit_intercept=False, standardize=False)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y) and a.dim == b.dim == 10
    for k in ("val", "test"):
        assert torch.equal(a.held_out[k][0], b.held_out[k][0]) and torch.equal(a.held_out[k][1], b.held_out[k][1])
    # 442 examples: 20% validation and 20% test are held out (null fractions), f* is the training split's
    assert a.samples == 266
    train, _, _ = split(442, None, None, 0, "data_split")
    X, y = X[train], y[train]
    sk = SkLR(fit_intercept=False).fit(X, y)
    assert a.f_star == pytest.approx(float(np.mean((X @ sk.coef_ - y) ** 2)), rel=1e-10)
    assert float(a.loss(torch.tensor(sk.coef_[None]))[0]) == pytest.approx(a.f_star, rel=1e-10)
    # the bundled diabetes (standardized, with intercept) is the same problem as the file standardized
    c = LinearRegression(dataset=str(csv), target="progression")
    assert c.f_star == pytest.approx(LinearRegression(dataset="diabetes").f_star, rel=1e-12)


def test_logistic_regression_on_a_file_matches_the_bundled_data_and_its_optimum(tmp_path):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression as SkLogit

    X, y = load_breast_cancer(return_X_y=True)
    csv = tmp_path / "cancer.csv"
    labels = np.where(y == 1, "7", "3")  # any two numeric labels: the larger is class 1
    rows = [",".join([*(repr(float(v)) for v in x), lab]) for x, lab in zip(X, labels)]
    csv.write_text(",".join([f"x{j}" for j in range(30)] + ["malignant"]) + "\n" + "\n".join(rows) + "\n")
    mine = LogisticRegression(dataset=str(csv), target="malignant")
    assert mine.f_star == pytest.approx(LogisticRegression().f_star, rel=1e-12)
    # without an intercept, every coefficient is penalised: scikit-learn's optimum with C = 1 / (n l2)
    flat = LogisticRegression(dataset=str(csv), fit_intercept=False, l2=0.1)
    assert flat.dim == 30
    Xs, ys = flat.X.numpy(), flat.y.numpy()  # the training split (341 of the 569 examples)
    assert len(ys) == 341
    sk = SkLogit(C=1 / (len(ys) * 0.1), fit_intercept=False, tol=1e-12, max_iter=10000).fit(Xs, ys)
    np.testing.assert_allclose(flat.minima[0].x, sk.coef_[0], atol=1e-6)


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "words.csv").write_text("a,b,y\n1,2,3\n4,five,6\n")
    (tmp_path / "nan.csv").write_text("a,b,y\n1,2,3\n4,,6\n")
    (tmp_path / "ok.csv").write_text("a,b,y\n1,2,0\n4,5,1\n7,8,2\n")
    np.savez(tmp_path / "nan.npz", X=np.array([[1.0, np.nan], [2.0, 3.0]]), y=np.array([0.0, 1.0]))
    return tmp_path


BAD = {
    "missing file": (["problem=linear_regression", "problem.dataset=nope.csv"], ["problem.dataset='nope.csv'", "no such file"]),
    "non-numeric cell": (["problem=linear_regression", "problem.dataset=words.csv"], ["row 3, column 'b' holds 'five'", "allowed: numbers only"]),
    "empty cell": (["problem=linear_regression", "problem.dataset=nan.csv"], ["row 3, column 'b'", "no NaN, inf or empty cells"]),
    "NaN in an npz": (["problem=logistic_regression", "problem.dataset=nan.npz"], ["X[0, 1] is nan", "finite numbers"]),
    "unknown target column": (["problem=linear_regression", "problem.dataset=ok.csv", "problem.target=z"], ["problem.target='z'", "allowed: a, b, y"]),
    "three classes": (["problem=logistic_regression", "problem.dataset=ok.csv"], ["3 distinct labels (0, 1, 2)", "exactly two classes"]),
}


@pytest.mark.parametrize("args, expected", BAD.values(), ids=BAD.keys())
def test_a_bad_file_is_refused_in_one_line_naming_what_is_wrong(bad_files, monkeypatch, args, expected):
    from optimizers.base import ConfigError

    monkeypatch.chdir(bad_files)  # relative paths start where the command runs
    with pytest.raises(ConfigError) as e:
        plan(make_cfg(*args, "steps=5"))
    msg = str(e.value)
    assert "\n" not in msg and all(piece in msg for piece in expected), msg


def test_a_bad_file_from_the_command_line_exits_2_and_stores_nothing(bad_files):
    p = run_cli(["problem=linear_regression", "problem.dataset=words.csv", "steps=5", f"tracking.uri=sqlite:///{bad_files / 'mlflow.db'}"],
                cwd=bad_files)
    err = p.stderr.strip()
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(err.splitlines()) == 1, p.stderr
    assert err == "error: problem.dataset='words.csv': row 3, column 'b' holds 'five'; allowed: numbers only"
    assert not (bad_files / "mlflow.db").exists()


def test_allowed_keys_are_the_real_ones(tmp_path):
    p = cli_here(["problem=linear_regression", "+problem.dim=3"], cwd=tmp_path)
    allowed = p.stderr.split("allowed: ", 1)[1].strip().split(", ")
    assert p.returncode == 2 and "dim" not in allowed and "box" not in allowed and {"dataset", "target", "fit_intercept"} <= set(allowed)
