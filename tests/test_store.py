"""A new sqlite store is a copy of an empty one that the pinned MLflow made once (no migrations at
every start), and is then an ordinary MLflow store; without a usable cache MLflow creates it."""

from __future__ import annotations

import sqlite3

import numpy as np
from mlflow import MlflowClient
from mlflow.version import VERSION

from harness.store import ui_steps
from tests.conftest import cli_here, parquet_curves

SWEEP = ["optimizer=adam", "problem=rosenbrock", "steps=50", "-m", "lr=0.001,0.01"]


def test_a_new_store_is_a_copy_of_the_cached_empty_store(tmp_path):
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache)}
    (tmp_path / "a").mkdir()
    p = cli_here(["tracking.uri=sqlite:///mlflow.db", *SWEEP], cwd=tmp_path / "a", env=env)
    assert p.returncode == 0, p.stderr
    template = cache / "optbench-harness" / f"mlflow-{VERSION}.db"
    assert template.is_file()
    with sqlite3.connect(template) as db:  # mark the template: the next new store must carry the mark
        db.execute("CREATE TABLE harness_marker (x INTEGER)")
    db.close()
    (tmp_path / "b").mkdir()
    p = cli_here(["tracking.uri=sqlite:///mlflow.db", *SWEEP], cwd=tmp_path / "b", env=env)
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
    p = cli_here(["tracking.uri=sqlite:///mlflow.db", *SWEEP], cwd=tmp_path, env={"XDG_CACHE_HOME": "/proc/no-cache-here"})
    assert p.returncode == 0, p.stderr
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(c.search_runs([c.get_experiment_by_name("harness").experiment_id])) == 3


def test_the_pinned_schema_is_the_head_of_the_installed_mlflows_migrations():
    """The sqlite3 writer is used only on stores at SCHEMA_REVISION: it must be what this MLflow migrates to."""
    from pathlib import Path

    import mlflow
    from alembic.script import ScriptDirectory

    from harness.store import SCHEMA_REVISION

    scripts = ScriptDirectory(str(Path(mlflow.__file__).parent / "store" / "db_migrations"))
    assert scripts.get_current_head() == SCHEMA_REVISION


def _rows(db, table, drop=()):
    cur = db.execute(f"SELECT * FROM {table}")
    cols = [d[0] for d in cur.description]
    return sorted(tuple(v for c, v in zip(cols, r) if c not in drop) for r in cur.fetchall())


def test_the_sqlite3_writer_makes_the_rows_mlflow_makes(tmp_path, monkeypatch):
    """An experiment and a parent run, created, ended and reopened by the harness's sqlite3 writer and by
    MlflowClient in two new stores: the same rows, but for ids and times."""
    from harness.store import Tracker

    monkeypatch.chdir(tmp_path)
    tags = {"harness.sweep": "true", "mlflow.user": "someone"}
    ours = Tracker(f"sqlite:///{tmp_path / 'ours.db'}", "harness")
    assert ours.direct  # no MLflow import on this path
    pid = ours.start_parent("sweep", tags)
    ours.end(pid, "KILLED")
    ours.reopen(pid)

    c = MlflowClient(f"sqlite:///{tmp_path / 'theirs.db'}")
    exp = c.create_experiment("harness", tags={"mlflow.experimentKind": "custom_model_development"})
    run = c.create_run(exp, run_name="sweep", tags=tags)
    c.set_terminated(run.info.run_id, "KILLED")
    c.update_run(run.info.run_id, status="RUNNING")

    a, b = sqlite3.connect(tmp_path / "ours.db"), sqlite3.connect(tmp_path / "theirs.db")
    times = ("creation_time", "last_update_time", "start_time", "end_time", "run_uuid", "artifact_uri")
    for table in ("experiments", "experiment_tags", "runs", "tags", "alembic_version"):
        assert _rows(a, table, times) == _rows(b, table, times), table
    (ours_uri,), (theirs_uri,) = a.execute("SELECT artifact_uri FROM runs").fetchone(), b.execute("SELECT artifact_uri FROM runs").fetchone()
    assert ours_uri == f"{tmp_path}/mlruns/1/{pid}/artifacts" and theirs_uri == f"{tmp_path}/mlruns/1/{run.info.run_id}/artifacts"
    assert c.get_run(run.info.run_id).info.status == MlflowClient(f"sqlite:///{tmp_path / 'ours.db'}").get_run(pid).info.status == "RUNNING"


SWEEP_LONG = ["optimizer=adam", "problem=rosenbrock", "steps=600", "-m", "lr=0.001,0.01", "seed=0,1"]


def _read_back(uri):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("harness")
    kids = c.search_runs([exp.experiment_id], "tags.`mlflow.parentRunId` != ''")
    out = {}
    for r in kids:
        hist = {k: sorted((h.step, h.value) for h in c.get_metric_history(r.info.run_id, k)) for k in ("loss", "suboptimality", "grad_norm")}
        assert r.data.tags["harness.curves"].startswith(c.get_run(r.data.tags["mlflow.parentRunId"]).info.artifact_uri + "/curves/")
        full = parquet_curves(uri, r.info.run_id)
        hist |= {f"curves:{k}": full[k].tolist() for k in ("step", "loss", "suboptimality", "grad_norm", "x0", "x1")}
        out[r.data.tags["harness.config_hash"]] = (r.data.params, {k: v for k, v in r.data.metrics.items() if k not in ("batch_wall_time_s", "batch_time_per_step_s")},
                                                 {k: v for k, v in r.data.tags.items() if k not in ("mlflow.parentRunId", "harness.curves", "mlflow.note.content")}, hist,
                                                 sorted(a.path for a in c.list_artifacts(r.info.run_id)))
    return out


def test_a_store_at_another_schema_is_written_through_mlflow_with_the_same_content(tmp_path, monkeypatch):
    """A store whose revision is not the pinned one goes through MLflow's client and engine; what a user
    reads back through MlflowClient is the same as from the sqlite3 writer."""
    from harness.store import tables

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    p = cli_here(["tracking.uri=sqlite:///mlflow.db", *SWEEP_LONG], cwd=tmp_path / "a")
    assert p.returncode == 0, p.stderr
    monkeypatch.setattr(tables, "SCHEMA_REVISION", "not-this-one")  # the fallback, in-process
    from omegaconf import OmegaConf

    from harness.job import run_job
    from tests.conftest import make_cfg, members

    monkeypatch.chdir(tmp_path / "b")
    cfg = make_cfg("optimizer=adam", "problem=rosenbrock", "steps=600", "tracking.uri=sqlite:///mlflow.db",
                   members(*[{"lr": lr, "seed": s} for lr in (0.001, 0.01) for s in (0, 1)]))
    from harness.store import Tracker

    t = Tracker(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}", "harness")
    assert not t.direct
    parent = t.start_parent("sweep", {"harness.sweep": "true"})
    OmegaConf.update(cfg, "tracking.parent_run_id", parent, force_add=True)
    OmegaConf.update(cfg, "tracking.swept", ["lr", "seed"], force_add=True)
    run_job(cfg)
    t.end(parent)
    a, b = _read_back(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}"), _read_back(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    assert a.keys() == b.keys() and len(a) == 4
    for h in a:
        pa, ma, ta, ha, arts = a[h]
        pb, mb, tb, hb, arts_b = b[h]
        assert pa == pb and ma == mb and ta == tb and arts == arts_b == []
        assert ha.keys() == hb.keys() and all(np.array_equal(ha[k], hb[k], equal_nan=True) for k in ha)  # metric rows and curves files alike
        assert [s for s, _ in ha["loss"]] == ui_steps(601).tolist() and ha["curves:step"] == list(range(601))  # 600 steps: sampled for the UI


def test_the_report_reads_every_step_from_the_batch_file(tmp_path):
    """(Runs stored in the older formats: tests/test_curves_parquet.py.)"""
    from harness.store import read_curves, read_runs

    p = cli_here(["tracking.uri=sqlite:///mlflow.db", *SWEEP_LONG], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rs = read_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "harness")
    ids = rs.runs["run_id"].tolist()
    pts = read_curves(rs, ids[:1], ("suboptimality", "loss"))
    sub = pts[pts.key == "suboptimality"]
    assert sub["step"].tolist() == list(range(601))  # every step, not the 19 metric rows
    assert sub["value"].iloc[-1] == rs.runs.loc[0, "metrics.final_suboptimality"]
    assert sub["t"].is_monotonic_increasing and sub["t"].iloc[0] == 0
