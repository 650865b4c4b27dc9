"""Real servers for the tests, started from this machine's binaries on 127.0.0.1: a PostgreSQL
cluster in a temporary directory, and an ``mlflow server`` over any backend store."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server binaries (initdb, pg_ctl), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    return Path(versions[-1]).parent if versions else None


@contextlib.contextmanager
def postgres(database: str = "mlflow") -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port with one empty database; yields its
    SQLAlchemy URI. initdb refuses to run as root, so as root the cluster belongs to the
    ``postgres`` system user (Debian's packages create it)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine; .ci/run installs them")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))  # not under pytest's tmp: its parents are private to root
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    port = free_port()
    data, log = root / "data", root / "server.log"

    def run(*cmd: str) -> None:
        p = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr or p.stdout}")

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "harness", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start")
        try:
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "harness", database)
            yield f"postgresql://harness@127.0.0.1:{port}/{database}"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend: str, cwd: Path, workers: int = 1) -> Iterator[str]:
    """``mlflow server`` over ``backend`` on a free loopback port, serving artifacts from ``cwd``;
    yields its base URL once /health answers, and stops it after."""
    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen(
        [
            mlflow,
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(cwd / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=open(cwd / "mlflow-server.log", "w"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("mlflow server did not start: " + (cwd / "mlflow-server.log").read_text()[-2000:])
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
