"""Reading runs back: a sweep's (or a filter's) finished runs as one table, their curves and trajectories,
for the sweep summary and the report. A sqlite store at the pinned schema is read with sqlite3 alone;
other stores, and MLflow filter strings, go through MLflow's client."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.store.curves import CURVES, CURVES_TAG, load_curves, read_curves_file
from harness.store.filters import filter_mask
from harness.store.location import check_reachable, local_artifact_dir, sqlite_file
from harness.store.runtable import FOLDER as RUN_TABLES
from harness.store.runtable import object_strings, read_run_tables
from harness.store.tables import MAX_FLOAT, PARENT_TAG, Tables, unclip
from optimizers.errors import ConfigError


class StoreError(Exception):
    """Runs cannot be read; the message says why and what to do (one line)."""


@dataclass
class RunSet:
    """Finished runs read back from a store: one row per run (``params.*``, ``metrics.*``, ``tags.*``)."""

    uri: str
    experiment: str
    runs: object  # pandas DataFrame
    parents: dict[str, dict]  # parent run id -> {"name", "status", "start_time", "tags"} of the sweeps involved
    sweep: str | None = None  # the sweep's parent run id when one sweep was read
    filter: str | None = None
    unfinished: int = 0  # member runs present but not FINISHED
    tables: Tables | None = None
    curve_cache: dict = field(default_factory=dict)  # run id -> its curves (run_curves), or None
    downloads: dict = field(default_factory=dict)  # artifact URI of a remote curves file -> its local copy
    _client: object = None
    _artifact_uris: dict | None = None
    _curve_uris: dict | None = None
    _tmp: object = None

    def artifact_uri(self, run_id: str) -> str | None:
        if self._artifact_uris is None:
            self._artifact_uris = dict(zip(self.runs["run_id"], self.runs["artifact_uri"])) if "artifact_uri" in self.runs else {}
        return self._artifact_uris.get(run_id) or self.parents.get(run_id, {}).get("artifact_uri")

    def curves_uri(self, run_id: str) -> str | None:
        """The artifact URI of the file holding the run's curves (its tag ``harness.curves``), or None for
        runs stored before the batch files."""
        if self._curve_uris is None:
            col = f"tags.{CURVES_TAG}"
            self._curve_uris = {r: u for r, u in zip(self.runs["run_id"], self.runs[col]) if isinstance(u, str)} if col in self.runs else {}
        return self._curve_uris.get(run_id)

    def attach(self, run_id: str, folder: Path, path: str) -> None:
        """Store the files of ``folder`` as artifacts of ``run_id`` under ``path`` (copied straight into a
        local artifact store, else through MLflow's client)."""
        import shutil

        local = local_artifact_dir(self.artifact_uri(run_id))
        if local is not None:
            shutil.copytree(folder, local / path, dirs_exist_ok=True)
        else:
            self.client.log_artifacts(run_id, str(folder), path)

    @property
    def client(self):
        """An MlflowClient, made when first needed (importing MLflow costs ~1.5 s)."""
        if self._client is None:
            self._client = open_client(self.uri)
        return self._client


def open_client(uri: str):
    """An MlflowClient for ``uri`` that fails fast and creates nothing: a missing sqlite file is an
    error (MLflow would create an empty store), and a server must answer /health within 5 s."""
    import logging

    _check_exists(uri)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _check_exists(uri: str) -> None:
    path = sqlite_file(uri)
    if uri.startswith("sqlite:///"):
        if path is None or not path.is_file():
            raise StoreError(f"--uri {uri}: no such store (file {path} does not exist); allowed: an existing sqlite file, a server URI or a database URI")
    else:
        try:
            check_reachable(uri)
        except ConfigError as e:
            raise StoreError(str(e)) from None


def _sql_tables(client) -> Tables | None:
    """MLflow's tables behind a client of a SQL store (None for a server)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    if not isinstance(store, SqlAlchemyStore):
        return None
    return Tables.of_engine(store.engine)


DRAWING_ONLY = ("artifact_uri", "run_name", "tags.mlflow.runName", "tags.mlflow.user", "tags.mlflow.source.name", "tags.harness.curves")
"""Columns that only the report's figures and links read (the analysis never does), ~300 bytes a run."""

NOT_ANALYSED = (*DRAWING_ONLY, "tags.harness.config_hash", "tags.mlflow.parentRunId", "tags.problem", "tags.optimizer", "metrics.loss",
                "metrics.grad_norm", "metrics.suboptimality", "metrics.batch_wall_time_s", "metrics.batch_time_per_step_s")
"""Columns :func:`harness.analysis.analyse` never reads (the UI's copies of params and of the final values, the
batch's clock, the configuration hash that resuming uses): a one-off reader of one sweep, such as its closing
summary, leaves them unread, ~440 bytes a run."""


def read_runs(uri: str, experiment: str, sweep: str | None = None, filter_string: str | None = None, skip: tuple[str, ...] = ()) -> RunSet:
    """The finished runs of one sweep (``sweep``: its parent run id; default: the latest sweep),
    or of every run matching an MLflow filter string (sweep members and single runs alike); without
    the columns in ``skip`` (e.g. :data:`DRAWING_ONLY`)."""
    _check_exists(uri)
    path = sqlite_file(uri)
    tables = Tables.open_sqlite(path) if path is not None and not filter_string else None
    client = None
    if tables is None:
        client = open_client(uri)
        tables = _sql_tables(client)
    if client is None:
        found = tables.experiment(experiment)
        exp_id = found[0] if found else None
    else:
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else None
    if exp_id is None:
        raise StoreError(f"no experiment '{experiment}' in {uri}: run a sweep first (python -m harness ... -m lr=...)")
    if not filter_string and not sweep:
        if client is None:
            sweep = tables.latest_sweep(exp_id)
        else:
            latest = client.search_runs([exp_id], "tags.`harness.sweep` = 'true'", order_by=["attributes.start_time DESC"], max_results=1)
            sweep = latest[0].info.run_id if latest else None
        if not sweep:
            raise StoreError(f"no sweep in experiment '{experiment}' of {uri}: run one with -m, or pass --filter")
    elif sweep and not _is_sweep(client, tables, exp_id, sweep):
        raise StoreError(f"no sweep {sweep} in experiment '{experiment}' of {uri}; allowed: the id of a sweep's parent run "
                         "(the sweep's summary prints it), or no --sweep for the latest sweep")
    flt = filter_string or f"tags.`{PARENT_TAG}` = '{sweep}'"
    df = _search(client, tables, exp_id, flt, sweep if not filter_string else None, skip)
    df = object_strings(df.drop(columns=[c for c in skip if c in df]))
    if filter_string and not df.empty and "tags.harness.sweep" in df:
        df = df[df["tags.harness.sweep"] != "true"]
    unfinished = int((df["status"] != "FINISHED").sum()) if not df.empty else 0
    if unfinished:  # a selection copies every column: only when there is something to leave out
        df = df[df["status"] == "FINISHED"].reset_index(drop=True)
    parent_ids = set(df[f"tags.{PARENT_TAG}"].dropna()) if f"tags.{PARENT_TAG}" in df else set()
    if sweep:
        parent_ids.add(sweep)
    parents = {}
    for pid in sorted(parent_ids):
        if tables is not None:
            parents[pid] = tables.run_info(pid)
        else:
            r = client.get_run(pid)
            parents[pid] = {"name": r.info.run_name, "status": r.info.status, "start_time": r.info.start_time,
                            "artifact_uri": r.info.artifact_uri, "tags": dict(r.data.tags)}
    if df.empty:
        where = f"sweep {sweep}" if sweep else f"filter {filter_string!r}"
        raise StoreError(f"no finished runs for {where} in experiment '{experiment}' of {uri}")
    return RunSet(uri, experiment, df, parents, sweep, filter_string, unfinished, tables, _client=client)


def _sweep_frame(tables: Tables, experiment_id: str, sweep: str, skip: tuple[str, ...] = ()):
    """A sweep's runs: ids, status and lifecycle from MLflow's tables, the columns from the sweep's run
    tables (:mod:`harness.store.runtable`) where they hold the run, else from MLflow's tables."""
    return _frame_of(tables, tables.member_status(experiment_id, sweep), [tables.run_info(sweep)["artifact_uri"]], skip)


def _experiment_frame(tables: Tables, experiment_id: str):
    """Every active run of the experiment (sweeps' members, their parents, single runs), as
    :func:`_sweep_frame` reads a sweep's."""
    return _frame_of(tables, tables.run_status(experiment_id), tables.sweep_artifacts(experiment_id))


def _frame_of(tables: Tables, status: dict[str, str], parent_artifacts: list[str], skip: tuple[str, ...] = ()):
    import pandas as pd

    folders = [f / RUN_TABLES for f in map(local_artifact_dir, parent_artifacts) if f is not None]
    df, rest = read_run_tables(folders, list(status), skip)
    parts = [] if df is None else [df]
    if rest or not parts:
        parts.append(tables.frame(rest).drop(columns="status", errors="ignore"))
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    if out.empty:
        return out
    # by hand: Series.map would first build an index of the dict's keys (at a million runs, ~150 MB)
    out.insert(2, "status", pd.Series(np.array([status.get(r) for r in out["run_id"]], dtype=object), index=out.index, dtype=object))
    return out


def _is_sweep(client, tables: Tables | None, experiment_id: str, run_id: str) -> bool:
    """Whether ``run_id`` is a run of the experiment (a sweep's parent run)."""
    if tables is not None:
        return bool(tables.rows("SELECT 1 FROM runs WHERE run_uuid = ? AND experiment_id = ?", (run_id, int(experiment_id))))
    try:
        return client.get_run(run_id).info.experiment_id == experiment_id
    except Exception:  # noqa: BLE001 - MLflow's "Run ... not found", or a malformed id
        return False


def _search(client, tables: Tables | None, experiment_id: str, flt: str, sweep: str | None, skip: tuple[str, ...] = ()):
    """All runs matching ``flt`` as a DataFrame (params.*, metrics.*, tags.* columns).

    For SQL stores the params, latest metrics and tags are read in three queries (building MLflow's
    entity objects for 1,000 runs costs seconds); MLflow's search selects the runs of other filters."""
    import pandas as pd

    if tables is not None:
        if sweep is not None:
            return _sweep_frame(tables, experiment_id, sweep, skip)
        df = _experiment_frame(tables, experiment_id)
        mask = filter_mask(df, flt) if not df.empty else None
        if mask is not None:  # evaluated on the runs' table: MLflow's search builds an object per run
            return df[mask].reset_index(drop=True)
        return tables.frame([r.info.run_id for r in all_pages(client, experiment_id, flt)])
    rows = []
    for r in all_pages(client, experiment_id, flt):
        row = {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status, "start_time": r.info.start_time, "artifact_uri": r.info.artifact_uri}
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row.update({f"metrics.{k}": unclip(v) for k, v in r.data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def all_pages(client, experiment_id: str, flt: str):
    token = None
    while True:
        page = client.search_runs([experiment_id], flt, max_results=5000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _artifact(rs: RunSet, run_id: str, name: str) -> Path | bytes | None:
    """A run's artifact file: its local path, or its bytes downloaded from a remote store, or None."""
    local = local_artifact_dir(rs.artifact_uri(run_id))
    if local is not None:
        return local / name if (local / name).is_file() else None
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            return Path(rs.client.download_artifacts(run_id, name, tmp)).read_bytes()
    except Exception:  # noqa: BLE001 - a missing artifact: the caller falls back
        return None


def _curves_file(rs: RunSet, uri: str) -> Path | None:
    """The local path of a curves file named by its artifact URI (downloaded once per RunSet from a
    remote store), or None when it is missing."""
    local = local_artifact_dir(uri)
    if local is not None:
        return local if local.is_file() else None
    if uri not in rs.downloads:
        import tempfile

        from mlflow.artifacts import download_artifacts

        if rs._tmp is None:
            rs._tmp = tempfile.TemporaryDirectory(prefix="harness-curves-")
        try:
            rs.downloads[uri] = Path(download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp(dir=rs._tmp.name), tracking_uri=rs.uri))
        except Exception:  # noqa: BLE001 - a missing file: the runs fall back to their metric rows
            rs.downloads[uri] = None
    return rs.downloads[uri]


def curves_of(rs: RunSet, run_ids: list[str]) -> dict[str, dict[str, np.ndarray] | None]:
    """Every step of the curves of ``run_ids``, as :func:`run_curves` returns them, cached in ``rs``:
    each batch file is read once for all the runs asked for in one call (only the row groups holding
    them); runs stored before the batch files are read from their curves.npz."""
    todo = [rid for rid in dict.fromkeys(run_ids) if rid not in rs.curve_cache]
    by_file: dict[str, set[str]] = {}
    for rid in todo:
        uri = rs.curves_uri(rid)
        if uri:
            by_file.setdefault(uri, set()).add(rid)
        else:
            found = _artifact(rs, rid, CURVES)
            rs.curve_cache[rid] = None if found is None else load_curves(found)
    for uri, ids in by_file.items():
        path = _curves_file(rs, uri)
        found = read_curves_file(path, ids) if path is not None else {}
        for rid in ids:
            rs.curve_cache[rid] = found.get(rid)
    return {rid: rs.curve_cache[rid] for rid in run_ids}


def run_curves(rs: RunSet, run_id: str) -> dict[str, np.ndarray] | None:
    """A run's curves at every step as arrays (cached): ``loss``, ``grad_norm`` and, where f* is known,
    ``suboptimality`` (float64, the last step exactly as the ``final_*`` metrics), ``time`` and, for 1-D
    and 2-D problems, ``x`` at ``sampled_step`` (``x_final``: the last point), each sparse curve (held-out
    metrics, instruments) with its own steps ``<key>.step`` (one ``eval_step`` for all in a curves.npz),
    ``grad_evals`` (cumulative) where an update may take several, ``epoch`` on data
    problems; from the run's batch file, else its curves.npz; None for runs stored with neither."""
    return curves_of(rs, [run_id])[run_id]


def read_curves(rs: RunSet, run_ids: list[str], keys: tuple[str, ...]):
    """Curve points (run_id, key, step, value, t) of the given runs at every step, from their batch
    files (or curves.npz); ``t`` is seconds since the run's first step. Runs stored with neither give
    their metric rows."""
    import pandas as pd

    cols = ["run_id", "key", "step", "value", "t"]
    parts: dict[str, list] = {c: [] for c in cols}  # one DataFrame at the end: thousands of runs, not thousands of frames
    missing = []
    for rid, c in curves_of(rs, run_ids).items():
        if c is None:
            missing.append(rid)
            continue
        for k in keys:
            got = _curve(c, k)
            if got is None:
                continue
            steps, vals = got
            t = np.interp(steps, c["sampled_step"], c["time"].astype(np.float64)) - float(c["time"][0])
            for col, v in zip(cols, (np.full(len(steps), rid, dtype=object), np.full(len(steps), k, dtype=object), steps, vals, t)):
                parts[col].append(v)
    frames = [pd.DataFrame({c: np.concatenate(v) for c, v in parts.items()})] if parts["step"] else []
    if missing:
        frames.append(_metric_rows(rs, missing, keys))
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols] if len(frames) > 1 else frames[0]


def _curve(c: dict, k: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of curve ``k`` of one run's arrays, or None where it has none."""
    if k in ("loss", "grad_norm", "suboptimality", "epoch"):
        steps = np.arange(len(c["loss"]))
        if k in c:
            return steps, c[k].astype(np.float64)
        if k == "epoch" and "epoch_per_step" in c:  # curves.npz kept the factor
            return steps, steps * float(c["epoch_per_step"])
        return None
    if k in c and f"{k}.step" in c:  # the batch files: each sparse curve with its own steps
        return c[f"{k}.step"].astype(np.int64), np.asarray(c[k], dtype=np.float64)
    if k in c and "eval_step" in c:  # curves.npz of runs stored before the batch files
        return c["eval_step"].astype(np.int64), np.asarray(c[k], dtype=np.float64)
    return None


def _metric_rows(rs: RunSet, run_ids: list[str], keys: tuple[str, ...]):
    """Curves as logged metric rows (the sampled points), for runs stored without a curves file."""
    import pandas as pd

    cols = ["run_id", "key", "step", "value", "is_nan", "timestamp"]
    tables = rs.tables or _sql_tables(rs.client)
    if tables is not None:
        df = pd.DataFrame(tables.metric_rows(run_ids, keys), columns=cols)
    else:
        df = pd.DataFrame([(r, k, h.step, h.value, False, h.timestamp) for r in run_ids for k in keys
                           for h in rs.client.get_metric_history(r, k)], columns=cols)
    df["value"] = df["value"].astype(float).replace([MAX_FLOAT, -MAX_FLOAT], [math.inf, -math.inf])
    df.loc[df["is_nan"].astype(bool), "value"] = np.nan
    df = df.sort_values(["run_id", "key", "step"])
    df["t"] = (df["timestamp"] - df.groupby("run_id")["timestamp"].transform("min")) / 1000.0
    return df[["run_id", "key", "step", "value", "t"]]


def read_trajectory(rs: RunSet, run_id: str):
    """The run's points (step, x1[, x2], loss) at its curves' sampled steps (or its trajectory.csv, as runs
    stored before curves.npz have it), or None."""
    import io

    import pandas as pd

    c = run_curves(rs, run_id)
    if c is not None:
        if "x" not in c:
            return None
        steps = c["sampled_step"].astype(np.int64)
        out = pd.DataFrame({"step": steps})
        for j in range(c["x"].shape[1]):
            out[f"x{j + 1}"] = c["x"][:, j].astype(np.float64)
        out["loss"] = c["loss"][steps]
        return out
    found = _artifact(rs, run_id, "trajectory.csv")
    if found is None:
        return None
    return pd.read_csv(found if isinstance(found, Path) else io.BytesIO(found))


__all__ = ["RunSet", "StoreError", "curves_of", "open_client", "read_runs", "read_curves", "read_trajectory", "run_curves"]
