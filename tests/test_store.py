"""A new sqlite store is a copy of an empty one that the pinned MLflow made once (no migrations at
every start), and is then an ordinary MLflow store; without a usable cache MLflow creates it."""

from __future__ import annotations

import sqlite3

from mlflow import MlflowClient
from mlflow.version import VERSION

from tests.conftest import run_cli

SWEEP = ["optimizer=adam", "problem=rosenbrock", "steps=50", "-m", "lr=0.001,0.01"]


def test_a_new_store_is_a_copy_of_the_cached_empty_store(tmp_path):
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache)}
    (tmp_path / "a").mkdir()
    p = run_cli(["tracking.uri=sqlite:///mlflow.db", *SWEEP], cwd=tmp_path / "a", env=env)
    assert p.returncode == 0, p.stderr
    template = cache / "optbench-harness" / f"mlflow-{VERSION}.db"
    assert template.is_file()
    with sqlite3.connect(template) as db:  # mark the template: the next new store must carry the mark
        db.execute("CREATE TABLE harness_marker (x INTEGER)")
    db.close()
    (tmp_path / "b").mkdir()
    p = run_cli(["tracking.uri=sqlite:///mlflow.db", *SWEEP], cwd=tmp_path / "b", env=env)
    assert p.returncode == 0, p.stderr
    with sqlite3.connect(tmp_path / "b" / "mlflow.db") as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'harness_marker'").fetchall() == [("harness_marker",)]
        assert db.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchall() == [(str(tmp_path / "b" / "mlruns" / "0"),)]
    db.close()
    c = MlflowClient(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")  # an ordinary MLflow store
    runs = c.search_runs([c.get_experiment_by_name("harness").experiment_id])
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert c.get_experiment_by_name("harness").artifact_location == str(tmp_path / "b" / "mlruns" / "1")


def test_without_a_usable_cache_mlflow_creates_the_store(tmp_path):
    p = run_cli(["tracking.uri=sqlite:///mlflow.db", *SWEEP], cwd=tmp_path, env={"XDG_CACHE_HOME": "/proc/no-cache-here"})
    assert p.returncode == 0, p.stderr
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(c.search_runs([c.get_experiment_by_name("harness").experiment_id])) == 3
