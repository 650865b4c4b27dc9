"""The MLflow store: the one module that knows MLflow's tables, for writes and reads alike.

Writes: one run per member, nested under one parent run per sweep. Curves are kept in memory during a run and written with a few ``log_batch`` calls per
run (never one store round trip per step): every step up to ``MAX_POINTS`` steps, and
longer curves sampled to ``SAMPLE_POINTS`` + 1 points that include the first and last step.

Reads: the finished runs of a sweep or of a filter as one table (:func:`read_runs`), their
curves (:func:`read_curves`) and trajectories, for the sweep summary and the report.
"""

from __future__ import annotations

import math
import os
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optimizers.base import ConfigError

MAX_POINTS = 1000
SAMPLE_POINTS = 500
PARENT_TAG = "mlflow.parentRunId"
EXPERIMENT_KIND = "mlflow.experimentKind"
CONFIG_HASH = "harness.config_hash"  # on every member run: its resolved configuration (plan.config_hash)
SWEEP_HASH = "harness.sweep_hash"  # on a sweep's parent run: the set of its members' hashes


def resolve_uri(configured: str | None) -> str:
    """The tracking URI, resolved once at launch: ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``,
    else ``sqlite:///<launch dir>/mlflow.db``. Relative sqlite paths become absolute, so every
    job of a sweep writes to the same database wherever it runs."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path and not path.startswith("/") and path != ":memory:":
            uri = "sqlite:///" + str(Path(path).resolve())
    return uri


BUSY_TIMEOUT_MS = 600_000  # how long a sqlite writer waits for another one (a big batch takes seconds)


def _sqlite_file(uri: str) -> Path | None:
    """The file of a sqlite store's URI; None for other stores and in-memory sqlite."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return None
    return Path(uri[len("sqlite:///") :])


@contextmanager
def creation_lock(uri: str):
    """Hold an exclusive lock on a sqlite store's directory while it is opened, so that a new store
    is created (its schema migrated) by exactly one process, however many start at once: the
    others wait, then find it made. Other stores need no lock (a server or a database serialises)."""
    path = _sqlite_file(uri)
    if path is None:
        yield
        return
    import fcntl

    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _schema_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "optbench-harness"


def seed_new_sqlite(uri: str) -> bool:
    """Create a new sqlite store as a copy of an empty one that this MLflow version made once and
    cached (``~/.cache/optbench-harness/mlflow-<version>.db``), instead of running MLflow's ~50
    schema migrations again (about 1 s). The copy is what MLflow would have made, but for the
    Default experiment's artifact location and time, which are set as MLflow sets them here.
    Returns False, and leaves creation to MLflow, where the cache cannot be used. Call it under
    :func:`creation_lock`."""
    path = _sqlite_file(uri)
    if path is None or path.exists() or not path.parent.is_dir():
        return False
    import fcntl
    import shutil
    import sqlite3
    import time

    from mlflow.version import VERSION

    try:
        cache = _schema_cache()
        cache.mkdir(parents=True, exist_ok=True)
        template = cache / f"mlflow-{VERSION}.db"
        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process makes the template
            if not template.exists():
                tmp = cache / f"making-{os.getpid()}.db"
                tmp.unlink(missing_ok=True)
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                store = SqlAlchemyStore(f"sqlite:///{tmp}", str(cache / "mlruns"))
                store.engine.dispose()
                os.replace(tmp, template)
        part = path.with_name(f".{path.name}.{os.getpid()}.part")
        shutil.copyfile(template, part)
        with sqlite3.connect(part) as db:
            now = int(time.time() * 1000)
            db.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? WHERE experiment_id = 0",
                       (os.path.join(os.path.abspath("mlruns"), "0"), now, now))
        db.close()
        os.replace(part, path)
        return True
    except OSError:
        return False


def _wait_for_writers(engine) -> None:
    """Make every sqlite connection of ``engine`` wait for a concurrent writer instead of failing
    with "database is locked" after pysqlite's 5 s: parallel jobs and concurrent sweeps share a file."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _busy(dbapi_connection, record):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    engine.dispose()  # connections opened before the listener reconnect with it


def runs_view(uri: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs in the model-training view, for a local ``mlflow ui``
    (MLflow 3.17 opens experiments in its GenAI view otherwise, and remembers the choice per browser)."""
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"


def experiment_name(configured: str) -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or configured


def check_reachable(uri: str) -> None:
    """Fail fast, before any run exists, when the store cannot be used."""
    allowed = "sqlite:///<path>, http(s)://<mlflow server>, or a database URI such as postgresql://..."
    scheme = uri.split(":", 1)[0] if "://" in uri else ""
    if scheme == "sqlite":
        parent = Path(uri[len("sqlite:///") :]).parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ConfigError(f"tracking.uri={uri} is unusable: directory {parent} is missing or not writable; allowed: {allowed}")
    elif scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
                r.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ConfigError(f"tracking.uri={uri} is unreachable ({reason}); allowed: {allowed}") from None
    elif scheme in ("file", "") or scheme not in ("postgresql", "mysql", "mssql", "databricks") and "+" not in scheme:
        raise ConfigError(f"tracking.uri={uri} is not supported; allowed: {allowed}")


def sample_steps(n_points: int) -> np.ndarray:
    """Indices of the curve points to log: all up to MAX_POINTS steps, else SAMPLE_POINTS + 1
    evenly spaced ones, always including step 0 and the last step."""
    if n_points <= MAX_POINTS + 1:
        return np.arange(n_points)
    return np.unique(np.round(np.linspace(0, n_points - 1, SAMPLE_POINTS + 1)).astype(int))


@dataclass
class RunRecord:
    """Everything one member produced, ready to be written as one finished MLflow run."""

    name: str
    params: dict[str, str]
    tags: dict[str, str]
    summary: dict[str, float]
    curves: dict[str, np.ndarray]  # full curves, step 0 .. last step
    started_at: float  # epoch seconds at step 0
    elapsed: np.ndarray  # seconds since step 0, per step
    artifacts: dict[str, str] = field(default_factory=dict)  # path -> text
    sparse: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # key -> (steps, values), e.g. test accuracy

    def metric_points(self) -> list[tuple[str, float, int, int]]:
        """(key, value, timestamp ms, step): sampled curve points, then the summary at the last step."""
        keys, values, stamps, steps = self.metric_arrays()
        return list(zip(keys, values.tolist(), stamps.tolist(), steps.tolist()))

    def metric_arrays(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """The points of :meth:`metric_points` as (keys, values, timestamps, steps) arrays."""
        idx = sample_steps(len(self.elapsed))
        stamps = ((self.started_at + self.elapsed) * 1000).astype(np.int64)
        last = len(self.elapsed) - 1
        n_sum = len(self.summary)
        keys = [k for k in self.curves for _ in idx] + list(self.summary)
        values = [np.asarray(c, dtype=np.float64)[idx] for c in self.curves.values()] + [np.array(list(self.summary.values()), dtype=np.float64)]
        ts = [np.tile(stamps[idx], len(self.curves)), np.full(n_sum, stamps[last])]
        st = [np.tile(idx, len(self.curves)), np.full(n_sum, last)]
        for k, (steps, vals) in self.sparse.items():
            keys += [k] * len(steps)
            values.append(np.asarray(vals, dtype=np.float64))
            ts.append(stamps[steps])
            st.append(np.asarray(steps))
        return keys, np.concatenate(values), np.concatenate(ts), np.concatenate(st)


class Tracker:
    """Writes runs with explicit run ids (never the fluent active-run stack).

    For SQL stores (sqlite, PostgreSQL, ...) the runs of a batch are inserted in one
    transaction through MLflow's own table models: ~100x faster than ``log_batch``, which
    costs about 0.2-0.4 ms per metric point here, and atomic: a batch's runs appear
    together, already FINISHED, or not at all. Other stores (an ``mlflow server``) get
    the plain client calls, one ``log_batch`` per run.
    """

    def __init__(self, uri: str, experiment: str):
        import logging

        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        # an mlflow server's client prints two links per ended run; the sweep summary prints one
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow import MlflowClient

        self.uri = uri
        self.experiment_name = experiment
        with creation_lock(uri):  # MLflow migrates a new store's schema in every process that opens it
            seed_new_sqlite(uri)
            self.client = MlflowClient(uri)
            exp = self.client.get_experiment_by_name(experiment)
            # MLflow 3.17's UI opens new experiments in its GenAI view; this tag marks ours as model
            # training (honoured by newer UIs). The sweep summary links the runs view directly.
            self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment, tags={EXPERIMENT_KIND: "custom_model_development"})
        self.artifact_location = self.client.get_experiment(self.experiment_id).artifact_location
        if self.artifact_location.startswith("mlflow-artifacts:") and not uri.startswith("http"):
            raise ConfigError(
                f"tracking.uri={uri} cannot store artifacts of experiment '{experiment}' (they go through an MLflow "
                f"server: {self.artifact_location}); allowed: that server's http:// URI, or another experiment name"
            )
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = self.client._tracking_client.store
        self.sql_store = store if isinstance(store, SqlAlchemyStore) else None
        if self.sql_store is not None and uri.startswith("sqlite:"):
            _wait_for_writers(self.sql_store.engine)

    def start_parent(self, name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"mlflow.user": _user(), **tags})
        return run.info.run_id

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def find_sweep(self, sweep_hash: str) -> str | None:
        """The latest parent run of a sweep with these members (any status), or None."""
        runs = self.client.search_runs([self.experiment_id], f"tags.`{SWEEP_HASH}` = '{sweep_hash}'", order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def stored_hashes(self, parent: str) -> set[str]:
        """Config hashes of the finished member runs under ``parent``."""
        if self.sql_store is not None:
            with self.sql_store.ManagedSessionMaker() as session:
                rows = session.connection().exec_driver_sql(
                    "SELECT h.value FROM tags p JOIN tags h ON h.run_uuid = p.run_uuid JOIN runs r ON r.run_uuid = p.run_uuid "
                    f"WHERE p.key = '{PARENT_TAG}' AND p.value = '{parent}' AND h.key = '{CONFIG_HASH}' "
                    "AND r.status = 'FINISHED' AND r.lifecycle_stage = 'active'"
                ).fetchall()
            return {r[0] for r in rows}
        flt = f"tags.`{PARENT_TAG}` = '{parent}' AND attributes.status = 'FINISHED'"
        return {r.data.tags[CONFIG_HASH] for r in _all_pages(self.client, self.experiment_id, flt) if CONFIG_HASH in r.data.tags}

    def reopen(self, run_id: str) -> None:
        """Mark a sweep's parent run RUNNING again, to continue it."""
        self.client.update_run(run_id, status="RUNNING")

    def log_runs(self, records: list[RunRecord], parent_run_id: str | None) -> list[str]:
        """Write finished runs, nested under ``parent_run_id`` when given; returns their ids."""
        if not records:
            return []
        if self.sql_store is not None:
            return self._bulk(records, parent_run_id)
        return [self._one(r, parent_run_id) for r in records]

    def _tags(self, r: RunRecord, parent: str | None) -> dict[str, str]:
        tags = {"mlflow.runName": r.name, "mlflow.user": _user(), "mlflow.source.name": "harness", **r.tags}
        if parent:
            tags[PARENT_TAG] = parent
        return tags

    def _one(self, r: RunRecord, parent: str | None) -> str:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(
            self.experiment_id, run_name=r.name, tags=self._tags(r, parent), start_time=int(r.started_at * 1000)
        )
        run_id = run.info.run_id
        try:
            metrics = [Metric(k, v, t, s) for k, v, t, s in r.metric_points()]
            self.client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in r.params.items()])
            for path, text in r.artifacts.items():
                self.client.log_text(run_id, text, path)
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED", end_time=_end_ms(r))
        return run_id

    def _bulk(self, records: list[RunRecord], parent: str | None) -> list[str]:
        import tempfile
        import uuid

        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
        from mlflow.utils.uri import append_to_uri_path
        from sqlalchemy import insert

        runs, tags, params, metrics, latest, ids = [], [], [], [], [], []
        for r in records:
            run_id = uuid.uuid4().hex
            ids.append(run_id)
            artifact_uri = append_to_uri_path(self.artifact_location, run_id, "artifacts")
            if r.artifacts:
                with tempfile.TemporaryDirectory() as tmp:
                    for path, text in r.artifacts.items():
                        (Path(tmp) / path).write_text(text)
                    get_artifact_repository(artifact_uri).log_artifacts(tmp)
            runs.append(
                (run_id, r.name, "UNKNOWN", "", "", _user(), "FINISHED", int(r.started_at * 1000), _end_ms(r),
                 None, "", "active", artifact_uri, int(self.experiment_id))
            )
            tags += [(k, str(v), run_id) for k, v in self._tags(r, parent).items()]
            params += [(k, str(v)[:6000], run_id) for k, v in r.params.items()]
            keys, values, stamps, steps = r.metric_arrays()
            # MLflow's own sanitising (SqlAlchemyStore.sanitize_metric_value): NaN -> 0 with is_nan, +-inf -> +-max float
            is_nan = np.isnan(values)
            values = np.nan_to_num(values, nan=0.0, posinf=1.7976931348623157e308, neginf=-1.7976931348623157e308)
            rows = list(zip(keys, values.tolist(), stamps.tolist(), steps.tolist(), is_nan.tolist(), [run_id] * len(keys)))
            metrics += rows
            last: dict[str, tuple] = {}
            for row in rows:  # latest value per key: the highest (step, timestamp)
                if row[0] not in last or (row[3], row[2]) >= (last[row[0]][3], last[row[0]][2]):
                    last[row[0]] = row
            latest += list(last.values())
        tables = (
            (SqlRun, ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
                      "start_time", "end_time", "deleted_time", "source_version", "lifecycle_stage", "artifact_uri",
                      "experiment_id"), runs),
            (SqlTag, ("key", "value", "run_uuid"), tags),
            (SqlParam, ("key", "value", "run_uuid"), params),
            (SqlMetric, ("key", "value", "timestamp", "step", "is_nan", "run_uuid"), metrics),
            (SqlLatestMetric, ("key", "value", "timestamp", "step", "is_nan", "run_uuid"), latest),
        )
        with self.sql_store.ManagedSessionMaker() as session:
            conn = session.connection()
            if conn.dialect.name == "sqlite":  # a 256 MB page cache: index updates of big inserts stay in memory
                conn.exec_driver_sql("PRAGMA cache_size=-262144")
            mark = {"qmark": "?", "numeric": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
            for model, cols, rows in tables:
                if not rows:
                    continue
                if mark is None:  # an unusual driver: let SQLAlchemy bind the parameters
                    session.execute(insert(model.__table__), [dict(zip(cols, row)) for row in rows])
                else:  # plain DBAPI executemany: SQLAlchemy's per-row parameter handling costs ~5 us a row
                    sql = f"INSERT INTO {model.__tablename__} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
                    conn.exec_driver_sql(sql, rows)
        return ids


def _end_ms(r: RunRecord) -> int:
    return max(int((r.started_at + float(r.elapsed[-1])) * 1000), int(r.started_at * 1000))


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# ---------------------------------------------------------------------------------------------
# Reads: the runs of a sweep (or of a filter) as one table, their curves and trajectories.

MAX_FLOAT = 1.7976931348623157e308  # MLflow stores +-inf as +-max float


class StoreError(Exception):
    """Runs cannot be read; the message says why and what to do (one line)."""


@dataclass
class RunSet:
    """Finished runs read back from a store: one row per run (``params.*``, ``metrics.*``, ``tags.*``)."""

    client: object
    uri: str
    experiment: str
    runs: object  # pandas DataFrame
    parents: dict[str, dict]  # parent run id -> {"name", "status", "start_time", "tags"} of the sweeps involved
    sweep: str | None = None  # the sweep's parent run id when one sweep was read
    filter: str | None = None
    unfinished: int = 0  # member runs present but not FINISHED
    curve_cache: dict = field(default_factory=dict)


def open_client(uri: str):
    """An MlflowClient for ``uri`` that fails fast and creates nothing: a missing sqlite file is an
    error (MLflow would create an empty store), and a server must answer /health within 5 s."""
    import logging

    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if not path.is_file():
            raise StoreError(f"--uri {uri}: no such store (file {path} does not exist); allowed: an existing sqlite file, a server URI or a database URI")
    else:
        try:
            check_reachable(uri)
        except ConfigError as e:
            raise StoreError(str(e)) from None
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    from mlflow import MlflowClient

    return MlflowClient(uri)


def read_runs(uri: str, experiment: str, sweep: str | None = None, filter_string: str | None = None) -> RunSet:
    """The finished runs of one sweep (``sweep``: its parent run id; default: the latest sweep),
    or of every run matching an MLflow filter string (sweep members and single runs alike)."""
    client = open_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise StoreError(f"no experiment '{experiment}' in {uri}: run a sweep first (python -m harness ... -m lr=...)")
    if filter_string:
        flt = filter_string
    else:
        if not sweep:
            latest = client.search_runs([exp.experiment_id], "tags.`harness.sweep` = 'true'", order_by=["attributes.start_time DESC"], max_results=1)
            if not latest:
                raise StoreError(f"no sweep in experiment '{experiment}' of {uri}: run one with -m, or pass --filter")
            sweep = latest[0].info.run_id
        flt = f"tags.`mlflow.parentRunId` = '{sweep}'"
    df = _search(client, exp.experiment_id, flt)
    if filter_string and not df.empty and "tags.harness.sweep" in df:
        df = df[df["tags.harness.sweep"] != "true"]
    unfinished = int((df["status"] != "FINISHED").sum()) if not df.empty else 0
    df = df[df["status"] == "FINISHED"].reset_index(drop=True) if not df.empty else df
    parent_ids = set(df["tags.mlflow.parentRunId"].dropna()) if "tags.mlflow.parentRunId" in df else set()
    if sweep:
        parent_ids.add(sweep)
    parents = {}
    for pid in sorted(parent_ids):
        r = client.get_run(pid)
        parents[pid] = {"name": r.info.run_name, "status": r.info.status, "start_time": r.info.start_time, "tags": dict(r.data.tags)}
    if df.empty:
        where = f"sweep {sweep}" if sweep else f"filter {filter_string!r}"
        raise StoreError(f"no finished runs for {where} in experiment '{experiment}' of {uri}")
    return RunSet(client, uri, experiment, df, parents, sweep, filter_string, unfinished)


def _search(client, experiment_id: str, flt: str):
    """All runs matching ``flt`` as a DataFrame (params.*, metrics.*, tags.* columns).

    For SQL stores, MLflow's search selects the run ids (its filter language), and the params,
    latest metrics and tags are read in three queries: building MLflow's entity objects for
    1,000 runs costs seconds."""
    import pandas as pd
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    if isinstance(store, SqlAlchemyStore):
        ids = _sql_run_ids(store, experiment_id, flt)
        if ids is None:
            ids = [r.info.run_id for r in _all_pages(client, experiment_id, flt)]
        return _sql_frame(store, ids)
    rows = []
    for r in _all_pages(client, experiment_id, flt):
        row = {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status, "start_time": r.info.start_time, "artifact_uri": r.info.artifact_uri}
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row.update({f"metrics.{k}": _unclip(v) for k, v in r.data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _unclip(v: float) -> float:
    return math.inf if v >= MAX_FLOAT else -math.inf if v <= -MAX_FLOAT else v


def _all_pages(client, experiment_id: str, flt: str):
    token = None
    while True:
        page = client.search_runs([experiment_id], flt, max_results=5000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _sql_run_ids(store, experiment_id: str, flt: str) -> list[str] | None:
    """Run ids of a sweep's members (the filter the report builds itself); None for other filters."""
    import re

    m = re.fullmatch(r"tags\.`mlflow\.parentRunId` = '([0-9a-f]+)'", flt)
    if not m:
        return None
    with store.ManagedSessionMaker() as session:
        res = session.connection().exec_driver_sql(
            "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            f"WHERE t.key = 'mlflow.parentRunId' AND t.value = '{m.group(1)}' AND r.experiment_id = {int(experiment_id)} "
            "AND r.lifecycle_stage = 'active'"
        )
        return [r[0] for r in res.fetchall()]


def _sql_frame(store, ids: list[str]):
    """params.*, metrics.* (latest values), tags.* and run info of ``ids``, as MLflow stores them."""
    import pandas as pd

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
            df["value"] = df["value"].astype(float).replace([MAX_FLOAT, -MAX_FLOAT], [math.inf, -math.inf])
            df.loc[df["is_nan"].astype(bool), "value"] = np.nan
        else:
            df = pd.DataFrame(frames[table], columns=["run_id", "key", "value"])
        if not df.empty:
            wide = df.pivot(index="run_id", columns="key", values="value")
            wide.columns = [prefix + c for c in wide.columns]
            out = out.join(wide)
    return out.reset_index()


def read_curves(rs: RunSet, run_ids: list[str], keys: tuple[str, ...]):
    """Curve points (run_id, key, step, value, t) of the given runs; ``t`` is seconds since the
    run's first point. SQL stores are read in one query per 500 runs, others per run and key."""
    import pandas as pd

    cols = ["run_id", "key", "step", "value", "is_nan", "timestamp"]
    need = [r for r in run_ids if (r, keys) not in rs.curve_cache]
    if need:
        store = rs.client._tracking_client.store
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        frames = []
        if isinstance(store, SqlAlchemyStore):
            with store.ManagedSessionMaker() as session:
                conn = session.connection()
                for i in range(0, len(need), 500):
                    marks = ", ".join(f"'{r}'" for r in need[i : i + 500] if r.isalnum())
                    kmarks = ", ".join(f"'{k}'" for k in keys)
                    res = conn.exec_driver_sql(f"SELECT run_uuid, key, step, value, is_nan, timestamp FROM metrics WHERE run_uuid IN ({marks}) AND key IN ({kmarks})")
                    frames.append(pd.DataFrame(res.fetchall(), columns=cols))
        else:
            for r in need:
                for k in keys:
                    hist = rs.client.get_metric_history(r, k)
                    frames.append(pd.DataFrame([(r, k, h.step, h.value, False, h.timestamp) for h in hist], columns=cols))
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
        df["value"] = df["value"].astype(float).replace([MAX_FLOAT, -MAX_FLOAT], [math.inf, -math.inf])
        df.loc[df["is_nan"].astype(bool), "value"] = np.nan
        df = df.sort_values(["run_id", "key", "step"])
        df["t"] = (df["timestamp"] - df.groupby("run_id")["timestamp"].transform("min")) / 1000.0
        groups = dict(tuple(df.groupby("run_id")))
        empty = df.iloc[:0]
        for r in need:
            rs.curve_cache[(r, keys)] = groups.get(r, empty)
    if not run_ids:
        return pd.DataFrame(columns=cols + ["t"])
    return pd.concat([rs.curve_cache[(r, keys)] for r in run_ids], ignore_index=True)


def read_trajectory(rs: RunSet, run_id: str):
    """The run's trajectory.csv artifact (step, x1[, x2], loss), or None."""
    import io
    import tempfile

    import pandas as pd

    uri = rs.runs.set_index("run_id")["artifact_uri"].get(run_id) if "artifact_uri" in rs.runs else None
    local = Path(uri[len("file://") :] if uri.startswith("file://") else uri) / "trajectory.csv" if uri and "://" not in uri.replace("file://", "") else None
    if local is not None and local.exists():  # a local artifact store: read the file where it is
        return pd.read_csv(local)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = rs.client.download_artifacts(run_id, "trajectory.csv", tmp)
            return pd.read_csv(io.StringIO(Path(path).read_text()))
    except Exception:  # noqa: BLE001 - a missing artifact just means no trajectory to draw
        return None
