"""Test problems. Each is a batched objective ``loss(x[B, d]) -> [B]`` with a start-point rule,
its optimal value ``f_star`` and, where known, the list of its minima (global or local)."""

from problems.base import Minimum, Problem

__all__ = ["Minimum", "Problem"]
