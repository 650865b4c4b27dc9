"""Shared helpers: compose configs the way the CLI does, and run the real CLI in a subprocess or in this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "conf")


def _threads_per_worker() -> None:
    """Under pytest-xdist (``make test``: one worker per core), each worker's torch, and every process
    it starts, get cores // workers threads unless OMP_NUM_THREADS says otherwise: with torch's
    default of a thread per core in every worker, the workers' threads contend for the cores and
    spin, and the suite takes several times the CPU (measured on 2 cores: the 95% CNN run 44
    CPU-seconds with 2 threads in each of 2 workers, 4.4 with 1)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers < 1 or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


_threads_per_worker()


def make_cfg(*overrides: str):
    """The composed job config for ``overrides`` (as ``python -m harness`` would build it)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def members(*pairs: dict) -> str:
    """A ``+members=[...]`` override: each dict is one grid member's numeric overrides."""
    inner = ",".join("[" + ",".join(f"'{k}={v}'" for k, v in p.items()) + "]" for p in pairs)
    return f"+members=[{inner}]"


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m harness ARGS`` as a user would, in ``cwd``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli_here(args: list[str], cwd: Path, env: dict | None = None) -> Result:
    """``python -m harness ARGS`` in this process, in ``cwd`` (run_cli without starting Python, torch,
    MLflow and Hydra again, ~3 s each): the same environment as run_cli gives a child (no MLFLOW_*
    variables, ``env`` added), stdout and stderr captured; the directory, environment and streams are
    restored after. For module-scoped fixtures too (the ``harness_cli`` fixture is per test). What
    needs a process of its own (exit by a signal, the interpreter's start, launchers' workers ending
    with it) stays with run_cli."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from harness.__main__ import cli

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[k]
    os.environ["HARNESS_SWEEP_PID"] = ""  # a sweep in this process sets it; children started later must not see it
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli(list(args))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def harness_cli(tmp_path, monkeypatch, capsys):
    """``python -m harness ARGS`` in this process, in ``tmp_path`` (as run_cli, without starting Python,
    torch and Hydra again): ``harness_cli(["lr=0"])`` -> Result(returncode, stdout, stderr)."""
    from harness.__main__ import cli

    monkeypatch.chdir(tmp_path)
    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HARNESS_SWEEP_PID", "")  # a sweep in this process sets it; children started later must not see it

    def run(args: list[str]) -> Result:
        capsys.readouterr()
        try:
            cli(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def sweep_runs(uri: str) -> tuple[list, list]:
    """(sweep parent runs, member runs) in the store's ``harness`` experiment; ([], []) before it exists."""
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("harness")
    rs = c.search_runs([exp.experiment_id], max_results=5000) if exp else []
    return [r for r in rs if r.data.tags.get("harness.sweep") == "true"], [r for r in rs if "mlflow.parentRunId" in r.data.tags]


def parquet_curves(uri: str, run_id: str):
    """A run's curves as a user reads them without the harness (README, Where results go): the Parquet
    file its tag ``harness.curves`` names, fetched by MLflow, its rows read by pandas."""
    import tempfile

    import mlflow
    import pandas as pd

    file = mlflow.MlflowClient(uri).get_run(run_id).data.tags["harness.curves"]
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(mlflow.artifacts.download_artifacts(file, dst_path=tmp, tracking_uri=uri), filters=[("run_id", "==", run_id)])


def terminal_sigint() -> None:
    """For a child that will get Ctrl-C: a shell starts background jobs with SIGINT ignored, and
    children inherit that; a terminal's foreground process has the default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def store(tmp_path):
    """A fresh sqlite MLflow store URI in a temporary directory."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
