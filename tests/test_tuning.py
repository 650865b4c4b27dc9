"""The tuning budget (harness/tuning.py) against brute force: every k-subset of the trials enumerated."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness import tuning


def brute(reported: list[float], k: int) -> list[float]:
    """The reported value of the chosen trial (the first in tuning order) of every k-subset."""
    return [reported[min(s)] for s in itertools.combinations(range(len(reported)), k)]


CASES = {
    "distinct": [0.3, 0.1, 0.5, 0.2, 0.9],
    "ties and a better one later": [2.0, 2.0, 1.0, 3.0, 3.0, 0.5],
    "one trial": [4.0],
    "seven": list(np.random.default_rng(1).normal(size=7)),
}


@pytest.mark.parametrize("reported", CASES.values(), ids=CASES.keys())
def test_expected_best_of_k_is_the_mean_over_every_subset(reported):
    curve = tuning.expected_best(np.array(reported))
    for k in range(1, len(reported) + 1):
        assert curve[k - 1] == pytest.approx(np.mean(brute(reported, k)), rel=1e-12, abs=1e-12)
    assert curve[-1] == reported[0]  # all trials: the first in tuning order


def test_a_diverged_trial_makes_the_expectation_infinite_while_some_subset_holds_only_it():
    reported = [0.1, 0.2, math.inf, math.inf]
    curve = tuning.expected_best(np.array(reported))
    for k in range(1, 5):
        subsets = brute(reported, k)
        assert (curve[k - 1] == math.inf) == (math.inf in subsets)
        if math.isfinite(curve[k - 1]):
            assert curve[k - 1] == pytest.approx(np.mean(subsets))


@pytest.mark.parametrize("reported", [CASES["distinct"], CASES["ties and a better one later"], CASES["seven"]])
def test_algoperf_is_the_median_over_studies_of_five(reported):
    studies = sorted(brute(reported, tuning.STUDY))
    assert tuning.median_best_of(np.array(reported), tuning.STUDY) == studies[(len(studies) - 1) // 2]


def test_band_brackets_the_curve_and_is_seeded():
    reported = np.array(CASES["seven"])
    lo, hi = tuning.band(reported, resamples=400)
    curve = tuning.expected_best(reported)
    assert np.all(lo <= hi)
    assert np.mean((lo <= curve) & (curve <= hi)) >= 0.8
    lo2, hi2 = tuning.band(reported, resamples=400)
    assert np.array_equal(lo, lo2) and np.array_equal(hi, hi2)


def test_defaults_come_from_the_optimizer_configs():
    assert (
        tuning.default_lr("adam") == 0.001
        and tuning.default_lr("adagrad") == 0.01
        and tuning.default_lr("nope") is None
    )
