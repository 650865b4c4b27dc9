"""What one member run stores, and in which form.

- **Metric rows** (what the MLflow UI charts and ``get_metric_history`` returns): every step of
  ``loss``, ``grad_norm`` and ``suboptimality`` (and ``epoch``) for runs of up to ``EVERY_STEP_UP_TO``
  steps; longer runs log ``UI_POINTS`` geometrically spaced steps (dense at the start, where curves
  move fastest) merged with ``UI_POINTS`` evenly spaced ones, always with step 0 and the last step,
  about 2 x UI_POINTS points in all. A row costs ~250 bytes in MLflow's tables (it is indexed three times).
- **Summary metrics** (``final_loss``, ``steps_to_1e-06``, ...) at the last step: columns in the UI.
- **curves.npz**, one compact artifact per run with every step of the loss and ``grad_norm`` in float32
  (where f* is known, the gap f - f* is stored, so that suboptimality keeps its relative precision
  however small it gets, and ``f_star``), plus ``final``, the last step's loss and grad_norm in
  float64, so that the curves end exactly at ``final_loss``, ``final_suboptimality`` and
  ``final_grad_norm`` (float32 rounds them, and flushes a gap below ~1e-45 to 0); the wall time
  ``time`` (float32 seconds since step 0) and, for 1-D and 2-D problems, the points ``x`` (float32,
  plus ``x_final`` in float64), at the steps of :func:`sample_steps` (every step up to 1,000 steps,
  else 501 evenly spaced); held-out evaluations at ``eval_step``. Read it with :func:`load_curves`
  (the float curves are stored as byte planes, which compress better).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

import numpy as np

EVERY_STEP_UP_TO = 200  # runs of up to this many steps log every step as metric rows
UI_POINTS = 10  # longer runs: this many geometric and this many even steps (merged)
MAX_POINTS = 1000  # curves.npz: time and x at every step up to this many steps ...
SAMPLE_POINTS = 500  # ... else at this many + 1 evenly spaced steps
CURVES = "curves.npz"


def ui_steps(n_points: int) -> np.ndarray:
    """Steps of the metric rows of a curve with ``n_points`` points (steps 0 .. n_points - 1)."""
    last = n_points - 1
    if last <= EVERY_STEP_UP_TO:
        return np.arange(n_points)
    geo = np.geomspace(1, last, UI_POINTS)
    even = np.linspace(0, last, UI_POINTS)
    return np.unique(np.round(np.concatenate([[0], geo, even, [last]])).astype(np.int64))


def sample_steps(n_points: int) -> np.ndarray:
    """Steps at which curves.npz keeps the time and the points x: all up to MAX_POINTS, else
    SAMPLE_POINTS + 1 evenly spaced ones, always including step 0 and the last step."""
    if n_points <= MAX_POINTS + 1:
        return np.arange(n_points)
    return np.unique(np.round(np.linspace(0, n_points - 1, SAMPLE_POINTS + 1)).astype(np.int64))


def curves_artifact(loss, grad_norm, elapsed, trajectory=None, evals=None, epoch_per_step=None, f_star=None, grad_evals=None) -> bytes:
    """The bytes of one run's curves.npz (see the module docstring).

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


def load_curves(source) -> dict[str, np.ndarray]:
    """A run's curves.npz (a path, a file or bytes) as {name: array}: ``loss``, ``grad_norm`` and, where
    f* is known, ``suboptimality`` per step (float64: the last step exactly as the run's ``final_*``
    metrics, the others rounded to float32), ``time`` and ``x`` at ``sampled_step``, ``eval_step`` and held-out metrics where evaluated,
    and ``grad_evals`` (cumulative, per step) where an update may take several evaluations."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with np.load(source) as z:
        out = {k: z[k] for k in z.files}
    for k in out.pop("planes", np.array([])).tolist():
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


@dataclass
class RunRecord:
    """Everything one member produced, ready to be written as one finished MLflow run."""

    name: str
    params: dict[str, str]
    tags: dict[str, str]
    summary: dict[str, float]
    curves: dict[str, np.ndarray]  # full curves, step 0 .. last step (logged as metric rows at ui_steps)
    started_at: float  # epoch seconds at step 0
    elapsed: np.ndarray  # seconds since step 0, per step
    artifacts: dict[str, str | bytes] = field(default_factory=dict)  # path -> content
    sparse: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # key -> (steps, values), e.g. test accuracy

    def metric_arrays(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(keys, values, timestamps ms, steps): the sampled curve points, the sparse ones, then the
        summary at the last step."""
        idx = ui_steps(len(self.elapsed))
        stamps = ((self.started_at + self.elapsed) * 1000).astype(np.int64)
        last = len(self.elapsed) - 1
        n_sum = len(self.summary)
        keys = [k for k in self.curves for _ in idx]
        values = [np.asarray(c, dtype=np.float64)[idx] for c in self.curves.values()]
        ts = [np.tile(stamps[idx], len(self.curves))]
        st = [np.tile(idx, len(self.curves))]
        for k, (steps, vals) in self.sparse.items():
            keys += [k] * len(steps)
            values.append(np.asarray(vals, dtype=np.float64))
            ts.append(stamps[steps])
            st.append(np.asarray(steps))
        keys += list(self.summary)
        values.append(np.array(list(self.summary.values()), dtype=np.float64))
        ts.append(np.full(n_sum, stamps[last]))
        st.append(np.full(n_sum, last))
        return keys, np.concatenate(values), np.concatenate(ts), np.concatenate(st)

    def metric_points(self) -> list[tuple[str, float, int, int]]:
        keys, values, stamps, steps = self.metric_arrays()
        return list(zip(keys, values.tolist(), stamps.tolist(), steps.tolist()))

    @property
    def end_ms(self) -> int:
        return max(int((self.started_at + float(self.elapsed[-1])) * 1000), int(self.started_at * 1000))
