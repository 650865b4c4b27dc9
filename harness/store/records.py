"""What one member run stores, and in which form.

- **Metric rows** (what the MLflow UI charts and ``get_metric_history`` returns): every step of
  ``loss``, ``grad_norm`` and ``suboptimality`` (and ``epoch``) for runs of up to ``EVERY_STEP_UP_TO``
  steps; longer runs log ``UI_POINTS`` geometrically spaced steps (dense at the start, where curves
  move fastest) merged with ``UI_POINTS`` evenly spaced ones, always with step 0 and the last step,
  about 2 x UI_POINTS points in all. A row costs ~250 bytes in MLflow's tables (it is indexed three times).
- **Summary metrics** (``final_loss``, ``steps_to_1e-06``, ...) at the last step: columns in the UI.
- **Every step of the curves**, with the wall time, the points x of 1-D and 2-D problems (at the steps
  of :func:`sample_steps`) and held-out evaluations: in the Parquet file that the runs of a batch share,
  named by the run's tag ``harness.curves`` (:mod:`harness.store.curves`).
- **config.yaml**, the resolved config of a single run, among its artifacts (a sweep's members have none:
  their params are the config, and each chunk's run table, :mod:`~harness.store.runtable`, holds their columns).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

EVERY_STEP_UP_TO = 200  # runs of up to this many steps log every step as metric rows
UI_POINTS = 7  # longer runs: this many geometric and this many even steps (merged)
MAX_POINTS = 1000  # time and x at every step up to this many steps ...
SAMPLE_POINTS = 500  # ... else at this many + 1 evenly spaced steps


@functools.lru_cache(maxsize=256)
def ui_steps(n_points: int) -> np.ndarray:
    """Steps of the metric rows of a curve with ``n_points`` points (steps 0 .. n_points - 1); read-only."""
    last = n_points - 1
    if last <= EVERY_STEP_UP_TO:
        return _frozen(np.arange(n_points))
    geo = np.geomspace(1, last, UI_POINTS)
    even = np.linspace(0, last, UI_POINTS)
    return _frozen(np.unique(np.round(np.concatenate([[0], geo, even, [last]])).astype(np.int64)))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # cached: shared by every caller
    return a


@functools.lru_cache(maxsize=256)
def sample_steps(n_points: int) -> np.ndarray:
    """Steps at which the curves keep the time and the points x: all up to MAX_POINTS, else
    SAMPLE_POINTS + 1 evenly spaced ones, always including step 0 and the last step."""
    if n_points <= MAX_POINTS + 1:
        return _frozen(np.arange(n_points))
    return _frozen(np.unique(np.round(np.linspace(0, n_points - 1, SAMPLE_POINTS + 1)).astype(np.int64)))


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
    trajectory: np.ndarray | None = None  # [steps, d]: the points of a 1-D or 2-D problem
    grad_evals: np.ndarray | None = None  # cumulative gradient evaluations per step, where an update may take several

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
