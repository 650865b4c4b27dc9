"""harness.inference: intervals reach the level they state (checked by simulation), exact sign test,
Holm's correction and the Clopper-Pearson interval of the win probability."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad

from harness.inference import (
    holm,
    iqm,
    iqm_coverage,
    iqm_interval,
    median_coverage,
    median_interval,
    pair_outcomes,
    sign_test,
    sign_test_outcomes,
    win_probability,
)

REPS = 4000
SEEDS = (3, 5, 10, 20)
DISTS = {
    "lognormal1": stats.lognorm(1.0),
    "lognormal2": stats.lognorm(2.0),
    "exponential": stats.expon(),
    "t2": stats.t(2),
    "lomax1.5": stats.lomax(1.5),
}


def _se(level: float) -> float:
    return math.sqrt(level * (1 - level) / REPS)


def _coverage(interval, samples: np.ndarray, truth: float) -> tuple[float, float]:
    lo, hi, achieved = interval(samples)
    return float(np.mean((lo <= truth) & (truth <= hi))), achieved


def _adversarial_ppf(u):
    """A distribution whose IQM (about 1.0005) sits at its 74% quantile: half its mass in [0, 0.001] and
    1% near 50 inside the 25..75% range, the worst case the IQM interval's guarantee allows for."""
    return np.select(
        [u < 0.25, u < 0.74, u < 0.75], [u - 1.25, (u - 0.25) * 0.001 / 0.49, 49.99 + (u - 0.74) * 2], 51 + u
    )


@pytest.mark.parametrize("n", SEEDS)
@pytest.mark.parametrize("name", list(DISTS))
def test_median_interval_reaches_its_level(name, n):
    rng = np.random.default_rng(12345 + n)
    dist = DISTS[name]
    covered, achieved = _coverage(median_interval, dist.rvs(size=(REPS, n), random_state=rng), dist.median())
    # exact for continuous data: neither below nor (a too-wide interval) above the stated level
    assert abs(covered - achieved) <= 3.5 * _se(achieved), (covered, achieved)


@pytest.mark.parametrize("n", SEEDS)
@pytest.mark.parametrize("name", [*DISTS, "adversarial"])
def test_iqm_interval_reaches_its_level(name, n):
    rng = np.random.default_rng(54321 + n)
    if name == "adversarial":
        ppf, samples = _adversarial_ppf, _adversarial_ppf(rng.random((REPS, n)))
    else:
        ppf, samples = DISTS[name].ppf, DISTS[name].rvs(size=(REPS, n), random_state=rng)
    truth = quad(ppf, 0.25, 0.75, points=[0.74], limit=200)[0] / 0.5
    covered, achieved = _coverage(iqm_interval, samples, truth)
    assert covered >= achieved - 3 * _se(achieved), (covered, achieved)


def test_median_interval_achieved_levels():
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0, 0.75)
    assert median_interval(np.arange(5.0))[2] == 0.9375
    assert median_interval(np.arange(6.0)) == (0.0, 5.0, 0.96875)
    x = np.arange(1.0, 11.0)[::-1]
    assert median_interval(x) == (2.0, 9.0, 0.978515625) == (2.0, 9.0, 1 - 22 / 1024)
    assert median_interval(x, level=0.8) == (3.0, 8.0, median_coverage(10, 3))
    assert median_coverage(10, 3) == 1 - 2 * 56 / 1024
    assert median_interval([1.0, 2.0, np.inf])[1] == np.inf
    assert all(math.isnan(v) for v in median_interval([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        median_interval([1.0, math.nan, 2.0])


def test_iqm_interval_guarantees():
    x = np.arange(1.0, 21.0)
    lo, hi, achieved = iqm_interval(x)
    assert (lo, hi) == (2.0, 19.0)
    assert achieved == pytest.approx(1 - stats.binom.cdf(1, 20, 0.25) - stats.binom.sf(18, 20, 0.25))
    assert iqm_interval(x[:10]) == (1.0, 10.0, pytest.approx(1 - 0.75**10 - 0.25**10))
    assert iqm_interval(x[:3])[2] == pytest.approx(0.5625)
    assert iqm_coverage(20, 3) < 0.95 <= iqm_coverage(20, 2)
    # the guarantee is the worst case over where the IQM falls in [q25, q75], i.e. at u = 1/4
    u = np.linspace(0.25, 0.75, 101)
    assert np.all(stats.binom.cdf(18, 20, u) - stats.binom.cdf(1, 20, u) >= iqm_coverage(20, 2) - 1e-12)


def test_iqm_matches_rliable_and_handles_inf():
    rng = np.random.default_rng(0)
    for n in (3, 4, 5, 10, 17):
        x = rng.lognormal(size=n)
        assert iqm(x) == pytest.approx(stats.trim_mean(x, 0.25))
    assert iqm([1.0, 2.0, 3.0, np.inf]) == 2.5  # one inf of four is cut
    assert iqm([1.0, 2.0, np.inf, np.inf]) == np.inf
    assert iqm([1.0, 2.0, np.inf]) == np.inf  # n=3 cuts nothing
    assert np.allclose(iqm(np.arange(20.0).reshape(2, 10)), [4.5, 14.5])


def test_percentile_bootstrap_of_median_undercovers_at_three_seeds():
    """Why the order-statistic interval: a 95% percentile bootstrap at n=3 is [min, max], 75% coverage."""
    rng = np.random.default_rng(7)
    reps, boots, n = 2000, 400, 3
    x = rng.lognormal(size=(reps, n))
    resamples = np.take_along_axis(x[:, None, :], rng.integers(0, n, (reps, boots, n)), axis=-1)
    lo, hi = np.quantile(np.median(resamples, axis=-1), [0.025, 0.975], axis=1)
    covered = np.mean((lo <= 1.0) & (1.0 <= hi))
    assert covered < 0.95 - 5 * math.sqrt(0.95 * 0.05 / reps), covered


def test_sign_test_exact_p_values():
    r = sign_test([1.0] * 9 + [2.0], [2.0] * 9 + [1.0])
    assert r == dict(wins=9, losses=1, ties=0, n=10, p_value=22 / 1024)
    r = sign_test([1.0] * 9 + [2.0] + [5.0] * 5, [2.0] * 9 + [1.0] + [5.0] * 5)
    assert (r["ties"], r["n"], r["p_value"]) == (5, 15, 22 / 1024)
    assert sign_test([2.0] * 6, [1.0] * 6)["p_value"] == 2 / 64
    r = sign_test_outcomes([1] * 7 + [-1] * 3)
    assert r["p_value"] == pytest.approx(2 * (1 + 10 + 45 + 120) / 1024)
    assert sign_test([3.0, 3.0], [3.0, 3.0])["p_value"] == 1.0
    with pytest.raises(ValueError):
        sign_test_outcomes([1, 2])


def test_sign_test_ties_and_inf():
    inf = np.inf
    assert list(pair_outcomes([inf, inf, 1.0, 2.0], [inf, 2.0, inf, 1.0])) == [0, -1, 1, -1]
    assert list(pair_outcomes([-1e-3, 0.0], [0.0, -5.0])) == [0, 0]  # both solved (<= 0)
    assert list(pair_outcomes([-1e-3, 0.0], [0.0, -5.0], solved=None)) == [1, -1]
    assert list(pair_outcomes([1e-7], [2e-7], solved=1e-6)) == [0]
    assert list(pair_outcomes([1.0001, 1.01], [1.0002, 1.02], digits=3)) == [0, 1]
    assert list(pair_outcomes([1.0001], [1.0002])) == [1]
    ab, ba = sign_test([1.0, 2.0, 3.0], [2.0, 2.0, 4.0]), sign_test([2.0, 2.0, 4.0], [1.0, 2.0, 3.0])
    assert (ab["wins"], ab["losses"], ab["p_value"]) == (ba["losses"], ba["wins"], ba["p_value"])
    with pytest.raises(ValueError):
        sign_test([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError):
        sign_test([1.0, 2.0], [1.0])


def test_holm():
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm([0.01, 0.02, 0.03]), [0.03, 0.04, 0.04])  # step-down stays monotone
    assert np.allclose(holm([0.5, 0.6]), [1.0, 1.0])
    out = holm([0.02, math.nan, 0.01])
    assert math.isnan(out[1]) and np.allclose(out[[0, 2]], [0.02, 0.02])


def test_win_probability_clopper_pearson():
    assert win_probability(9, 1) == pytest.approx((0.9, 0.554984, 0.975**0.1), abs=1e-6)
    assert win_probability(0, 10) == pytest.approx((0.0, 0.0, 1 - 0.025**0.1), abs=1e-9)
    assert win_probability(5, 5) == pytest.approx((0.5, 0.187086, 0.812914), abs=1e-6)
    assert win_probability(9, 1, level=0.9)[1] == pytest.approx(stats.beta.ppf(0.05, 9, 2))
    assert all(math.isnan(v) for v in win_probability(0, 0))
