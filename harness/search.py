"""Search spaces: ``interval(a, b)`` and ``tag(log, interval(a, b))`` sampled as quasi-random trials.

``python -m harness -m "lr=tag(log, interval(1e-4, 1))" search.trials=16`` draws 16 points of a
scrambled Sobol sequence (scipy.stats.qmc, seeded by ``search.seed``), one coordinate per interval key,
and maps each coordinate onto its interval, uniformly or, under ``log``, log-uniformly. The same
command draws the same points, so a stopped sampled sweep resumes like a grid. Each point becomes one
override per key (``lr=0.00316228``), and the batch sweeper crosses the points with the grid keys and
seeds and batches them like grid points.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from optimizers.base import ConfigError

DIGITS = 6  # significant digits a sampled value keeps (in its override, run name and params)


@dataclass(frozen=True)
class Interval:
    key: str
    low: float
    high: float
    log: bool

    def spelled(self) -> str:
        inner = f"interval({self.low:g}, {self.high:g})"
        return f"{self.key}=tag(log, {inner})" if self.log else f"{self.key}={inner}"

    def check(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ConfigError(f"{self.spelled()} is not allowed; allowed: interval(a, b) with finite a < b")
        if self.log and self.low <= 0:
            raise ConfigError(f"{self.spelled()} is not allowed; allowed: tag(log, interval(a, b)) with 0 < a < b")

    def place(self, u: float) -> float:
        """The point at fraction ``u`` in [0, 1) of the interval, rounded to DIGITS significant digits."""
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        return float(f"{v:.{DIGITS}g}")


def check_trials(trials) -> int:
    ok = isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1
    if not ok:
        raise ConfigError(f"search.trials={trials!r} is not allowed; allowed: an integer >= 1")
    return trials


def check_seed(seed) -> int:
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise ConfigError(f"search.seed={seed!r} is not allowed; allowed: an integer >= 0")
    return seed


def unit_points(dims: int, trials: int, seed: int):
    """``trials`` x ``dims`` points of a scrambled Sobol sequence in [0, 1)^dims (scipy, seeded)."""
    from scipy.stats import qmc  # only a sampled sweep pays for scipy's import

    with warnings.catch_warnings():  # a trial count that is not a power of 2 loses Sobol's balance property; fine here
        warnings.simplefilter("ignore", UserWarning)
        return qmc.Sobol(dims, scramble=True, seed=seed).random(trials)


def sample(spaces: list[Interval], trials, seed) -> list[list[str]]:
    """One list of overrides (``key=value`` per interval, in ``spaces`` order) per trial."""
    for s in spaces:
        s.check()
    points = unit_points(len(spaces), check_trials(trials), check_seed(seed))
    return [[f"{s.key}={s.place(float(u))!r}" for s, u in zip(spaces, row)] for row in points]
