"""A sweep's runs as one table that any tool reads: a small Parquet file per batch of runs, holding the
columns MLflow's tables hold for them, next to the batch's curves file.

**Where.** ``runs/<token>.parquet`` among the artifacts of the sweep's parent run, one per chunk of up
to :data:`~harness.store.writer.CHUNK` runs, named like the chunk's ``curves/<token>.parquet``.

**Columns.** One row per run: ``run_id``, ``run_name``, ``start_time`` (ms), ``artifact_uri``, then
``params.<key>`` (strings, as MLflow stores params), ``metrics.<key>`` (float64: the latest value of
each metric, NaN and infinities as they are, where MLflow's tables clip them) and ``tags.<key>``
(strings): the columns :meth:`harness.store.tables.Tables.frame` builds from MLflow's tables.

**Why.** Reading 100,000 runs back from MLflow's tables builds millions of Python objects (14 s of CPU
and 1.7 GB at 100,000 runs); these files read in well under a second. MLflow's tables stay the record:
the reader takes the run ids, status and lifecycle from them and reads from them every run that has no
row in these files (runs stored before them, runs written through an MLflow server).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FOLDER = "runs"  # the parent's folder of run tables
FIXED = ("run_id", "run_name", "start_time", "artifact_uri")


def write_run_table(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (one dict per run: :data:`FIXED` keys, then ``params.*``, ``metrics.*`` and
    ``tags.*``) to one Parquet file; a column a run lacks is null in its row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list(dict.fromkeys(k for r in rows for k in r))
    arrays = [pa.array([r.get(k) for r in rows], type=_type(k)) for k in names]
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path, compression="zstd")


def _type(name: str):
    import pyarrow as pa

    if name == "start_time":
        return pa.int64()
    return pa.float64() if name.startswith("metrics.") else pa.string()


def read_run_tables(folders: list[Path], run_ids: list[str], skip: tuple[str, ...] = ()):
    """The rows of ``run_ids`` in the run tables of ``folders``, as one DataFrame (a column that a file
    lacks is null in its rows; a run in several files once), or None when no file holds one. Columns
    in ``skip`` and the UI's note are left unread; strings are read as dictionaries and come back as
    object arrays, one Python string per distinct value (:func:`object_strings`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.store.tables import NOTE

    files = [f for folder in folders if folder.is_dir() for f in sorted(folder.glob("*.parquet"))]
    if not files:
        return None
    left_out = {f"tags.{NOTE}", *skip}  # the note: the UI's link to the curves, not read back
    wanted = set(run_ids)
    parts = []
    for f in files:
        schema = pq.read_schema(f)
        cols = [c for c in schema.names if c not in left_out]
        strings = [c for c in cols if pa.types.is_string(schema.field(c).type)]
        t = pq.read_table(f, columns=cols, read_dictionary=strings, use_threads=False)
        keep = [rid in wanted for rid in t["run_id"].to_pylist()]
        if not all(keep):
            t = t.filter(pa.array(keep, type=pa.bool_()))
        if t.num_rows:
            parts.append(t)
    if not parts:
        return None
    t = pa.concat_tables(parts, promote_options="permissive")
    del parts
    df = object_strings(t.to_pandas(split_blocks=True, self_destruct=True))
    return df.drop_duplicates("run_id") if df["run_id"].duplicated().any() else df  # a copy only when needed


def object_strings(df):
    """String and categorical columns as numpy object arrays, each distinct value one Python string (NaN
    where null). pandas 3 keeps strings in Arrow, where every row selection of the frame (the analysis
    makes hundreds) is an Arrow ``take`` per column: 1.3 s of a 100,000-run report, against milliseconds."""
    import pandas as pd

    for c in df.columns:
        dtype = df[c].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            codes, uniques = df[c].cat.codes.to_numpy(), df[c].cat.categories
        elif isinstance(dtype, pd.StringDtype):
            codes, uniques = pd.factorize(df[c])
        else:
            continue
        out = np.full(len(codes), np.nan, dtype=object)
        known = codes >= 0
        out[known] = np.asarray(uniques, dtype=object)[codes[known]]
        df[c] = pd.Series(out, index=df.index, dtype=object)
    return df
