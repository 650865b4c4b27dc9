"""The MLflow UI path: a real `mlflow server` on 127.0.0.1 serves the runs the harness wrote,
both runs bulk-written to sqlite and runs logged through the server's REST API."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.conftest import cli_here
from tests.servers import mlflow_server


def call(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


@pytest.fixture
def server(tmp_path):
    """`mlflow server` over a sqlite file, on a free loopback port; stopped after the test."""
    db = tmp_path / "mlflow.db"
    with mlflow_server(f"sqlite:///{db}", tmp_path) as base:
        yield base, db


def children(base: str) -> list[dict]:
    exp = call(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=harness")["experiment"]
    runs = call(base, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 1000})[
        "runs"
    ]
    return [r for r in runs if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]


def test_server_finds_sweeps_logged_through_it_and_bulk_written_to_sqlite(server, tmp_path):
    base, db = server
    # 1. straight into the sqlite file the server reads (bulk path), as `mlflow ui` users do
    p = cli_here(
        ["optimizer=gd", "problem=himmelblau", "steps=100", f"tracking.uri=sqlite:///{db}", "-m", "lr=0.001,0.01"],
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    # 2. through the server (REST client path), into the same experiment
    p = cli_here(
        ["optimizer=adam", "problem=rosenbrock", "steps=100", f"tracking.uri={base}", "-m", "lr=0.001,0.01,0.1"],
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    runs = children(base)
    assert (
        sorted((r["info"]["run_name"].split("-")[0], r["info"]["status"]) for r in runs)
        == [("adam", "FINISHED")] * 3 + [("gd", "FINISHED")] * 2
    )
    for r in runs:
        params = {p["key"]: p["value"] for p in r["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in r["data"]["metrics"]}
        assert {"lr", "seed", "problem", "optimizer"} <= params.keys() and "final_loss" in metrics
        hist = call(base, f"/api/2.0/mlflow/metrics/get-history?run_id={r['info']['run_id']}&metric_key=loss")[
            "metrics"
        ]
        assert sorted(h["step"] for h in hist) == list(range(101))
        arts = call(base, f"/api/2.0/mlflow/artifacts/list?run_id={r['info']['run_id']}")
        assert not arts.get("files")  # no file per member: the batch's curves file is the parent's
        tags = {t["key"]: t["value"] for t in r["data"]["tags"]}
        parent = call(base, f"/api/2.0/mlflow/runs/get?run_id={tags['mlflow.parentRunId']}")["run"]["info"]
        curves = call(base, f"/api/2.0/mlflow/artifacts/list?run_id={parent['run_id']}&path=curves")  # the run's tag names its batch's file
        assert tags["harness.curves"].removeprefix(parent["artifact_uri"] + "/") in {f["path"] for f in curves.get("files", [])}
