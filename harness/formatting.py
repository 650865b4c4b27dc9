"""How numbers are written, the same in the sweep summary and in the report."""

from __future__ import annotations

import math


def value(v: float, fstar: bool = True) -> str:
    """A final value: ``= f*`` when a run ended exactly at f*, ``diverged`` for +inf."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if math.isinf(v):
        return "diverged"
    if fstar and v == 0:
        return "= f*"
    return f"{v:.3g}"


def lr(v: float) -> str:
    return f"{v:.3g}"


def steps(v: float) -> str:
    if v is None or math.isnan(v):
        return "–"
    return "never" if math.isinf(v) else f"{v:.0f}"


def interval(lo: float, hi: float, fmt=value, level: float | None = None) -> str:
    """``[lo, hi] 94%`` (with the level the interval achieves), or ``–`` where there is none (fewer than two seeds)."""
    if lo is None or math.isnan(lo) or math.isnan(hi):
        return "–"
    return f"[{fmt(lo)}, {fmt(hi)}]" + (f" {level:.0%}" if level is not None and not math.isnan(level) else "")


def share(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.0%}"


def count(k: int, n: int) -> str:
    return f"{k}/{n}"
