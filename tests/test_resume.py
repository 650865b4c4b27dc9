"""Sweeps that survive: kill -9, Ctrl-C or SIGTERM mid-sweep, then the same command continues the sweep.

Each case interrupts a real sweep after its first batch group is stored, reruns the same command, and
compares the result with an uninterrupted sweep of the same command: the same members (by config
hash), no duplicates, one parent run that ends FINISHED, and identical curves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.conftest import cli_here, parquet_curves, run_cli, terminal_sigint
from tests.conftest import sweep_runs as members

SWEEP = ["-m", "problem=rosenbrock,himmelblau,rastrigin,quadratic", "optimizer=gd", "lr=0.001,0.002", "steps=8000"]
TOTAL = 8


def curves(uri: str) -> dict[str, tuple[list[float], list[float]]]:
    """Loss curve of every member, keyed by its config hash: its metric rows, and every step in the
    curves file its tag names (files of interrupted jobs may be left, but no run names one)."""
    c = MlflowClient(uri)
    _, kids = members(uri)
    return {r.data.tags["harness.config_hash"]: ([m.value for m in sorted(c.get_metric_history(r.info.run_id, "loss"), key=lambda m: m.step)],
                                                 parquet_curves(uri, r.info.run_id)["loss"].tolist()) for r in kids}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    p = cli_here([f"tracking.uri={uri}", *SWEEP], cwd=d)
    assert p.returncode == 0, p.stderr
    return curves(uri)


JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def interrupt(d, uri: str, how: str, launcher: list[str]) -> subprocess.CompletedProcess:
    """Start the sweep in a session of its own, wait until its first group is stored, then stop it
    ``how``: Ctrl-C goes to the whole foreground process group, as a terminal sends it; kill -9 and
    SIGTERM go to the sweep's process. Returns once every process of the sweep has ended."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "harness", f"tracking.uri={uri}", *launcher, *SWEEP], cwd=d, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=terminal_sigint, start_new_session=True)
    for line in p.stdout:
        if "runs]" in line:
            break
    if how == "Ctrl-C":
        os.killpg(p.pid, signal.SIGINT)
    else:
        p.send_signal({"kill -9": signal.SIGKILL, "SIGTERM": signal.SIGTERM}[how])
    out, err = p.communicate(timeout=120)
    deadline = time.time() + 60
    while time.time() < deadline:  # parallel workers end with the sweep (PR_SET_PDEATHSIG), not later
        try:
            os.killpg(p.pid, 0)
            time.sleep(0.2)
        except ProcessLookupError:
            break
    else:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("worker processes outlived the interrupted sweep")
    while writers_of(d) and time.time() < deadline:  # a store's writer process (a session of its own) ends once its chunks are in
        time.sleep(0.2)
    assert not writers_of(d), "the store's writer process outlived the interrupted sweep"
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def writers_of(d) -> list[int]:
    """Pids of the store writer processes (harness/store/process.py) writing a store under ``d``."""
    from pathlib import Path

    out = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
        except OSError:
            continue
        if b"harness.store.process" in cmd and str(d).encode() in cmd:
            out.append(int(proc.name))
    return out


@pytest.mark.parametrize("how, launcher", [("kill -9", []), ("Ctrl-C", []), ("SIGTERM", []), ("kill -9", JOBLIB), ("Ctrl-C", JOBLIB)],
                         ids=["kill -9", "Ctrl-C", "SIGTERM", "kill -9, joblib", "Ctrl-C, joblib"])
def test_interrupted_sweep_resumes_to_the_uninterrupted_result(tmp_path, reference, how, launcher):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    p = interrupt(tmp_path, uri, how, launcher)
    parents, kids = members(uri)
    assert len(parents) == 1 and 0 < len(kids) < TOTAL
    assert all(r.info.status == "FINISHED" for r in kids)  # a member is stored whole or not at all
    if how == "kill -9":
        assert p.returncode == -9 and parents[0].info.status == "RUNNING"
    else:
        assert p.returncode == 130 and parents[0].info.status == "KILLED"
        line = p.stderr.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
        assert line == (f"interrupted: {len(kids)} of {TOTAL} runs are stored under sweep {parents[0].info.run_id} in sqlite:///mlflow.db; "
                        "run the same command again to resume")

    again = (run_cli if launcher else cli_here)([f"tracking.uri={uri}", *launcher, *SWEEP], cwd=tmp_path)  # joblib's workers: a process of its own
    assert again.returncode == 0, again.stderr
    assert f"Resuming sweep {parents[0].info.run_id}: {len(kids)} of {TOTAL} runs stored from the current code; {TOTAL - len(kids)} run" in again.stdout
    parents2, kids2 = members(uri)
    assert [r.info.run_id for r in parents2] == [parents[0].info.run_id] and parents2[0].info.status == "FINISHED"
    assert len(kids2) == TOTAL and {r.data.tags["mlflow.parentRunId"] for r in kids2} == {parents[0].info.run_id}
    assert curves(uri) == reference  # the same members, no duplicates, the same curves

    if how == "kill -9" and not launcher:  # a finished sweep run again does nothing, in one line
        done = cli_here([f"tracking.uri={uri}", *SWEEP], cwd=tmp_path)
        assert done.returncode == 0 and f"Sweep already complete: all {TOTAL} runs are stored" in done.stdout
        assert len(members(uri)[1]) == TOTAL
        fresh = cli_here([f"tracking.uri={uri}", "tracking.resume=false", *SWEEP], cwd=tmp_path)
        assert fresh.returncode == 0 and len(members(uri)[0]) == 2 and len(members(uri)[1]) == 2 * TOTAL


def test_ctrl_c_after_the_last_job_ends_the_parent_and_says_every_run_is_stored(tmp_path):
    """Once the last job has finished, every run is stored: a Ctrl-C while the parent run is ended, or while
    the summary reads the runs (a minute at a million runs), leaves the parent FINISHED, says so and points
    to the report, instead of "nothing was stored" (and a parent left RUNNING)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "harness", f"tracking.uri={uri}", *SWEEP], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=terminal_sigint, start_new_session=True)
    for line in p.stdout:
        if f"[{TOTAL}/{TOTAL} runs]" in line:
            break
    os.killpg(p.pid, signal.SIGINT)  # the summary imports pandas and reads the runs: most of a second
    _, err = p.communicate(timeout=60)
    parents, kids = members(uri)
    assert p.returncode == 130 and "Traceback" not in err and "nothing was stored" not in err, err
    assert len(kids) == TOTAL and all(r.info.status == "FINISHED" for r in kids)
    last, sweep = err.strip().splitlines()[-1], f"sweep {parents[0].info.run_id} in sqlite:///mlflow.db"
    if parents[0].info.status == "KILLED":  # under load the Ctrl-C can land before the last job's result is counted
        assert last == f"interrupted: {TOTAL} of {TOTAL} runs are stored under {sweep}; run the same command again to resume", last
        return
    assert parents[0].info.status == "FINISHED"
    assert last == f"interrupted: all {TOTAL} runs are stored under {sweep}; the summary and more: python -m harness.report", last  # the default store of its directory: no --uri


@pytest.mark.parametrize("sig, after", [(signal.SIGINT, 0.3), (signal.SIGINT, 2.0), (signal.SIGTERM, 2.0)],
                         ids=["Ctrl-C while importing", "Ctrl-C while validating", "SIGTERM while validating"])
def test_interrupt_while_starting_stores_nothing(tmp_path, sig, after):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    many = ["seed=range(3000)"] if after > 1 else []  # 24,000 members: validation takes seconds, not a blink
    p = subprocess.Popen([sys.executable, "-m", "harness", "tracking.uri=sqlite:///" + str(tmp_path / "mlflow.db"), *SWEEP, *many],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=terminal_sigint)
    time.sleep(after)  # imports, then composition and validation: before any run exists
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] in ("interrupted while validating: nothing was stored", "interrupted: nothing was stored")
    assert not (tmp_path / "mlflow.db").exists()


def test_hydra_overrides_pass_the_preflight(tmp_path, store):
    p = cli_here([f"tracking.uri={store}", "hydra/launcher=basic", f"hydra.sweep.dir={tmp_path / 'sweeps'}", "steps=20", "-m", "lr=0.01,0.1"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "sweeps").is_dir()
    typo = run_cli([f"tracking.uri={store}", "stepz=20"], cwd=tmp_path)
    assert typo.returncode == 2 and typo.stderr.startswith("error: unknown key 'stepz'")
