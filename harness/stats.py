"""Convergence statistics of one member, computed from its recorded curves."""

from __future__ import annotations

import math

import numpy as np

from harness.runner import CONVERGED


def target_key(level: float) -> str:
    """Metric name for the steps needed to reach a target level, e.g. ``steps_to_1e-06``."""
    return f"steps_to_{level:.0e}"


def evals_key(level: float) -> str:
    """Metric name for the gradient evaluations needed to reach a target level, e.g. ``evals_to_1e-06``."""
    return target_key(level).replace("steps_to_", "evals_to_", 1)


def linear_rate(gap: np.ndarray, floor: float) -> float:
    """Empirical per-step contraction of ``gap`` (f - f*): exp of the least-squares slope of
    log(gap) against the step over the second half of the points above ``floor`` (the
    rounding level of f near f*).
    Linear convergence gap_t ~ C rho^t gives rho; NaN when fewer than 4 usable points."""
    ok = np.isfinite(gap) & (gap > floor)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return math.nan
    last = idx[-1]
    # use the contiguous stretch of usable points that ends at the last one
    breaks = np.flatnonzero(~ok[: last + 1])
    first = breaks[-1] + 1 if breaks.size else 0
    seg = np.arange(first, last + 1)
    seg = seg[seg.size // 2 :]
    if seg.size < 4:
        return math.nan
    t = seg.astype(float)
    t -= t.mean()
    y = np.log(gap[seg])
    slope = float(t @ (y - y.mean())) / float(t @ t)  # least squares, as np.polyfit(t, y, 1)[0] (~10x its speed)
    return float(math.exp(slope))


def member_stats(
    loss: np.ndarray,
    grad_norm: np.ndarray,
    elapsed: np.ndarray,
    reason: str,
    f_star: float | None,
    targets: list[float],
    evals: np.ndarray | None = None,
) -> dict[str, float]:
    """Summary metrics of one member whose curves run from step 0 to its stop step.

    ``evals[t]``: the cumulative gradient evaluations to reach step t, for an optimizer whose
    updates do not all take exactly one (a closure-based class such as LBFGS); ``None`` means one
    per update (``evals[t] = t``). ``grad_evals`` is the total; such members also get
    ``evals_to_<level>``, the evaluations to reach each ``steps_to_<level>`` step.
    ``elapsed`` is the batch's clock, so ``batch_wall_time_s`` and ``batch_time_per_step_s`` are
    the time of the whole batch the member ran in (shared by its members), not the member's own."""
    stop = len(loss) - 1
    finite = loss[np.isfinite(loss)]
    out: dict[str, float] = {
        "final_loss": float(loss[-1]),
        "best_loss": float(finite.min()) if finite.size else math.nan,
        "final_grad_norm": float(grad_norm[-1]),
        "steps": float(stop),
        "converged": float(reason in CONVERGED),
        "diverged": float(reason == "diverged"),
        "grad_evals": float(stop if evals is None else evals[stop]),
        "batch_wall_time_s": float(elapsed[stop]),
        "batch_time_per_step_s": float(elapsed[stop] / stop) if stop > 0 else 0.0,
    }
    if f_star is not None:
        gap = loss - f_star
        out["final_suboptimality"] = max(float(gap[-1]), 0.0) if np.isfinite(gap[-1]) else float(gap[-1])
        out["best_suboptimality"] = max(out["best_loss"] - f_star, 0.0)
        out["linear_rate"] = linear_rate(gap, floor=max(1e-14 * abs(f_star), 1e-30))
    else:
        gap = loss
    for level in targets:
        hit = np.flatnonzero(gap <= level)
        if hit.size:
            out[target_key(level)] = float(hit[0])
            if evals is not None:
                out[evals_key(level)] = float(evals[hit[0]])
    return out
