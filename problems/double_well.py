"""Tilted 1-D double well  f(x) = (x^2 - 1)^2 + tilt * x.

With ``tilt > 0`` the left well (x ~ -1) is the global minimum and the right one
(x ~ +1) a shallow local minimum. Starting on the right (default box [0.5, 2.5]), plain
GD with a small step settles in the local well; heavy-ball momentum carries enough
speed over the barrier (near x = tilt / 4) to reach the global one.
"""

from __future__ import annotations

import functools

from torch import Tensor

from optimizers.base import ConfigError
from problems.base import Minimum, Problem, minima_from_guesses


@functools.lru_cache
def _minima(tilt: float) -> tuple[Minimum, ...]:
    def f(x):
        return ((x * x - 1) ** 2 + tilt * x).sum(-1)

    return tuple(minima_from_guesses(f, {"left": [-1.0], "right": [1.0]}, "double_well"))


class DoubleWell(Problem):
    name = "double_well"
    fixed = ("dim",)

    def __init__(self, tilt: float = 0.5, x0=None, box=(0.5, 2.5), **kw):
        super().__init__(1, x0, box, **kw)
        if not isinstance(tilt, (int, float)) or isinstance(tilt, bool) or not 0 <= tilt < 1.5:
            raise ConfigError(f"problem.tilt={tilt!r} is not allowed; allowed: 0 <= tilt < 1.5 (two wells)")
        self.tilt = float(tilt)
        self.minima = list(_minima(self.tilt))
        self.f_star = min(m.f for m in self.minima)

    def loss(self, x: Tensor) -> Tensor:
        return ((x * x - 1) ** 2 + self.tilt * x).sum(-1)
