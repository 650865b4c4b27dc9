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
    """(rows, missing): the rows of ``run_ids`` in the run tables of ``folders``, as one DataFrame (a
    column that a file lacks is null in its rows; a run in several files once, from the first), or None
    when no file holds one; and the ids that no file holds, in their order. Columns in ``skip`` and the
    UI's note are left unread. Strings come back as object arrays, one Python string per distinct value
    of a file (NaN where null), the ids as the caller's strings; numbers as float64 (``start_time``:
    int64 where no row lacks it).

    Each file's rows go straight into numpy columns of the final size (at most ``len(run_ids)`` rows):
    memory holds the result and little more. (Arrow tables concatenated and converted held ~2.5 KB a run
    at once, a million runs' worth 2.5 GB.)"""
    import pandas as pd
    import pyarrow.parquet as pq

    from harness.store.tables import NOTE

    files = [f for folder in folders if folder.is_dir() for f in sorted(folder.glob("*.parquet"))]
    left_out = {f"tags.{NOTE}", *skip}  # the note: the UI's link to the curves, not read back
    wanted = {rid: rid for rid in run_ids}  # each popped when found: read once, from the first file, as the caller's string
    size = len(wanted)
    columns: dict[str, _Column] = {}
    n = 0
    for f in files:
        names = [c for c in pq.read_schema(f).names if c not in left_out]
        t = pq.read_table(f, columns=names, use_threads=False)
        ids = t.column("run_id").to_pylist()
        kept = [wanted.pop(rid, None) for rid in ids]
        keep = np.fromiter((rid is not None for rid in kept), dtype=bool, count=len(kept))
        if not keep.any():
            continue
        kept = [rid for rid in kept if rid is not None]
        for name in names:
            values = np.array(kept, dtype=object) if name == "run_id" else _numpy(t.column(name))[keep]
            if name not in columns:
                columns[name] = _Column(values.dtype, size)
            columns[name].put(n, values)
        n += len(kept)
    missing = list(wanted)
    if not n:
        return None, missing
    # object strings stay objects (pandas 3 would infer its Arrow-backed string dtype)
    return pd.DataFrame({k: pd.Series(v := c.values(n), dtype=v.dtype, copy=False) for k, c in _drained(columns)}, copy=False), missing


class _Column:
    """One column of the result, filled file by file: NaN where a file lacks it (integers become float64 then)."""

    def __init__(self, dtype: np.dtype, size: int):
        if dtype.kind == "i":
            self.data = np.zeros(size, dtype=dtype)
        else:  # strings (objects) or floats, NaN until filled
            self.data = np.full(size, np.nan, dtype=object if dtype.kind == "O" else np.float64)
        self.filled = np.zeros(size, dtype=bool) if dtype.kind == "i" else None

    def put(self, first: int, values: np.ndarray) -> None:
        if self.data.dtype.kind == "i" and values.dtype.kind != "i":
            self.data = np.where(self.filled, self.data, np.nan)
            self.filled = None
        self.data[first : first + len(values)] = values
        if self.filled is not None:
            self.filled[first : first + len(values)] = True

    def values(self, n: int) -> np.ndarray:
        data = self.data if len(self.data) == n else self.data[:n].copy()
        if self.filled is not None and not self.filled[:n].all():
            data = np.where(self.filled[:n], data, np.nan)
        return data


def _numpy(column) -> np.ndarray:
    """A Parquet column as numpy: strings as objects (one Python string per distinct value, NaN where
    null), numbers as float64 with NaN where null, integers without nulls as they are."""
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        coded = column.combine_chunks().dictionary_encode()
        values = np.array(coded.dictionary.to_pylist() + [np.nan], dtype=object)  # the last: where null
        return values[coded.indices.fill_null(len(values) - 1).to_numpy()]
    if pa.types.is_integer(column.type) and column.null_count == 0:
        return column.to_numpy()
    return column.to_numpy().astype(np.float64)


def _drained(columns: dict):
    """Each (name, column) in order, dropped from ``columns`` as it is handed out."""
    for name in list(columns):
        yield name, columns.pop(name)


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
