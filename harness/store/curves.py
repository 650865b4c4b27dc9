"""Every step of every run's curves: one Parquet file per batch of runs, readable without the harness.

**Where.** The member runs that one job writes together (up to :data:`~harness.store.writer.CHUNK`
runs, in one transaction) share one file, ``curves/<token>.parquet`` among the artifacts of the
sweep's parent run; a run without a parent keeps its own, ``curves.parquet``. Each run's tag
``harness.curves`` (:data:`CURVES_TAG`) is that file's artifact URI: a local path for a local artifact
store (``pandas.read_parquet`` opens it as it is), else a URI that
``mlflow.artifacts.download_artifacts`` fetches.

**Layout (long format).** One row per run and step, each run's rows together in step order:

- ``run_id`` (dictionary-encoded string) and ``step`` (int64, 0 = the start point);
- ``loss`` and ``grad_norm`` at every step; ``suboptimality`` (f - f*, computed in float64 from f,
  floored at 0) where f* is known; ``epoch`` on data problems; ``grad_evals`` (int64, cumulative) where
  an update may take several gradient evaluations (L-BFGS);
- ``time`` (seconds since step 0, the batch's clock) and, for 1-D and 2-D problems, the point ``x0``
  [, ``x1``], at the steps of :func:`~harness.store.records.sample_steps` (every step up to 1,001 points,
  else 501 evenly spaced ones, always the first and the last), null at the others;
- held-out metrics (``val_loss``, ``test_accuracy``, ...) at their evaluation steps, null between.

**Precision.** Every float column is float64. ``loss``, ``grad_norm``, ``suboptimality``, ``time`` and
``x*`` are rounded to float32's 24-bit significand (relative error at most 2**-24, about 6e-8) but keep
float64's exponent range, so a gap of 1e-300 neither underflows nor loses its relative precision; the
last step of each is exact, equal to the run's ``final_*`` metrics and final point. ``epoch`` and
held-out metrics are exact. (Rounding zeroes the low mantissa bytes, which the byte-stream-split
encoding and zstd then store in almost nothing: ~12 KB per 2,000-step 2-D run.)

:func:`load_curves` reads ``curves.npz``, the per-run file that runs stored before this layout have.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.store.records import RunRecord, sample_steps

CURVES_TAG = "harness.curves"  # on every member run: the artifact URI of the file holding its curves
CURVES = "curves.npz"  # the per-run file of runs stored before the batch files
OWN_FILE = "curves.parquet"  # the file of a run without a parent, among its own artifacts
FOLDER = "curves"  # the parent's folder of batch files
ROW_GROUP_ROWS = 1 << 16  # rows per row group (whole runs): a reader decodes only the groups of its runs
FORMAT = {b"harness.curves.version": b"1"}
_X = re.compile(r"x\d+$")
ROUNDED_CURVES = ("loss", "grad_norm", "suboptimality", "time")  # and x0, x1, ...: see Precision above


def round_significand(a: np.ndarray) -> np.ndarray:
    """``a`` (float64) rounded to nearest to a 24-bit significand (float32's precision) in float64's
    exponent range; non-finite values, and finite ones that would round to infinity, as they are."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    u = a.view(np.uint64)
    r = ((u + np.uint64(0x0FFFFFFF) + ((u >> np.uint64(29)) & np.uint64(1))) & ~np.uint64(0x1FFFFFFF)).view(np.float64)
    return np.where(np.isfinite(a) & np.isfinite(r), r, a)


def _columns(r: RunRecord) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """One run's columns as (values over every step, validity mask or None for all valid), not yet
    rounded (:func:`_batch` rounds a whole row group's column at once)."""
    n = len(r.elapsed)
    cols: dict[str, tuple[np.ndarray, np.ndarray | None]] = {"step": (np.arange(n, dtype=np.int64), None)}
    for k in ("loss", "grad_norm", "suboptimality"):
        if k in r.curves:
            cols[k] = (np.asarray(r.curves[k], dtype=np.float64), None)
    if "epoch" in r.curves:
        cols["epoch"] = (np.asarray(r.curves["epoch"], dtype=np.float64), None)
    if r.grad_evals is not None:
        cols["grad_evals"] = (np.asarray(r.grad_evals).astype(np.int64), None)
    idx = sample_steps(n)
    sampled = np.zeros(n, dtype=bool)
    sampled[idx] = True

    def at_samples(v) -> tuple[np.ndarray, np.ndarray]:
        full = np.zeros(n)
        full[idx] = np.asarray(v, dtype=np.float64)[idx]
        return full, sampled

    cols["time"] = at_samples(r.elapsed)
    if r.trajectory is not None:
        traj = np.asarray(r.trajectory, dtype=np.float64).reshape(n, -1)
        for j in range(traj.shape[1]):
            cols[f"x{j}"] = at_samples(traj[:, j])
    for k, (steps, vals) in r.sparse.items():
        steps = np.asarray(steps, dtype=np.int64)
        full, valid = np.zeros(n), np.zeros(n, dtype=bool)
        full[steps], valid[steps] = np.asarray(vals, dtype=np.float64), True
        cols[k] = (full, valid)
    return cols


def _names(r: RunRecord) -> set[str]:
    """The columns :func:`_columns` gives ``r``."""
    out = {"step", "time", *(k for k in ("loss", "grad_norm", "suboptimality", "epoch") if k in r.curves), *r.sparse}
    if r.grad_evals is not None:
        out.add("grad_evals")
    if r.trajectory is not None:
        d = int(np.prod(np.shape(r.trajectory)[1:], dtype=np.int64)) if np.ndim(r.trajectory) > 1 else 1
        out.update(f"x{j}" for j in range(d))
    return out


def _round_but_last(values: np.ndarray, lasts: np.ndarray) -> np.ndarray:
    """A row group's column rounded to a 24-bit significand, except at each run's last step (``lasts``:
    row indices; the sampled columns, time and x, always hold the last step too)."""
    out = round_significand(values)
    out[lasts] = values[lasts]
    return out


def _array(pa, values: np.ndarray, valid: np.ndarray | None):
    """A pyarrow array over numpy's buffers (``pa.array`` would import pandas, ~0.3 s per job)."""
    values = np.ascontiguousarray(values)
    bitmap = None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    kind = pa.int64() if values.dtype.kind == "i" else pa.float64()
    return pa.Array.from_buffers(kind, len(values), [bitmap, pa.py_buffer(values)], null_count=-1 if bitmap is not None else 0)


def _strings(pa, items: list[str]):
    raw = [s.encode() for s in items]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in raw])]).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(items), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(raw))])


def _batch(pa, runs: list[tuple[str, dict]], names: list[str]):
    """One row group: the rows of ``runs`` [(run_id, columns)], every column of ``names``."""
    lengths = [len(c["step"][0]) for _, c in runs]
    lasts = np.cumsum(lengths) - 1  # each run's last row
    codes = np.repeat(np.arange(len(runs), dtype=np.int32), lengths)
    indices = pa.Array.from_buffers(pa.int32(), len(codes), [None, pa.py_buffer(codes)])
    arrays = [pa.DictionaryArray.from_arrays(indices, _strings(pa, [rid for rid, _ in runs]))]
    for name in names:
        parts, masks, dtype = [], [], np.int64 if name in ("step", "grad_evals") else np.float64
        for (_, c), n in zip(runs, lengths):
            v, m = c.get(name, (np.zeros(n, dtype=dtype), np.zeros(n, dtype=bool)))
            parts.append(v)
            masks.append(np.ones(n, dtype=bool) if m is None else m)
        values = np.concatenate(parts)
        if name in ROUNDED_CURVES or _X.match(name):
            values = _round_but_last(values, lasts)
        arrays.append(_array(pa, values, np.concatenate(masks)))
    return pa.RecordBatch.from_arrays(arrays, names=["run_id", *names])


def _order(names: set[str]) -> list[str]:
    first = ["step", "loss", "grad_norm", "suboptimality", "epoch", "grad_evals", "time"]
    xs = sorted((k for k in names if _X.match(k)), key=lambda k: int(k[1:]))
    return [k for k in first if k in names] + xs + sorted(names - set(first) - set(xs))


def write_curves(path: Path, records: Sequence[RunRecord], run_ids: Sequence[str]) -> None:
    """Write the curves of ``records`` (stored as ``run_ids``) to one Parquet file at ``path``."""
    write_batches(path, *curve_batches(records, run_ids))


def curve_batches(records: Sequence[RunRecord], run_ids: Sequence[str]) -> tuple:
    """(schema, record batches) of the curves of ``records``: a batch (a row group) per
    ~:data:`ROW_GROUP_ROWS` rows of whole runs; the columns are the union of the runs' (nulls where a
    run has none). Encoding them is :func:`write_batches`'s work, which may run in another thread."""
    import pyarrow as pa

    names = _order(set().union(*(_names(r) for r in records)))
    ints = {"step", "grad_evals"}
    schema = pa.schema([("run_id", pa.dictionary(pa.int32(), pa.string()))] +
                       [(k, pa.int64() if k in ints else pa.float64()) for k in names], metadata=FORMAT)
    batches, group, rows = [], [], 0
    for rid, r in zip(run_ids, records):  # each run's columns built as its row group is: memory holds one group's
        c = _columns(r)
        group.append((rid, c))
        rows += len(c["step"][0])
        if rows >= ROW_GROUP_ROWS:
            batches.append(_batch(pa, group, names))
            group, rows = [], 0
    if group:
        batches.append(_batch(pa, group, names))
    return schema, batches


def write_batches(path: Path, schema, batches: list) -> None:
    """Encode :func:`curve_batches` into one Parquet file (zstd; byte-stream-split floats, delta-packed ints)."""
    import pyarrow.parquet as pq

    ints = {"step", "grad_evals"}
    encoding = {k: "DELTA_BINARY_PACKED" if k in ints else "BYTE_STREAM_SPLIT" for k in schema.names if k != "run_id"}
    with pq.ParquetWriter(path, schema, compression="zstd", compression_level=3, use_dictionary=["run_id"],
                          column_encoding=encoding, write_page_index=False) as w:
        for b in batches:
            w.write_batch(b)


def read_curves_file(path: Path, run_ids: set[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The curves of ``run_ids`` (default: every run) in one batch file, as {run_id: arrays} in the
    conventions of :func:`load_curves`; only the row groups holding those runs are decoded."""
    import pyarrow.parquet as pq

    out = {}
    with pq.ParquetFile(path) as f:  # use_threads=False: with its thread pool, pyarrow has aborted processes at exit (apache/arrow#34314)
        for g in range(f.metadata.num_row_groups):
            ids = f.read_row_group(g, columns=["run_id"], use_threads=False).column(0).combine_chunks()
            names = ids.dictionary.to_pylist()
            wanted = {i for i, rid in enumerate(names) if run_ids is None or rid in run_ids}
            if not wanted:
                continue
            table = f.read_row_group(g, use_threads=False)
            val = {k: table.column(k).to_numpy() for k in table.column_names if k != "run_id"}
            valid = {k: table.column(k).is_valid().to_numpy() for k in val}
            codes = ids.indices.to_numpy()
            starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
            for a, b in zip(starts, np.r_[starts[1:], len(codes)]):
                if codes[a] in wanted:  # copies, so that the row group's arrays are freed
                    out[names[codes[a]]] = _arrays({k: v[a:b] for k, v in val.items()}, {k: v[a:b] for k, v in valid.items()})
    return out


def _arrays(val: dict[str, np.ndarray], valid: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One run's rows (each column's values and validity) as the arrays :func:`load_curves` returns."""
    step = val.pop("step")
    out = {}
    for k in ("loss", "grad_norm", "suboptimality", "epoch"):
        if k in val and valid[k].all():
            out[k] = val[k].astype(np.float64)
    if "grad_evals" in val and valid["grad_evals"].all():
        out["grad_evals"] = val["grad_evals"].astype(np.int64)
    sampled = valid["time"]
    out["sampled_step"] = step[sampled]
    out["time"] = val["time"][sampled]
    xs = sorted((k for k in val if _X.match(k) and valid[k].any()), key=lambda k: int(k[1:]))
    if xs:
        out["x"] = np.stack([val[k][sampled] for k in xs], axis=1)
        out["x_final"] = out["x"][-1].copy()
    known = {"loss", "grad_norm", "suboptimality", "epoch", "grad_evals", "time"}
    held = [k for k in val if k not in known and not _X.match(k) and valid[k].any()]
    for k in held:  # each measured on its own schedule (held-out metrics every eval_every, instruments every N)
        out[f"{k}.step"] = step[valid[k]]
        out[k] = val[k][valid[k]]
    return out


def load_curves(source) -> dict[str, np.ndarray]:
    """A run's curves.npz (a path, a file or bytes), as runs stored before the batch files have it, as
    {name: array}: ``loss``, ``grad_norm`` and, where f* is known, ``suboptimality`` per step (float64:
    the last step exactly as the run's ``final_*`` metrics, the others rounded to float32), ``time`` and
    ``x`` at ``sampled_step``, ``eval_step`` and held-out metrics where evaluated, and ``grad_evals``
    (cumulative, per step) where an update may take several evaluations."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with np.load(source) as z:
        out = {k: z[k] for k in z.files}
    for k in out.pop("planes", np.array([])).tolist():  # float curves stored as byte planes
        p = out[k]
        dtype = np.dtype(f"<f{p.shape[0]}")
        out[k] = p.T.copy().view(dtype).reshape(-1)
    final = out.pop("final", None)  # absent from files written before it was added
    out["grad_norm"] = out["grad_norm"].astype(np.float64)
    if "gap" in out:
        gap = out.pop("gap").astype(np.float64)
        if final is not None:
            gap[-1] = final[0] - out["f_star"]  # as final_suboptimality is computed
        out["loss"] = out["f_star"] + gap
        out["suboptimality"] = np.maximum(gap, 0.0)
    else:
        out["loss"] = out["loss"].astype(np.float64)
    if final is not None:
        out["loss"][-1], out["grad_norm"][-1] = final
    if "x" in out:
        out["x"] = out["x"].reshape(len(out["time"]), -1)
    out["sampled_step"] = sample_steps(len(out["loss"]))
    return out
