"""Sweeps on many cores and through cluster launchers, and stores shared by parallel writers.

Every case runs the real CLI with a real Hydra launcher (hydra-joblib-launcher, hydra-submitit-launcher's
``submitit_local``) into a real store (a sqlite file, or an ``mlflow server`` over a real PostgreSQL),
and compares with the sequential sweep of the same command.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, cli_here, make_cfg, parquet_curves, run_cli
from tests.conftest import sweep_runs as runs
from tests.servers import mlflow_server, postgres

# Two groups (one per problem) of four members; logistic regression's gradient goes through
# torch's vectorised softplus, whose last bit depends on a member's place in the batch unless the
# problem pads its examples (problems/data.py).
SWEEP = ["-m", "problem=rosenbrock,logistic_regression", "optimizer=adam", "lr=0.001,0.01", "seed=0,1", "steps=60"]
TOTAL = 8
TIMING = ("batch_wall_time_s", "batch_time_per_step_s")


def curves(uri: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Every member's every metric history but timings, and every step of its curves file's loss and
    grad_norm, keyed by config hash and metric."""
    c = MlflowClient(uri)
    out = {}
    for r in runs(uri)[1]:
        out[r.data.tags["harness.config_hash"]] = {
            k: sorted((m.step, m.value) for m in c.get_metric_history(r.info.run_id, k)) for k in r.data.metrics if k not in TIMING
        }
        full = parquet_curves(uri, r.info.run_id)
        out[r.data.tags["harness.config_hash"]] |= {f"curves:{k}": full[k].tolist() for k in ("loss", "grad_norm")}
    return out


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    d = tmp_path_factory.mktemp("sequential")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    p = cli_here([f"tracking.uri={uri}", *SWEEP], cwd=d)
    assert p.returncode == 0, p.stderr
    return curves(uri)


def test_joblib_splits_a_small_sweep_over_its_workers_with_identical_curves(tmp_path, store, sequential):
    p = run_cli([f"tracking.uri={store}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=3", *SWEEP], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Split into 3 batched jobs for 3 workers" in p.stdout
    assert f"[{TOTAL}/{TOTAL} runs]" in p.stdout  # progress read from the store
    parents, kids = runs(store)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(kids) == TOTAL
    assert all(r.info.status == "FINISHED" for r in kids)
    got = curves(store)
    assert got.keys() == sequential.keys()
    assert got == sequential  # every point of every curve, bit for bit


def test_submitit_local_runs_the_cluster_path_with_identical_curves(tmp_path, store, sequential):
    p = run_cli([f"tracking.uri={store}", "hydra/launcher=submitit_local", f"hydra.sweep.dir={tmp_path / 'sweep'}", *SWEEP], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert list((tmp_path / "sweep" / ".submitit").iterdir()), "submitit wrote no job folder"
    parents, kids = runs(store)
    assert parents[0].info.status == "FINISHED" and len(kids) == TOTAL
    assert curves(store) == sequential


def test_the_slurm_preset_gives_one_batch_group_per_array_task():
    cfg = make_cfg("hydra/launcher=slurm")  # composes from conf/hydra/launcher/slurm.yaml over the plugin's schema
    launcher = cfg.hydra.launcher if "hydra" in cfg else None
    if launcher is None:  # compose() drops the hydra node unless asked for it
        from hydra import compose, initialize_config_dir

        from tests.conftest import CONF

        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            launcher = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.tasks_per_node == 1 and launcher.array_parallelism > 1 and launcher.timeout_min > 0


def test_a_failing_group_fails_the_sweep_in_one_line_and_a_rerun_runs_only_what_is_missing(tmp_path, store):
    args = [f"tracking.uri={store}", "problem._target_=tests.broken_problem.Broken", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "steps=50", "-m", "+problem.fail=true,false", "lr=0.01,0.1", "seed=0,1"]
    env = {"PYTHONPATH": str(ROOT)}
    p = run_cli(args, cwd=tmp_path, env=env)
    parents, kids = runs(store)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        "error: a batched job of 4 runs failed (+problem.fail=True): RuntimeError: simulated failure inside a job; "
        f"4 of 8 runs are stored under sweep {parents[0].info.run_id} in sqlite:///mlflow.db; run the same command again to run the missing ones")
    assert parents[0].info.status == "FAILED"
    assert len(kids) == 4 and all(r.info.status == "FINISHED" and r.data.params["problem.fail"] == "False" for r in kids)

    again = run_cli(args, cwd=tmp_path, env=env | {"HARNESS_TEST_HEALED": "1"})
    assert again.returncode == 0, again.stderr
    assert f"Resuming sweep {parents[0].info.run_id}: 4 of 8 runs stored from the current code; 4 runs not stored yet" in again.stdout
    assert "Split into 2 batched jobs for 2 workers" in again.stdout  # what is left is spread over the workers again
    parents2, kids2 = runs(store)
    assert [r.info.run_id for r in parents2] == [parents[0].info.run_id] and parents2[0].info.status == "FINISHED"
    assert len(kids2) == 8 and len({r.data.tags["harness.config_hash"] for r in kids2}) == 8


def test_concurrent_sweeps_create_a_new_store_once_and_lose_no_run(tmp_path):
    """Three sweeps start at once into a file that does not exist yet, two of them with two joblib
    workers each: MLflow migrates a new store's schema in every process that opens it, so without
    the creation lock two of them crash; with it, every run of every sweep is stored."""
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    launchers = [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], []]
    procs = [
        subprocess.Popen([sys.executable, "-m", "harness", f"tracking.uri={uri}", *launch, "steps=40", "-m", "problem=rosenbrock,quadratic",
                          "optimizer=gd,adam", "lr=0.001,0.01", f"seed={i},{10 + i}"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i, launch in enumerate(launchers)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in err, err
    parents, kids = runs(uri)
    assert len(parents) == 3 and all(r.info.status == "FINISHED" for r in parents)
    assert len(kids) == 3 * 16 and all(r.info.status == "FINISHED" for r in kids)
    assert len({r.data.tags["harness.config_hash"] for r in kids}) == 3 * 16
    for parent in parents:
        assert sum(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in kids) == 16


def test_a_parallel_sweep_through_an_mlflow_server_over_postgresql_stores_every_run(tmp_path, sequential):
    """The shared store a cluster needs: PostgreSQL started from this machine's binaries, an
    ``mlflow server`` backed by it, and two joblib workers writing through the server's REST API."""
    import psycopg

    with postgres() as db, mlflow_server(db, tmp_path, workers=2) as base:
        p = run_cli([f"tracking.uri={base}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SWEEP], cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        parents, kids = runs(base)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(kids) == TOTAL and all(r.info.status == "FINISHED" for r in kids)
        assert curves(base) == sequential  # every point of every curve, read back through the server
        c = MlflowClient(base)
        for r in kids:
            assert not c.list_artifacts(r.info.run_id)
        files = {a.path for a in c.list_artifacts(parents[0].info.run_id, "curves")}  # one per worker's batch
        assert len(files) == 2 and {r.data.tags["harness.curves"].removeprefix(parents[0].info.artifact_uri + "/") for r in kids} == files
        with psycopg.connect(db) as conn, conn.cursor() as cur:  # and they are in PostgreSQL itself
            cur.execute("SELECT status, count(*) FROM runs GROUP BY status")
            assert cur.fetchall() == [("FINISHED", TOTAL + 1)]

        # every node may also write to the database directly (bulk path); artifacts then stay local
        direct = [f"tracking.uri={db}", "tracking.experiment=direct", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SWEEP]
        p = run_cli(direct, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        c = MlflowClient(db)
        kids = c.search_runs([c.get_experiment_by_name("direct").experiment_id], "tags.`mlflow.parentRunId` != ''")
        assert len(kids) == TOTAL and all(r.info.status == "FINISHED" for r in kids)
