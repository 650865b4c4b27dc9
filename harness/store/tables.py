"""Reads and writes on MLflow's own tables (runs, tags, params, metrics, latest_metrics, experiments),
in plain SQL through a DB-API connection: the one place that knows their columns.

A sqlite store whose schema is at :data:`SCHEMA_REVISION` (the revision the pinned MLflow creates and
migrates to) is opened with :mod:`sqlite3` alone, so a sweep never imports MLflow (~2.5 s with its SQL
store); a store at any other revision is left to MLflow's client, which migrates it or says why not.
Rows are what MLflow itself writes for the same calls (``tests/test_store.py`` compares them)."""

from __future__ import annotations

import functools
import math
import os
import secrets
import time
from pathlib import Path

import numpy as np

from harness.store.location import BUSY_TIMEOUT_MS

SCHEMA_REVISION = "dc11669786a5"  # alembic head of MLflow 3.17.2 (tests/test_store.py checks it against MLflow's scripts)
MAX_FLOAT = 1.7976931348623157e308  # MLflow stores +-inf as +-max float, NaN as 0 with is_nan
PARENT_TAG = "mlflow.parentRunId"
CONFIG_HASH = "harness.config_hash"  # on every member run: its resolved configuration (plan.config_hash)
SWEEP_HASH = "harness.sweep_hash"  # on a sweep's parent run: the set of its members' hashes
CODE_HASH = "harness.code_hash"  # on every member run: the code that computed it (harness/fingerprint.py)
NOTE = "mlflow.note.content"  # a run's description in the MLflow UI (markdown): a member's link to its curves, never read back
CODE_FILES = "harness.code_files"  # on a sweep's parent run: {file: hash} of the code its members ran, as JSON


def member_key(config_hash: str, code: str | None) -> str:
    """What makes a stored member current: its configuration and the code that computed it."""
    return f"{config_hash}/{code or ''}"

RUN_COLUMNS = ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
               "start_time", "end_time", "deleted_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id")
METRIC_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")

_last_ms, _seq = 0, 0


def new_run_id() -> str:
    """32 hex digits as MLflow's run ids, but ordered by creation time (milliseconds, then a counter,
    then 64 random bits): index pages of the run_uuid columns fill up instead of splitting at random."""
    global _last_ms, _seq
    ms = int(time.time() * 1000)
    _seq = _seq + 1 if ms == _last_ms else 0
    _last_ms = ms
    return f"{ms:012x}{_seq & 0xFFFF:04x}{secrets.token_hex(8)}"


@functools.cache
def user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def clip(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MLflow's sanitising of metric values: NaN -> 0 with is_nan, +-inf -> +-max float."""
    is_nan = np.isnan(values)
    return np.nan_to_num(values, nan=0.0, posinf=MAX_FLOAT, neginf=-MAX_FLOAT), is_nan


def unclip(v: float) -> float:
    return math.inf if v >= MAX_FLOAT else -math.inf if v <= -MAX_FLOAT else v


class Tables:
    """MLflow's tables behind one DB-API connection (``mark``: its parameter marker)."""

    def __init__(self, conn, mark: str = "?", sqlite: bool = False, source=None):
        self.conn, self.mark, self.sqlite = conn, mark, sqlite
        self.source = source  # the sqlite file or the SQLAlchemy engine: what :meth:`another` connects to

    @classmethod
    def open_sqlite(cls, path: Path) -> Tables | None:
        """The tables of an existing sqlite store at the pinned revision, else None."""
        import sqlite3

        if not path.is_file():
            return None
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            rev = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.DatabaseError:
            rev = None
        if rev != [(SCHEMA_REVISION,)]:
            conn.close()
            return None
        return cls(conn, "?", sqlite=True, source=path)

    @classmethod
    def of_engine(cls, engine) -> Tables:
        """The tables behind a SQLAlchemy engine (MLflow's, for PostgreSQL and other databases), in the
        driver's own transactions."""
        mark = {"qmark": "?", "numeric": "?", "format": "%s", "pyformat": "%s"}[engine.dialect.paramstyle]
        return cls(engine.raw_connection(), mark, source=engine)

    def another(self) -> Tables:
        """The same tables behind a connection of their own (a writer thread's)."""
        return Tables.open_sqlite(self.source) if self.sqlite else Tables.of_engine(self.source)

    def close(self) -> None:
        self.conn.close()

    # -- plumbing --------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql.replace("?", self.mark)

    def rows(self, sql: str, args=()) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(self._q(sql), tuple(args))
        out = cur.fetchall()
        cur.close()
        if not self.sqlite:
            self.conn.commit()  # end the read transaction (PostgreSQL would hold it open)
        return out

    def write(self, statements: list[tuple[str, list | tuple]]) -> None:
        """Run (sql, args) statements, a list of rows meaning executemany, in one transaction."""
        cur = self.conn.cursor()
        try:
            if self.sqlite:
                cur.execute("BEGIN IMMEDIATE")  # take the write lock now (other writers wait, busy_timeout)
                cur.execute("PRAGMA cache_size=-16384")  # 16 MB: the index pages big inserts touch (they append) stay in memory (64 MB: no faster)
            for sql, args in statements:
                if isinstance(args, list):
                    if args:
                        cur.executemany(self._q(sql), args)
                else:
                    cur.execute(self._q(sql), args)
            cur.execute("COMMIT") if self.sqlite else self.conn.commit()
        except BaseException:
            cur.execute("ROLLBACK") if self.sqlite else self.conn.rollback()
            raise
        finally:
            cur.close()

    # -- experiments -----------------------------------------------------------------------
    def experiment(self, name: str) -> tuple[str, str] | None:
        """(id, artifact location) of the active experiment ``name``, or None."""
        r = self.rows("SELECT experiment_id, artifact_location, lifecycle_stage FROM experiments WHERE name = ?", (name,))
        if r and r[0][2] != "active":
            raise ValueError(f"experiment '{name}' is deleted; restore it (mlflow experiments restore) or choose another name")
        return (str(r[0][0]), r[0][1]) if r else None

    def create_experiment(self, name: str, tags: dict[str, str]) -> tuple[str, str]:
        """As MLflow's SqlAlchemyStore with its default artifact root (./mlruns of the launch dir)."""
        now = int(time.time() * 1000)
        self.write([("INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time, workspace) "
                     "VALUES (?, '', 'active', ?, ?, 'default')", (name, now, now))])
        exp_id = str(self.rows("SELECT experiment_id FROM experiments WHERE name = ?", (name,))[0][0])
        location = os.path.join(os.path.abspath("mlruns"), exp_id)
        self.write([("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (location, int(exp_id))),
                    ("INSERT INTO experiment_tags (key, value, experiment_id) VALUES (?, ?, ?)", [(k, v, int(exp_id)) for k, v in tags.items()])])
        return exp_id, location

    # -- runs ------------------------------------------------------------------------------
    def insert_runs(self, runs: list[tuple], tags: list[tuple], params: list[tuple], metrics: list[tuple], latest: list[tuple]) -> None:
        """Finished runs in one transaction: they appear together, or not at all."""
        ins = lambda table, cols: f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"  # noqa: E731
        self.write([(ins("runs", RUN_COLUMNS), runs), (ins("tags", ("key", "value", "run_uuid")), tags),
                    (ins("params", ("key", "value", "run_uuid")), params), (ins("metrics", METRIC_COLUMNS), metrics),
                    (ins("latest_metrics", METRIC_COLUMNS), latest)])

    def create_run(self, experiment_id: str, artifact_location: str, name: str, tags: dict[str, str], start_ms: int | None = None) -> str:
        """A RUNNING run, as ``MlflowClient.create_run`` makes it."""
        run_id = new_run_id()
        tags = {**tags, "mlflow.runName": name}
        row = (run_id, name, "UNKNOWN", "", "", tags.get("mlflow.user", user()), "RUNNING", start_ms or int(time.time() * 1000), None, None,
               "", "active", f"{artifact_location}/{run_id}/artifacts", int(experiment_id))
        self.insert_runs([row], [(k, v, run_id) for k, v in tags.items()], [], [], [])
        return run_id

    def set_status(self, run_id: str, status: str, end_ms: int | None = None) -> None:
        """As ``set_terminated`` (with an end time) and ``update_run(status=...)`` (without)."""
        if end_ms is None:
            self.write([("UPDATE runs SET status = ? WHERE run_uuid = ?", (status, run_id))])
        else:
            self.write([("UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?", (status, end_ms, run_id))])

    def find_sweep(self, experiment_id: str, sweep_hash: str) -> str | None:
        r = self.rows("SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE t.key = ? AND t.value = ? "
                      "AND r.experiment_id = ? AND r.lifecycle_stage = 'active' ORDER BY r.start_time DESC LIMIT 1",
                      (SWEEP_HASH, sweep_hash, int(experiment_id)))
        return r[0][0] if r else None

    def latest_sweep(self, experiment_id: str) -> str | None:
        r = self.rows("SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE t.key = 'harness.sweep' AND t.value = 'true' "
                      "AND r.experiment_id = ? AND r.lifecycle_stage = 'active' ORDER BY r.start_time DESC LIMIT 1", (int(experiment_id),))
        return r[0][0] if r else None

    def stored_hashes(self, parent: str) -> set[str]:
        """:func:`member_key` of the finished member runs under ``parent``."""
        rows = self.rows("SELECT h.value, c.value FROM tags p JOIN tags h ON h.run_uuid = p.run_uuid JOIN runs r ON r.run_uuid = p.run_uuid "
                         "LEFT JOIN tags c ON c.run_uuid = p.run_uuid AND c.key = ? "
                         "WHERE p.key = ? AND p.value = ? AND h.key = ? AND r.status = 'FINISHED' AND r.lifecycle_stage = 'active'",
                         (CODE_HASH, PARENT_TAG, parent, CONFIG_HASH))
        return {member_key(h, c) for h, c in rows}

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """As ``MlflowClient.set_tag`` for each: a tag's value replaced."""
        self.write([("DELETE FROM tags WHERE run_uuid = ? AND key = ?", [(run_id, k) for k in tags]),
                    ("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", [(k, v, run_id) for k, v in tags.items()])])

    def members(self, experiment_id: str, parent: str) -> list[str]:
        rows = self.rows("SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE t.key = ? AND t.value = ? "
                         "AND r.experiment_id = ? AND r.lifecycle_stage = 'active'", (PARENT_TAG, parent, int(experiment_id)))
        return [r[0] for r in rows]

    def member_status(self, experiment_id: str, parent: str) -> dict[str, str]:
        """{run id: status} of the active member runs under ``parent``."""
        return dict(self.rows("SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE t.key = ? AND t.value = ? "
                              "AND r.experiment_id = ? AND r.lifecycle_stage = 'active'", (PARENT_TAG, parent, int(experiment_id))))

    def run_status(self, experiment_id: str) -> dict[str, str]:
        """{run id: status} of the experiment's active runs."""
        return dict(self.rows("SELECT run_uuid, status FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active'", (int(experiment_id),)))

    def sweep_artifacts(self, experiment_id: str) -> list[str]:
        """The artifact URIs of the experiment's active sweep parents."""
        return [u for (u,) in self.rows("SELECT r.artifact_uri FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE t.key = 'harness.sweep' "
                                        "AND t.value = 'true' AND r.experiment_id = ? AND r.lifecycle_stage = 'active'", (int(experiment_id),))]

    def run_info(self, run_id: str) -> dict:
        (name, status, start, artifacts), = self.rows("SELECT name, status, start_time, artifact_uri FROM runs WHERE run_uuid = ?", (run_id,))
        return {"name": name, "status": status, "start_time": start, "artifact_uri": artifacts,
                "tags": dict(self.rows("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))}

    def frame(self, ids: list[str]):
        """params.*, metrics.* (latest values), tags.* and run info of ``ids``, one row per run."""
        import pandas as pd

        from harness.store.runtable import object_strings  # strings as the run tables' reader gives them

        if not ids:
            return pd.DataFrame()
        return object_strings(pd.concat([self._frame(ids[i : i + 500]) for i in range(0, len(ids), 500)], ignore_index=True))

    def _frame(self, ids: list[str]):
        import pandas as pd

        marks = ", ".join(f"'{r}'" for r in ids if r.isalnum())
        extra = {"tags": f" AND key != '{NOTE}'"}  # the UI's link is not read back (100,000 runs: 23 MB of strings)
        got = {table: self.rows(f"SELECT run_uuid, {cols} FROM {table} WHERE run_uuid IN ({marks}){extra.get(table, '')}")
               for table, cols in (("params", "key, value"), ("latest_metrics", "key, value, is_nan"), ("tags", "key, value"),
                                   ("runs", "name, status, start_time, artifact_uri"))}
        out = pd.DataFrame(got["runs"], columns=["run_id", "run_name", "status", "start_time", "artifact_uri"]).set_index("run_id")
        for table, prefix in (("params", "params."), ("latest_metrics", "metrics."), ("tags", "tags.")):
            if table == "latest_metrics":
                df = pd.DataFrame(got[table], columns=["run_id", "key", "value", "is_nan"])
                df["value"] = df["value"].astype(float).replace([MAX_FLOAT, -MAX_FLOAT], [math.inf, -math.inf])
                df.loc[df["is_nan"].astype(bool), "value"] = np.nan
            else:
                df = pd.DataFrame(got[table], columns=["run_id", "key", "value"])
            if not df.empty:
                wide = df.pivot(index="run_id", columns="key", values="value")
                wide.columns = [prefix + c for c in wide.columns]
                out = out.join(wide)
        return out.reset_index()

    def metric_rows(self, ids: list[str], keys: tuple[str, ...]) -> list[tuple]:
        """(run_id, key, step, value, is_nan, timestamp) of the given runs and keys."""
        out = []
        kmarks = ", ".join(f"'{k}'" for k in keys if k.replace("_", "").isalnum())
        for i in range(0, len(ids), 500):
            marks = ", ".join(f"'{r}'" for r in ids[i : i + 500] if r.isalnum())
            out += self.rows(f"SELECT run_uuid, key, step, value, is_nan, timestamp FROM metrics WHERE run_uuid IN ({marks}) AND key IN ({kmarks})")
        return out
