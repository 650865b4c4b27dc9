"""Writing runs: one finished MLflow run per member, nested under one parent run per sweep.

A sqlite store at the pinned schema is written through :mod:`harness.store.tables` with sqlite3
alone (no MLflow import), and its artifacts straight into the local artifact directory. Other SQL
stores (PostgreSQL, ...) get the same bulk inserts through MLflow's SQLAlchemy engine; an MLflow
server gets the plain client calls, one ``log_batch`` per run. Either way the curves of every step go
into one Parquet file per chunk of runs (:mod:`harness.store.curves`), written before the runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from harness.store.background import Background
from harness.store.curves import CURVES_TAG, FOLDER, OWN_FILE, curve_batches, write_batches, write_curves
from harness.store.location import check_artifact_root, creation_lock, local_artifact_dir, seed_new_sqlite, sqlite_file
from harness.store.records import RunRecord
from harness.store.runtable import FOLDER as RUN_TABLES
from harness.store.runtable import write_run_table
from harness.store.tables import NOTE, PARENT_TAG, SWEEP_HASH, Tables, clip, new_run_id, user
from optimizers.errors import ConfigError

EXPERIMENT_KIND = "mlflow.experimentKind"
CHUNK = 500  # runs per transaction of a SQL store


class Tracker:
    """Writes runs with explicit run ids (never the fluent active-run stack)."""

    def __init__(self, uri: str, experiment: str):
        self.uri, self.experiment_name = uri, experiment
        self.client = self.tables = None
        self._holders: dict[str, str] = {}  # parent run id -> its artifact URI
        self._writer: Background | None = None  # stores a sweep's chunks while the job goes on (bulk path)
        self._writer_tables: Tables | None = None  # the writer thread's own connection to a database server
        self._inserts = None  # a sqlite store's WriterProcess: the process inserting the rows
        with creation_lock(uri):  # one process creates a new store and a new experiment
            path = sqlite_file(uri)
            if path is not None:
                seed_new_sqlite(uri)
                self.tables = Tables.open_sqlite(path)
            if self.tables is not None:
                found = self.tables.experiment(experiment)
                # MLflow 3.17's UI opens new experiments in its GenAI view; this tag marks ours as model
                # training (honoured by newer UIs). The sweep summary links the runs view directly.
                self.experiment_id, self.artifact_location = found or self.tables.create_experiment(
                    experiment, {EXPERIMENT_KIND: "custom_model_development"})
            else:
                self._open_client()
        if self.artifact_location.startswith("mlflow-artifacts:") and not uri.startswith("http"):
            raise ConfigError(
                f"tracking.uri={uri} cannot store artifacts of experiment '{experiment}' (they go through an MLflow "
                f"server: {self.artifact_location}); allowed: that server's http:// URI, or another experiment name"
            )
        check_artifact_root(uri, self.artifact_location)

    def _open_client(self) -> None:
        import logging

        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        # an mlflow server's client prints two links per ended run; the sweep summary prints one
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow import MlflowClient
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        self.client = MlflowClient(self.uri)
        exp = self.client.get_experiment_by_name(self.experiment_name)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            self.experiment_name, tags={EXPERIMENT_KIND: "custom_model_development"})
        self.artifact_location = self.client.get_experiment(self.experiment_id).artifact_location
        store = self.client._tracking_client.store
        if isinstance(store, SqlAlchemyStore):  # bulk inserts through MLflow's own engine
            if self.uri.startswith("sqlite:"):
                _wait_for_writers(store.engine)
            self.tables = Tables.of_engine(store.engine)

    @property
    def direct(self) -> bool:
        return self.client is None

    def start_parent(self, name: str, tags: dict[str, str]) -> str:
        tags = {"mlflow.user": user(), **tags}
        if self.direct:
            return self.tables.create_run(self.experiment_id, self.artifact_location, name, tags)
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        if self.direct:
            import time

            self.tables.set_status(run_id, status, int(time.time() * 1000))
        else:
            self.client.set_terminated(run_id, status)

    def reopen(self, run_id: str) -> None:
        """Mark a sweep's parent run RUNNING again, to continue it."""
        if self.direct:
            self.tables.set_status(run_id, "RUNNING")
        else:
            self.client.update_run(run_id, status="RUNNING")

    def find_sweep(self, sweep_hash: str) -> str | None:
        """The latest parent run of a sweep with these members (any status), or None."""
        if self.tables is not None:
            return self.tables.find_sweep(self.experiment_id, sweep_hash)
        runs = self.client.search_runs([self.experiment_id], f"tags.`{SWEEP_HASH}` = '{sweep_hash}'", order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def stored_hashes(self, parent: str) -> set[str]:
        """:func:`~harness.store.tables.member_key` (configuration and code) of the finished member runs under ``parent``."""
        if self.tables is not None:
            return self.tables.stored_hashes(parent)
        from harness.store.reader import all_pages
        from harness.store.tables import CODE_HASH, CONFIG_HASH, member_key

        flt = f"tags.`{PARENT_TAG}` = '{parent}' AND attributes.status = 'FINISHED'"
        runs = all_pages(self.client, self.experiment_id, flt)
        return {member_key(r.data.tags[CONFIG_HASH], r.data.tags.get(CODE_HASH)) for r in runs if CONFIG_HASH in r.data.tags}

    def tags_of(self, run_id: str) -> dict[str, str]:
        if self.tables is not None:
            return self.tables.run_info(run_id)["tags"]
        return dict(self.client.get_run(run_id).data.tags)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        if self.tables is not None:
            self.tables.set_tags(run_id, tags)
        else:
            for k, v in tags.items():
                self.client.set_tag(run_id, k, v)

    def log_runs(self, records: Iterable[RunRecord], parent_run_id: str | None) -> list[str]:
        """Write finished runs, nested under ``parent_run_id`` when given; returns their ids. They are
        taken ``CHUNK`` at a time (``records`` may be a generator, so memory stays flat however big the
        batch): each chunk's curves go into one Parquet file among the parent's artifacts, then its runs
        are stored (by a SQL store in one transaction), each tagged with that file. A sweep's chunks in
        a SQL store are written by a thread while the job goes on: :meth:`close` waits for them."""
        ids, chunk = [], []
        for r in records:
            chunk.append(r)
            if len(chunk) == CHUNK:
                ids += self._chunk(chunk, parent_run_id)
                chunk = []
        return ids + (self._chunk(chunk, parent_run_id) if chunk else [])

    def close(self, drop: bool = False) -> None:
        """Wait until every chunk handed to the writer thread is stored (``drop``: only the one being
        written, as after an interrupt) and close its connection; raises what failed there."""
        if self._writer is not None:
            try:
                self._writer.close(drop)
            finally:
                self._writer = None
                inserts, self._inserts = self._inserts, None
                if inserts is not None:  # the chunks it was sent are stored, interrupted or not
                    inserts.close()
                if self._writer_tables is not None:
                    self._writer_tables.close()
                    self._writer_tables = None

    def _chunk(self, records: list[RunRecord], parent: str | None) -> list[str]:
        if self.tables is None:
            return self._through_client(records, parent)
        ids, files, rows = self._bulk(records, parent)
        if not parent:
            self.tables.insert_runs(*rows)
            return ids
        if self._writer is None:
            self._writer = Background("harness-store-writer")
            if self.tables.sqlite:  # a process of its own: sqlite's inserts in a thread take the job's GIL row by row
                # imported here, not by the package: the module is the writer process's __main__
                from harness.store.process import WriterProcess

                self._inserts = WriterProcess(self.tables.source)
            else:  # a database server does the inserts' work in its own process already
                self._writer_tables = self.tables.another()
        self._writer.submit(partial(self._store, files, rows))
        return ids

    def _store(self, files: list[tuple], rows: tuple) -> None:
        """In the writer thread: a chunk's files (encoding releases the GIL), then its rows (in the writer
        process of a sqlite store, else through the thread's own connection)."""
        for artifact_uri, folder, name, write in files:
            put_file(artifact_uri, folder, name, write)
        if self._inserts is not None:
            self._inserts.submit(rows)
        else:
            self._writer_tables.insert_runs(*rows)

    def _tags(self, r: RunRecord, parent: str | None) -> dict[str, str]:
        tags = {"mlflow.runName": r.name, "mlflow.user": user(), "mlflow.source.name": "harness", **r.tags}
        if parent:
            tags[PARENT_TAG] = parent
        return tags

    def _curves_tags(self, curves_file: str, parent: str | None) -> dict[str, str]:
        """The run's pointer to its curves: :data:`CURVES_TAG`, and for a sweep's member a description
        (shown on its page in the MLflow UI) linking the batch's file among the parent's artifacts."""
        tags = {CURVES_TAG: curves_file}
        if parent:
            path = f"{FOLDER}/{curves_file.rsplit('/', 1)[-1]}"
            tags[NOTE] = f"Every step's curves: this run's rows of [{path}](#/experiments/{self.experiment_id}/runs/{parent}/artifacts/{path}), among the sweep's artifacts."
        return tags

    def _parent_artifacts(self, parent: str) -> str:
        if parent not in self._holders:
            self._holders[parent] = (self.tables.run_info(parent)["artifact_uri"] if self.tables is not None
                                     else self.client.get_run(parent).info.artifact_uri)
        return self._holders[parent]

    def _curves_file(self, parent: str) -> tuple[str, str]:
        """(artifact URI, file name) of a new curves file among ``parent``'s artifacts."""
        name = f"{new_run_id()}.parquet"  # unique across the parallel jobs of a sweep
        uri = self._parent_artifacts(parent)
        return f"{uri.rstrip('/')}/{FOLDER}/{name}", name

    def _own_curves(self, records: list[RunRecord], run_ids: list[str], artifact_uris: list[str]) -> list[str]:
        """Each run's own curves file (runs without a parent); returns their :data:`CURVES_TAG`."""
        for r, run_id, uri in zip(records, run_ids, artifact_uris):
            self._write(run_id, uri, "", OWN_FILE, lambda p, r=r, run_id=run_id: write_curves(p, [r], [run_id]))
        return [f"{uri.rstrip('/')}/{OWN_FILE}" for uri in artifact_uris]

    def _write(self, run_id: str, artifact_uri: str, folder: str, name: str, write) -> None:
        """:func:`put_file`, through the server's client when there is one."""
        put_file(artifact_uri, folder, name, write, None if self.client is None else partial(self.client.log_artifact, run_id))

    def _through_client(self, records: list[RunRecord], parent: str | None) -> list[str]:
        """Runs through the client (an MLflow server): all created, the chunk's curves stored, then each
        run's metrics, params, tags and config.yaml logged and the run finished. Runs not finished when
        something fails (an interrupt included) are marked FAILED."""
        from mlflow.entities import Metric, Param, RunTag

        runs, done = [], set()
        try:
            for r in records:
                runs.append(self.client.create_run(self.experiment_id, run_name=r.name, tags=self._tags(r, parent), start_time=int(r.started_at * 1000)))
            ids = [run.info.run_id for run in runs]
            if parent:
                tag, name = self._curves_file(parent)
                self._write(parent, self._parent_artifacts(parent), FOLDER, name, lambda p: write_curves(p, records, ids))
                tags = [tag] * len(records)
            else:
                tags = self._own_curves(records, ids, [run.info.artifact_uri for run in runs])
            for r, run, tag in zip(records, runs, tags):
                run_id = run.info.run_id
                metrics = [Metric(k, v, t, s) for k, v, t, s in r.metric_points()]
                self.client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in r.params.items()], tags=[RunTag(k, v) for k, v in self._curves_tags(tag, parent).items()])
                self._artifacts(run_id, run.info.artifact_uri, r.artifacts)
                self.client.set_terminated(run_id, "FINISHED", end_time=r.end_ms)
                done.add(run_id)
        except BaseException:
            for run in runs:
                if run.info.run_id not in done:
                    try:
                        self.client.set_terminated(run.info.run_id, "FAILED")
                    except Exception:  # noqa: BLE001 - the original error matters more
                        pass
            raise
        return ids

    def _artifacts(self, run_id: str, artifact_uri: str, files: dict[str, str | bytes]) -> None:
        local = local_artifact_dir(artifact_uri)
        if local is not None:  # a local artifact store: write the files where MLflow would put them
            local.mkdir(parents=True, exist_ok=True)
            for path, content in files.items():
                (local / path).write_bytes(content if isinstance(content, bytes) else content.encode())
            return
        import tempfile

        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory() as tmp:
            for path, content in files.items():
                (Path(tmp) / path).write_bytes(content if isinstance(content, bytes) else content.encode())
            if self.client is not None:
                self.client.log_artifacts(run_id, tmp)
            else:
                get_artifact_repository(artifact_uri).log_artifacts(tmp)

    def _bulk(self, records: list[RunRecord], parent: str | None):
        """(run ids, files, rows) of a chunk: its files [(artifact URI, folder, name, ``write(path)``)],
        stored first (a run never lacks them), then its rows for :meth:`Tables.insert_runs`, one transaction."""
        runs, tags, params, metrics, latest, table = [], [], [], [], [], []
        ids = [new_run_id() for _ in records]
        uris = [f"{self.artifact_location.rstrip('/')}/{run_id}/artifacts" for run_id in ids]
        if parent:
            curve_uri, name = self._curves_file(parent)
            holder = self._parent_artifacts(parent)
            curves = [curve_uri] * len(records)
        else:
            curves = self._own_curves(records, ids, uris)
        who, exp = user(), int(self.experiment_id)
        for r, run_id, artifact_uri, curve_file in zip(records, ids, uris, curves):
            if r.artifacts:
                self._artifacts(run_id, artifact_uri, r.artifacts)
            start = int(r.started_at * 1000)
            runs.append((run_id, r.name, "UNKNOWN", "", "", who, "FINISHED", start, r.end_ms, None, "", "active", artifact_uri, exp))
            run_tags = {k: str(v) for k, v in {**self._tags(r, parent), **self._curves_tags(curve_file, parent)}.items()}
            run_params = {k: str(v)[:6000] for k, v in r.params.items()}
            tags += [(k, v, run_id) for k, v in run_tags.items()]
            params += [(k, v, run_id) for k, v in run_params.items()]
            keys, values, stamps, steps = r.metric_arrays()
            clipped, is_nan = clip(values)
            rows = list(zip(keys, clipped.tolist(), stamps.tolist(), steps.tolist(), is_nan.tolist(), [run_id] * len(keys)))
            metrics += rows
            last = {row[0]: i for i, row in enumerate(rows)}  # rows of a key come in step order: its last row is the latest
            latest += [rows[i] for i in last.values()]
            if parent:
                table.append({"run_id": run_id, "run_name": r.name, "start_time": start, "artifact_uri": artifact_uri,
                              **{f"params.{k}": v for k, v in run_params.items()},
                              **{f"metrics.{k}": float(values[i]) for k, i in last.items()},
                              **{f"tags.{k}": v for k, v in run_tags.items()}})
        schema, batches = curve_batches(records, ids) if parent else (None, None)
        files = [(holder, FOLDER, name, partial(write_batches, schema=schema, batches=batches)),
                 (holder, RUN_TABLES, name, partial(write_run_table, rows=table))] if parent else []
        return ids, files, (runs, tags, params, metrics, latest)


def put_file(artifact_uri: str, folder: str, name: str, write, log_artifact=None) -> None:
    """``write(path)`` a file and store it among a run's artifacts under ``folder`` ('' for the root) as
    ``name``: in a local artifact store written in place under a temporary name and renamed, whole;
    elsewhere through MLflow (``log_artifact(path, folder)`` of a server's client, or the artifact repository)."""
    local = local_artifact_dir(artifact_uri)
    if local is not None:
        dest = local / folder
        dest.mkdir(parents=True, exist_ok=True)
        part = dest / f".{name}.part"
        write(part)
        os.replace(part, dest / name)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / name
        write(file)
        if log_artifact is not None:
            log_artifact(str(file), folder or None)
        else:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            get_artifact_repository(artifact_uri).log_artifact(str(file), folder or None)


def _wait_for_writers(engine) -> None:
    """Make every sqlite connection of ``engine`` wait for a concurrent writer instead of failing
    with "database is locked" after pysqlite's 5 s: parallel jobs and concurrent sweeps share a file."""
    from sqlalchemy import event

    from harness.store.location import BUSY_TIMEOUT_MS

    @event.listens_for(engine, "connect")
    def _busy(dbapi_connection, record):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    engine.dispose()  # connections opened before the listener reconnect with it



