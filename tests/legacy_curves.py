"""The writer of curves.npz as it was before the batch Parquet files (harness/store/records.py at
commit f304105), frozen here to make runs in the old format: the harness must keep reading them."""

from __future__ import annotations

import io
import zipfile

import numpy as np

from harness.store.records import sample_steps


def curves_artifact(loss, grad_norm, elapsed, trajectory=None, evals=None, epoch_per_step=None, f_star=None, grad_evals=None) -> bytes:
    """The bytes of one run's curves.npz (as harness.store.load_curves reads it).

    A zip of .npy files, as ``numpy.savez_compressed`` writes, but each float curve is stored as its
    byte planes (all first bytes, then all second bytes, ...), which deflate compresses ~1.4x better
    (the exponent bytes of a smooth curve barely change): 2,000 steps take ~20 KB instead of ~29 KB.
    :func:`load_curves` undoes it; ``planes`` lists the arrays stored so."""
    idx = sample_steps(len(loss))
    loss = np.asarray(loss, dtype=np.float64)
    if f_star is None:
        arrays = {"loss": loss.astype(np.float32)}
    else:  # the gap keeps float32's relative precision down to 1e-30, where f - f* would lose it at ~1e-7 |f*|
        arrays = {"gap": (loss - f_star).astype(np.float32), "f_star": np.float64(f_star)}
    grad_norm = np.asarray(grad_norm, dtype=np.float64)
    arrays |= {"grad_norm": grad_norm.astype(np.float32), "time": np.asarray(elapsed, dtype=np.float32)[idx],
               "final": np.array([loss[-1], grad_norm[-1]])}  # the last step exactly, ~180 bytes
    if trajectory is not None:
        arrays["x"] = np.asarray(trajectory, dtype=np.float32)[idx]
        arrays["x_final"] = np.asarray(trajectory[-1], dtype=np.float64)
    if epoch_per_step is not None:
        arrays["epoch_per_step"] = np.float64(epoch_per_step)
    if grad_evals is not None:  # cumulative gradient evaluations per step, where an update may take several (L-BFGS)
        arrays["grad_evals"] = np.asarray(grad_evals, dtype=np.int64)
    for k, (steps, vals) in (evals or {}).items():
        arrays["eval_step"] = np.asarray(steps, dtype=np.int32)
        arrays[k] = np.asarray(vals, dtype=np.float64)
    planes = [k for k, a in arrays.items() if a.dtype.kind == "f" and a.size > 16]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:  # level 1: as small as 6 here, 25% faster
        for k, a in [*arrays.items(), ("planes", np.array(planes))]:
            if k in planes:
                a = np.ascontiguousarray(a).reshape(-1).view(np.uint8).reshape(-1, a.itemsize).T.copy()
            with z.open(k + ".npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)
    return buf.getvalue()
