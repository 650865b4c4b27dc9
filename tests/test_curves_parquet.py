"""Every step of every run's curves in one Parquet file per batch (harness/store/curves.py): read with
MLflow and pandas alone, as the README shows, they equal what the harness reads; they carry the
documented precision; runs stored in the older formats (curves.npz, trajectory.csv, metric rows) still
read back through the harness."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from harness.store import (
    read_curves,
    read_curves_file,
    read_runs,
    read_trajectory,
    round_significand,
    run_curves,
    sample_steps,
    ui_steps,
)
from tests.conftest import ROOT, cli_here, make_cfg, members, parquet_curves
from tests.legacy_curves import curves_artifact

# 1,200 steps: time and x at 501 sampled steps; lr=0.003, seed=0 diverges at step 3
SWEEP = ["optimizer=gd", "problem=rosenbrock", "steps=1200", "-m", "lr=0.0001,0.001,0.003", "seed=0,1"]
EXACT = 2.0**-24  # relative error of float32's 24-bit significand (round to nearest)


def readme_snippet() -> str:
    """The README's pandas snippet (Where results go)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Read a run's curves\s+with MLflow and pandas alone.*?```python\n(.*?)```", text, re.S)
    assert block, "README: the pandas snippet under 'Where results go' is missing"
    return textwrap.dedent(block.group(1))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    p = cli_here([f"tracking.uri={uri}", *SWEEP], cwd=d)
    assert p.returncode == 0, p.stderr
    return uri, d


def test_pandas_alone_reads_every_step_that_the_harness_reads(sweep, tmp_path):
    """The README's three lines, run where the harness cannot be imported, give every run's rows; they
    equal harness.store.run_curves and end exactly at the run's final metrics."""
    uri, _ = sweep
    rs = read_runs(uri, "harness")
    ids = rs.runs["run_id"].tolist()
    assert len(ids) == 6
    snippet = readme_snippet()
    assert len(snippet.strip().splitlines()) == 3
    script = ("import sys\nsys.modules['harness'] = None  # no harness code\n"
              f"for RUN_ID in {ids!r}:\n    STORE = {uri!r}\n"
              + "".join(f"    {line}\n" for line in snippet.strip().splitlines())
              + f"    curves.to_pickle({str(tmp_path)!r} + '/' + RUN_ID + '.pkl')\n")
    p = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for i, rid in enumerate(ids):
        df = pd.read_pickle(tmp_path / f"{rid}.pkl")
        c = run_curves(rs, rid)
        n = len(c["loss"])
        row = rs.runs.iloc[i]
        assert list(df.columns) == ["run_id", "step", "loss", "grad_norm", "suboptimality", "time", "x0", "x1"]
        assert (df["run_id"] == rid).all() and df["step"].tolist() == list(range(n)) == list(range(int(row["metrics.steps"]) + 1))
        for k in ("loss", "grad_norm", "suboptimality"):
            np.testing.assert_array_equal(df[k].to_numpy(), c[k])
        at = df["time"].notna().to_numpy()
        assert df.loc[at, "step"].tolist() == c["sampled_step"].tolist() == sample_steps(n).tolist()
        assert df["x0"].notna().tolist() == df["x1"].notna().tolist() == at.tolist()  # null between sampled steps
        np.testing.assert_array_equal(df.loc[at, ["x0", "x1"]].to_numpy(), c["x"])
        np.testing.assert_array_equal(df.loc[at, "time"].to_numpy(), c["time"])
        last = df.iloc[-1]
        for k in ("loss", "grad_norm", "suboptimality"):  # exactly the final metrics (inf and NaN for diverged runs)
            assert last[k] == row[f"metrics.final_{k}"] or np.isnan(last[k]) and np.isnan(row[f"metrics.final_{k}"]), k
        np.testing.assert_array_equal(last[["x0", "x1"]].to_numpy(float), c["x_final"])
    assert set(rs.runs["tags.stop_reason"]) == {"max_steps", "diverged"}  # both kinds of run were read


def test_a_batch_shares_one_file_that_each_run_names(sweep):
    """Member runs hold no file of their own (no run directory at all); the parent holds one zstd Parquet file for the batch, its
    floats byte-stream-split, its run ids dictionary-encoded; every run's tag is that file."""
    uri, _ = sweep
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("harness").experiment_id
    (parent,) = c.search_runs([exp], "tags.`harness.sweep` = 'true'")
    kids = c.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(kids) == 6 and not any(c.list_artifacts(r.info.run_id) for r in kids)
    (batch,) = c.list_artifacts(parent.info.run_id, "curves")
    path = f"{parent.info.artifact_uri}/{batch.path}"
    assert batch.path.endswith(".parquet") and {r.data.tags["harness.curves"] for r in kids} == {path}
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == sum(int(r.data.metrics["steps"]) + 1 for r in kids)
    for g in range(meta.num_row_groups):
        for j in range(meta.num_columns):
            col = meta.row_group(g).column(j)
            assert col.compression == "ZSTD"
            if col.physical_type == "DOUBLE":
                assert "BYTE_STREAM_SPLIT" in col.encodings, col.path_in_schema
            if col.path_in_schema == "run_id":
                assert "RLE_DICTIONARY" in col.encodings
    assert set(pd.read_parquet(path)["run_id"]) == {r.info.run_id for r in kids}  # the whole batch, with pandas


def test_a_run_without_a_parent_keeps_its_own_file(tmp_path, store):
    p = cli_here(["problem=himmelblau", "optimizer=gd", "steps=30", f"tracking.uri={store}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    c = MlflowClient(store)
    (run,) = c.search_runs([c.get_experiment_by_name("harness").experiment_id])
    assert {a.path for a in c.list_artifacts(run.info.run_id)} == {"config.yaml", "curves.parquet"}
    assert run.data.tags["harness.curves"] == f"{run.info.artifact_uri}/curves.parquet"
    df = parquet_curves(store, run.info.run_id)
    assert df["step"].tolist() == list(range(31)) and df["loss"].iloc[-1] == run.data.metrics["final_loss"]


def _records(*overrides: str):
    """A batch run in process, as the job makes its runs: (the batch's result, its RunRecords)."""
    from harness.job import record, results, run_batch
    from harness.plan import plan

    (batch,), _ = plan(make_cfg(*overrides))
    res = run_batch(batch)
    return res, [record(m, batch.problem.f_star) for m in results(batch, res, ["lr", "seed"])]


def test_every_step_carries_the_documented_precision(tmp_path, monkeypatch):
    """loss, grad_norm, suboptimality, time and x within 2**-24 of what was computed (float32's
    significand), the last step exact; held-out metrics exact; files read back by row group."""
    from harness.store import curves as curves_module
    from harness.store.curves import write_curves

    res, recs = _records("problem=rosenbrock", "optimizer=momentum", "steps=1500", members({"lr": 1e-4, "seed": 0}, {"lr": 5e-4, "seed": 1}, {"lr": 1e-3, "seed": 2}))
    monkeypatch.setattr(curves_module, "ROW_GROUP_ROWS", 3000)  # two runs per row group
    ids = [f"run{i}" for i in range(len(recs))]
    write_curves(tmp_path / "b.parquet", recs, ids)
    assert pq.ParquetFile(tmp_path / "b.parquet").metadata.num_row_groups == 2
    df = pd.read_parquet(tmp_path / "b.parquet")
    for i, rid in enumerate(ids):
        d = df[df["run_id"] == rid]
        n = len(d)
        want = {"loss": res.loss[:n, i], "grad_norm": res.grad_norm[:n, i], "suboptimality": np.maximum(res.loss[:n, i], 0.0)}
        for k, v in want.items():
            got = d[k].to_numpy()
            assert np.all(np.abs(got - v) <= EXACT * np.abs(v)), k
            assert got[-1] == v[-1]
            assert not np.array_equal(got[:-1], v[:-1])  # rounded as documented, not stored whole
        idx = sample_steps(n)
        x = d[["x0", "x1"]].to_numpy()[idx]
        assert np.all(np.abs(x - res.trajectory[idx, i]) <= EXACT * np.abs(res.trajectory[idx, i]))
        np.testing.assert_array_equal(x[-1], res.trajectory[n - 1, i])
        t = d["time"].to_numpy()[idx]
        assert np.all(np.abs(t - res.elapsed[idx]) <= EXACT * res.elapsed[idx]) and t[-1] == res.elapsed[n - 1]
    one = read_curves_file(tmp_path / "b.parquet", {"run2"})  # a run of the second row group
    assert set(one) == {"run2"} and np.array_equal(one["run2"]["loss"], read_curves_file(tmp_path / "b.parquet")["run2"]["loss"])

    _, recs = _records("problem=logistic_regression", "optimizer=gd", "steps=40", "problem.eval_every=10", members({"lr": 0.1, "seed": 0}))
    write_curves(tmp_path / "d.parquet", recs, ["r"])
    d = pd.read_parquet(tmp_path / "d.parquet")
    (steps, vals) = recs[0].sparse["val_loss"]
    assert d.dropna(subset=["val_loss"])["step"].tolist() == steps.tolist() == [0, 10, 20, 30, 40]
    np.testing.assert_array_equal(d.dropna(subset=["val_loss"])["val_loss"], vals)  # held-out metrics exactly
    np.testing.assert_array_equal(d["epoch"], recs[0].curves["epoch"])


def test_rounding_keeps_float64s_range():
    """Where float32 would flush f - f* to 0 or overflow, the stored value keeps its relative precision."""
    v = np.array([1e-300 * (1 + 2.0**-20), 3e-45, 1e300, np.finfo(np.float64).max, np.inf, -np.inf, np.nan, 0.0, -2.5])
    r = round_significand(v)
    finite = np.isfinite(v)
    assert np.all(np.abs(r[finite] - v[finite]) <= EXACT * np.abs(v[finite])) and np.all(r[finite & (v != 0)] != 0)
    assert r[3] == v[3] and np.isinf(r[4]) and r[5] == -np.inf and np.isnan(r[6])  # nothing rounds to inf
    assert np.float32(v[0]) == 0 and abs(float(np.float32(v[1])) / v[1] - 1) > 0.01  # what float32 would have kept


def _old_format(rs, rid: str, artifacts: Path, db: Path) -> dict:
    """Turn run ``rid`` into a run stored before the batch files: its curves in curves.npz, written by
    the old writer, and no harness.curves tag."""
    c = run_curves(rs, rid)
    n = len(c["loss"])
    elapsed = np.interp(np.arange(n), c["sampled_step"], c["time"])
    traj = np.zeros((n, 2))
    traj[c["sampled_step"]] = c["x"]
    (artifacts / "curves.npz").write_bytes(curves_artifact(c["loss"], c["grad_norm"], elapsed, traj, None, None, 0.0, None))
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM tags WHERE run_uuid = ? AND key = 'harness.curves'", (rid,))
    conn.close()
    return c


def test_runs_stored_in_the_old_formats_still_read(sweep, tmp_path):
    """One run with curves.npz (the old writer's file), one with neither file (older still: metric
    rows, and trajectory.csv), one in the batch file: read together through the harness."""
    import shutil

    uri, d = sweep
    db = tmp_path / "mlflow.db"
    shutil.copyfile(d / "mlflow.db", db)  # a copy: the other tests keep the sweep as written
    rs = read_runs(f"sqlite:///{db}", "harness")
    done = rs.runs[rs.runs["tags.stop_reason"] == "max_steps"]
    old, older, new = done["run_id"].tolist()[:3]
    (parent,) = rs.parents
    kept = tmp_path / "parent"  # the parent's artifacts, with run tables that know nothing of the two (older runs had none)
    shutil.copytree(rs.parents[parent]["artifact_uri"], kept)
    for f in (kept / "runs").glob("*.parquet"):
        t = pd.read_parquet(f)
        t[~t["run_id"].isin([old, older])].to_parquet(f)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (str(kept), parent))
    conn.close()
    art = {rid: tmp_path / rid for rid in (old, older)}
    for rid, path in art.items():  # their own artifact folders, so that the sweep's stay untouched
        path.mkdir()  # (a member run of today has no files of its own)
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (str(path), rid))
        conn.close()
    want = _old_format(rs, old, art[old], db)
    traj = read_trajectory(rs, older)
    traj.to_csv(art[older] / "trajectory.csv", index=False)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM tags WHERE run_uuid = ? AND key = 'harness.curves'", (older,))
    conn.close()

    rs = read_runs(f"sqlite:///{db}", "harness")  # afresh: nothing cached
    assert rs.curves_uri(old) is None and rs.curves_uri(older) is None and rs.curves_uri(new)
    got = run_curves(rs, old)
    assert "f_star" in got  # read from curves.npz (the batch file has no such key)
    n = len(want["loss"])
    for k in ("loss", "grad_norm", "suboptimality"):
        np.testing.assert_array_equal(got[k], want[k])  # the batch file's values fit float32 exactly
    np.testing.assert_array_equal(got["x"], want["x"].astype(np.float32))
    pts = read_curves(rs, [old, older, new], ("suboptimality",))
    steps = {rid: g["step"].tolist() for rid, g in pts.groupby("run_id")}
    assert steps[old] == steps[new] == list(range(n))  # every step, from curves.npz and from the batch file
    assert steps[older] == ui_steps(n).tolist()  # the metric rows
    pd.testing.assert_frame_equal(read_trajectory(rs, older), traj)  # from trajectory.csv
    np.testing.assert_array_equal(read_trajectory(rs, old)[["x1", "x2"]].to_numpy(), want["x"].astype(np.float32))


def test_through_an_mlflow_server_the_harness_downloads_each_batch_file_once(tmp_path, monkeypatch):
    """Runs logged through a server (artifacts via its proxy, mlflow-artifacts: URIs) read back through
    the harness equal what pandas reads."""
    import mlflow.artifacts

    from tests.servers import mlflow_server

    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path) as base:
        p = cli_here([f"tracking.uri={base}", "problem=himmelblau", "optimizer=gd", "steps=300", "-m", "lr=0.001,0.01", "seed=0,1"], cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        rs = read_runs(base, "harness")
        ids = rs.runs["run_id"].tolist()
        assert len(ids) == 4 and all(rs.curves_uri(r).startswith("mlflow-artifacts:") for r in ids)
        calls = []
        real = mlflow.artifacts.download_artifacts
        monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda *a, **k: calls.append(k) or real(*a, **k))
        got = {rid: run_curves(rs, rid) for rid in ids}
        assert len(calls) == 1  # one file for the batch, fetched once
        for rid in ids:
            df = parquet_curves(base, rid)
            np.testing.assert_array_equal(df["loss"], got[rid]["loss"])
            np.testing.assert_array_equal(df.dropna(subset=["x0"])[["x0", "x1"]].to_numpy(), got[rid]["x"])
        assert rs.runs["tags.harness.curves"].nunique() == 1


def test_a_batch_bigger_than_a_transaction_writes_a_file_per_transaction(tmp_path, monkeypatch):
    """Runs are written CHUNK at a time (500): each chunk's curves file is complete before its runs exist."""
    from harness.store import Tracker, writer

    monkeypatch.setattr(writer, "CHUNK", 2)
    monkeypatch.chdir(tmp_path)
    _, recs = _records("problem=himmelblau", "optimizer=gd", "steps=50", members(*[{"lr": 0.001, "seed": s} for s in range(5)]))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    t = Tracker(uri, "harness")
    parent = t.start_parent("sweep", {"harness.sweep": "true"})
    ids = t.log_runs(iter(recs), parent)
    t.close()  # the chunks are stored
    t.end(parent)
    c = MlflowClient(uri)
    files = [f"{c.get_run(parent).info.artifact_uri}/{a.path}" for a in c.list_artifacts(parent, "curves")]
    assert sorted(pd.read_parquet(f)["run_id"].nunique() for f in files) == [1, 2, 2]
    for rid, r in zip(ids, recs):
        tag = c.get_run(rid).data.tags["harness.curves"]
        assert tag in files
        own = pd.read_parquet(tag, filters=[("run_id", "==", rid)])
        assert len(own) == 51 and own["loss"].iloc[-1] == r.summary["final_loss"]


def test_the_sweep_reads_back_from_its_run_tables_as_from_mlflow(sweep, tmp_path):
    """The sweep's run tables (runs/*.parquet among the parent's artifacts, pandas alone) hold what
    MLflow's client returns for each run: params, latest metrics (a diverged run's inf and NaN as they
    are) and tags; the reader takes its columns from them, and from MLflow's tables for a run they miss."""
    import shutil

    from harness.store.reader import _sweep_frame
    from harness.store.tables import Tables

    uri, d = sweep
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("harness").experiment_id
    (parent,) = c.search_runs([exp], "tags.`harness.sweep` = 'true'")
    (table,) = Path(parent.info.artifact_uri, "runs").glob("*.parquet")
    df = pd.read_parquet(table).set_index("run_id")
    kids = c.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(df) == len(kids) == 6
    for r in kids:
        row = df.loc[r.info.run_id]
        assert {k: row[f"params.{k}"] for k in r.data.params} == r.data.params
        assert {k: row[f"tags.{k}"] for k in r.data.tags} == r.data.tags
        for k, v in r.data.metrics.items():
            mine = row[f"metrics.{k}"]
            assert mine == v or (np.isnan(mine) and v == 0.0) or (np.isinf(mine) and abs(v) == 1.7976931348623157e308), k
    assert set(df["tags.stop_reason"]) == {"max_steps", "diverged"}
    db = Path(d) / "mlflow.db"
    tables = Tables.open_sqlite(db)
    ids = tables.members(exp, parent.info.run_id)
    mlflow_side = tables.frame(ids).set_index("run_id").sort_index()
    frame = tables.frame
    tables.frame = lambda ids: frame(ids) if not ids else pytest.fail(f"read {len(ids)} runs from MLflow's tables")
    ours = _sweep_frame(tables, exp, parent.info.run_id).set_index("run_id").sort_index()[mlflow_side.columns]
    tables.frame = frame  # every run came from the run table
    pd.testing.assert_frame_equal(ours, mlflow_side, check_dtype=False)
    moved = tmp_path / "aside.parquet"
    shutil.move(table, moved)
    try:  # without the file: the same frame, from MLflow's tables
        again = _sweep_frame(tables, exp, parent.info.run_id).set_index("run_id").sort_index()[mlflow_side.columns]
        pd.testing.assert_frame_equal(again, mlflow_side, check_dtype=False)
    finally:
        shutil.move(moved, table)


@pytest.mark.parametrize("flt", ["params.lr = '0.001'", "metrics.final_loss < 1 and tags.stop_reason != 'diverged'",
                                 "attributes.run_name LIKE 'gd-rosenbrock-lr=0.00%'", "params.seed ILIKE '1'",
                                 "tags.stop_reason = 'diverged'", "metrics.nothing_logged > 0", "attributes.end_time > 0"])
def test_a_filter_selects_the_runs_that_mlflow_search_selects(sweep, flt):
    """--filter is evaluated on the runs' table (harness/store/filters.py), with MLflow's own search
    where it cannot be (attributes.end_time): the same runs either way."""
    uri, _ = sweep
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("harness").experiment_id
    want = {r.info.run_id for r in c.search_runs([exp], flt) if r.data.tags.get("harness.sweep") != "true"}
    try:
        got = set(read_runs(uri, "harness", filter_string=flt).runs["run_id"])
    except Exception as e:  # noqa: BLE001 - no run matches: the reader says so
        assert not want and "no finished runs" in str(e)
        return
    assert got == want and (got or flt.startswith("metrics.nothing"))


def test_run_tables_read_file_by_file_into_the_columns_a_reader_expects(tmp_path):
    """read_run_tables over files of different columns: a column a file lacks is null in its rows (numbers
    NaN, strings NaN in an object column), a run stored twice comes once (from the first file), runs not
    asked for and skipped columns stay out, runs no file holds are named, ids are the caller's strings, strings are numpy objects (not pandas 3's Arrow strings) and
    start_time stays int64."""
    from harness.store.runtable import read_run_tables, write_run_table

    folder = tmp_path / "runs"
    folder.mkdir()
    base = lambda rid, t: {"run_id": rid, "run_name": f"name-{rid}", "start_time": t}  # noqa: E731
    write_run_table(folder / "a.parquet", [{**base("r1", 10), "params.lr": "0.1", "metrics.final_loss": 1.5, "tags.note": "x"},
                                           {**base("r2", 11), "params.lr": "0.2", "metrics.final_loss": float("inf"), "tags.note": None}])
    write_run_table(folder / "b.parquet", [{**base("r3", 12), "params.lr": "0.3", "params.optimizer.betas": "[0.9, 0.999]"},
                                           {**base("r1", 99), "params.lr": "stale", "metrics.final_loss": 0.0},
                                           {**base("other", 13), "params.lr": "0.4"}])
    write_run_table(folder / "c.parquet", [{**base("nobody", 14), "params.lr": "0.5"}])
    ids = ["r1", "r2", "lost", "r3"]
    df, missing = read_run_tables([folder, tmp_path / "missing"], ids, skip=("run_name",))
    assert missing == ["lost"]
    assert list(df.columns) == ["run_id", "start_time", "params.lr", "metrics.final_loss", "tags.note", "params.optimizer.betas"]
    assert df["run_id"].tolist() == ["r1", "r2", "r3"] and all(a is b for a, b in zip(df["run_id"], ids[:2] + ids[3:]))  # the caller's strings
    assert df["start_time"].dtype == np.int64 and df["start_time"].tolist() == [10, 11, 12]
    assert df["params.lr"].tolist() == ["0.1", "0.2", "0.3"]
    assert all(df[c].dtype == object for c in ("run_id", "params.lr", "tags.note", "params.optimizer.betas"))
    loss = df["metrics.final_loss"].to_numpy()
    assert loss.dtype == np.float64 and loss[0] == 1.5 and np.isinf(loss[1]) and np.isnan(loss[2])
    assert df["tags.note"].iloc[0] == "x" and all(isinstance(v, float) and np.isnan(v) for v in df["tags.note"].iloc[1:])
    assert df["params.optimizer.betas"].isna().tolist() == [True, True, False]
    assert read_run_tables([folder], ["nobody-stored"]) == (None, ["nobody-stored"])
