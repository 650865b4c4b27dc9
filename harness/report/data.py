"""Read a sweep back from MLflow: one row per run (params, metrics, tags) and, on demand, curves."""

from __future__ import annotations

import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


class ReportError(Exception):
    """A report cannot be made; the message says why and what to do."""


@dataclass
class Sweep:
    client: object
    uri: str
    experiment: str
    runs: pd.DataFrame  # finished member runs, one row each
    parent: object | None = None  # the sweep's parent run, if any
    unfinished: int = 0  # member runs not FINISHED (still running, failed, killed)
    curve_cache: dict = field(default_factory=dict)

    @property
    def in_progress(self) -> bool:
        return self.parent is not None and self.parent.info.status == "RUNNING"


def _param(v):
    """A logged param string back to its value (params are str() of the resolved config)."""
    if v in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[v]
    try:
        return yaml.safe_load(v) if isinstance(v, str) else v
    except yaml.YAMLError:
        return v


def load(uri: str, experiment: str, sweep: str | None = None, filter_string: str | None = None) -> Sweep:
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ReportError(f"no experiment '{experiment}' in {uri}: run a sweep first (python -m harness ... -m lr=...)")
    parent = None
    if filter_string:
        flt = filter_string
    else:
        if sweep:
            parent = client.get_run(sweep)
        else:
            latest = client.search_runs([exp.experiment_id], "tags.`harness.sweep` = 'true'", order_by=["attributes.start_time DESC"], max_results=1)
            if not latest:
                raise ReportError(f"no sweep in experiment '{experiment}' of {uri}: run one with -m, or pass --filter")
            parent = latest[0]
        flt = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    df = _search(client, exp.experiment_id, flt)
    if filter_string and not df.empty and "tags.harness.sweep" in df:
        df = df[df["tags.harness.sweep"] != "true"]
    unfinished = int((df["status"] != "FINISHED").sum()) if not df.empty else 0
    df = df[df["status"] == "FINISHED"] if not df.empty else df
    if df.empty:
        where = f"sweep {parent.info.run_id}" if parent else f"filter {filter_string!r}"
        raise ReportError(f"no finished runs for {where} in experiment '{experiment}' of {uri}")
    df = df.copy()
    df["lr"] = df["params.lr"].astype(float)
    df["seed"] = df["params.seed"].astype(int)
    df["problem"] = df["params.problem"]
    df["optimizer"] = df["params.optimizer"]
    df["diverged"] = df["metrics.diverged"].fillna(0).astype(float) > 0
    has_fstar = "metrics.final_suboptimality" in df
    score = df["metrics.final_suboptimality"] if has_fstar else pd.Series(np.nan, index=df.index)
    df["has_fstar"] = score.notna()
    df["final"] = score.where(score.notna(), df["metrics.final_loss"]).astype(float)
    df["score"] = df["final"].where(~df["diverged"] & np.isfinite(df["final"]), math.inf)
    return Sweep(client, uri, experiment, df.reset_index(drop=True), parent, unfinished)


def _search(client, experiment_id: str, flt: str) -> pd.DataFrame:
    """All runs matching ``flt`` as a DataFrame (params.*, metrics.*, tags.* columns).

    For SQL stores, MLflow's search selects the run ids (its filter language), and the params,
    latest metrics and tags are read in three queries: building MLflow's entity objects for
    1,000 runs costs seconds."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    if isinstance(store, SqlAlchemyStore):
        ids = _sql_run_ids(store, experiment_id, flt)
        if ids is not None:
            return _sql_frame(store, ids)
    rows, token = [], None
    while True:
        page = client.search_runs([experiment_id], flt, max_results=5000, page_token=token)
        for r in page:
            row = {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status, "start_time": r.info.start_time, "artifact_uri": r.info.artifact_uri}
            row.update({f"params.{k}": v for k, v in r.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
            row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
            rows.append(row)
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows)


def _sql_run_ids(store, experiment_id: str, flt: str) -> list[str] | None:
    """Run ids for the two filters the report itself builds (parent run, or none); None otherwise."""
    import re

    m = re.fullmatch(r"tags\.`mlflow\.parentRunId` = '([0-9a-f]+)'", flt)
    with store.ManagedSessionMaker() as session:
        conn = session.connection()
        if m:
            res = conn.exec_driver_sql(
                "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                f"WHERE t.key = 'mlflow.parentRunId' AND t.value = '{m.group(1)}' AND r.experiment_id = {int(experiment_id)} "
                "AND r.lifecycle_stage = 'active'"
            )
            return [r[0] for r in res.fetchall()]
    return None


def _sql_frame(store, ids: list[str]) -> pd.DataFrame:
    """params.*, metrics.* (latest values), tags.* and run info of ``ids``, as MLflow stores them."""
    if not ids:
        return pd.DataFrame()
    frames = {}
    with store.ManagedSessionMaker() as session:
        conn = session.connection()
        for i in range(0, len(ids), 500):
            marks = ", ".join(f"'{r}'" for r in ids[i : i + 500] if r.isalnum())
            for table, cols in (("params", "key, value"), ("latest_metrics", "key, value, is_nan"), ("tags", "key, value")):
                res = conn.exec_driver_sql(f"SELECT run_uuid, {cols} FROM {table} WHERE run_uuid IN ({marks})").fetchall()
                frames.setdefault(table, []).extend(res)
            frames.setdefault("runs", []).extend(conn.exec_driver_sql(f"SELECT run_uuid, name, status, start_time, artifact_uri FROM runs WHERE run_uuid IN ({marks})").fetchall())
    out = pd.DataFrame(frames["runs"], columns=["run_id", "run_name", "status", "start_time", "artifact_uri"]).set_index("run_id")
    for table, prefix in (("params", "params."), ("latest_metrics", "metrics."), ("tags", "tags.")):
        if table == "latest_metrics":
            df = pd.DataFrame(frames[table], columns=["run_id", "key", "value", "is_nan"])
            df.loc[df["is_nan"].astype(bool), "value"] = np.nan
            df["value"] = df["value"].astype(float)
        else:
            df = pd.DataFrame(frames[table], columns=["run_id", "key", "value"])
        if not df.empty:
            wide = df.pivot(index="run_id", columns="key", values="value")
            wide.columns = [prefix + c for c in wide.columns]
            out = out.join(wide)
    return out.reset_index()


def curves(sweep: Sweep, run_ids: list[str], keys: tuple[str, ...]) -> pd.DataFrame:
    """Curve points (run_id, key, step, value, t) of the given runs; ``t`` is seconds since the
    run's first point. SQL stores are read in one query per 500 runs, others per run and key."""
    need = [r for r in run_ids if (r, keys) not in sweep.curve_cache]
    if need:
        store = sweep.client._tracking_client.store
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        frames = []
        if isinstance(store, SqlAlchemyStore):
            with store.ManagedSessionMaker() as session:
                conn = session.connection()
                for i in range(0, len(need), 500):
                    chunk = need[i : i + 500]
                    marks = ", ".join(f"'{r}'" for r in chunk if r.isalnum())
                    kmarks = ", ".join(f"'{k}'" for k in keys)
                    res = conn.exec_driver_sql(
                        f"SELECT run_uuid, key, step, value, is_nan, timestamp FROM metrics "
                        f"WHERE run_uuid IN ({marks}) AND key IN ({kmarks})"
                    )
                    frames.append(pd.DataFrame(res.fetchall(), columns=["run_id", "key", "step", "value", "is_nan", "timestamp"]))
        else:
            for r in need:
                for k in keys:
                    hist = sweep.client.get_metric_history(r, k)
                    frames.append(pd.DataFrame([(r, k, h.step, h.value, False, h.timestamp) for h in hist], columns=["run_id", "key", "step", "value", "is_nan", "timestamp"]))
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "key", "step", "value", "is_nan", "timestamp"])
        df.loc[df["is_nan"].astype(bool), "value"] = np.nan
        df["value"] = df["value"].astype(float).replace([1.7976931348623157e308, -1.7976931348623157e308], [np.inf, -np.inf])
        df = df.sort_values(["run_id", "key", "step"])
        df["t"] = (df["timestamp"] - df.groupby("run_id")["timestamp"].transform("min")) / 1000.0
        groups = dict(tuple(df.groupby("run_id")))
        empty = df.iloc[:0]
        for r in need:
            sweep.curve_cache[(r, keys)] = groups.get(r, empty)
    return pd.concat([sweep.curve_cache[(r, keys)] for r in run_ids], ignore_index=True) if run_ids else pd.DataFrame()


def trajectory(sweep: Sweep, run_id: str) -> pd.DataFrame | None:
    """The run's trajectory.csv artifact (step, x1[, x2], loss), or None."""
    uri = sweep.runs.set_index("run_id")["artifact_uri"].get(run_id) if "artifact_uri" in sweep.runs else None
    local = Path(uri[len("file://"):] if uri.startswith("file://") else uri) / "trajectory.csv" if uri and "://" not in uri.replace("file://", "") else None
    if local is not None and local.exists():  # a local artifact store: read the file where it is
        return pd.read_csv(local)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = sweep.client.download_artifacts(run_id, "trajectory.csv", tmp)
            return pd.read_csv(io.StringIO(Path(path).read_text()))
    except Exception:  # noqa: BLE001 - a missing artifact just means no trajectory to draw
        return None


def problem_object(row: pd.Series):
    """Rebuild the problem a run used from its logged params (for contours and minima)."""
    from harness.plan import import_target

    kwargs = {k[len("params.problem."):]: _param(v) for k, v in row.items() if k.startswith("params.problem.") and isinstance(v, str)}
    target = kwargs.pop("_target_", None)
    kwargs.pop("name", None)
    if target is None:
        return None
    try:
        return import_target("problem._target_", target)(**kwargs, seeds=[int(row["seed"])])
    except Exception:  # noqa: BLE001 - a problem class that is no longer importable: no contour, still a report
        return None
