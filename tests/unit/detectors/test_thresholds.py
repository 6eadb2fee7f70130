"""POT thresholds on scores with known tails."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from satwatch.detectors.thresholds import fit_gpd, fit_pot, pot_threshold
from satwatch.exceptions import ModelError

RISK = 1e-3


def test_pot_on_exponential_scores_is_near_the_analytic_quantile() -> None:
    scores = np.random.default_rng(0).exponential(size=100_000)
    # P(X > z) = exp(-z) = risk  ->  z = -log(risk) = 6.908
    assert pot_threshold(scores, risk=RISK) == pytest.approx(-np.log(RISK), rel=0.05)


def test_pot_on_heavy_gpd_tail_recovers_shape_and_quantile() -> None:
    scores = stats.genpareto.rvs(0.2, size=100_000, random_state=1)
    fit = fit_pot(scores, risk=RISK)
    assert fit.gamma == pytest.approx(0.2, abs=0.07)
    assert fit.threshold == pytest.approx(stats.genpareto.ppf(1 - RISK, 0.2), rel=0.08)
    assert not fit.fallback


def test_pot_on_gaussian_scores_has_a_light_tail() -> None:
    scores = np.random.default_rng(2).normal(size=100_000)
    fit = fit_pot(scores, risk=RISK)
    assert fit.gamma < 0
    assert fit.threshold == pytest.approx(stats.norm.ppf(1 - RISK), rel=0.05)


def test_pot_on_bounded_uniform_scores_stays_below_the_bound() -> None:
    fit = fit_pot(np.random.default_rng(3).random(100_000), risk=RISK)
    assert fit.gamma < -0.9  # uniform: gamma = -1, the bounded-tail edge
    assert fit.threshold == pytest.approx(1 - RISK, abs=2e-3)


@pytest.mark.parametrize("shape", [0.3, 1.0, -0.3, -0.8])
def test_fit_gpd_matches_scipy_maximum_likelihood(shape: float) -> None:
    peaks = stats.genpareto.rvs(shape, scale=2.0, size=2_000, random_state=4)
    fit = fit_gpd(peaks)
    shape, _, scale = stats.genpareto.fit(peaks, floc=0)
    scipy_loglik = stats.genpareto.logpdf(peaks, shape, 0, scale).sum()
    assert fit.log_likelihood >= scipy_loglik - 1e-6
    assert fit.gamma == pytest.approx(shape, abs=0.01)
    assert fit.sigma == pytest.approx(scale, rel=0.01)


def test_pot_threshold_rises_as_risk_falls() -> None:
    scores = np.random.default_rng(5).exponential(size=20_000)
    assert pot_threshold(scores, risk=1e-2) < pot_threshold(scores, risk=1e-3)
    assert pot_threshold(scores, risk=1e-3) < pot_threshold(scores, risk=1e-5)


def test_too_few_peaks_fall_back_to_the_empirical_quantile() -> None:
    scores = np.arange(100, dtype=float)  # 98% quantile leaves 2 peaks
    fit = fit_pot(scores, risk=0.05)
    assert fit.fallback
    assert fit.threshold == pytest.approx(np.quantile(scores, 0.95))


def test_constant_scores_give_their_value() -> None:
    assert pot_threshold(np.full(1000, 0.25)) == pytest.approx(0.25)


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ModelError, match="1 NaN/inf of 3"):
        pot_threshold(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ModelError, match="empty"):
        pot_threshold(np.array([]))


@pytest.mark.parametrize(("risk", "level"), [(0.0, 0.98), (1.0, 0.98), (1e-3, 1.0)])
def test_parameters_outside_unit_interval_are_refused(risk: float, level: float) -> None:
    with pytest.raises(ValueError, match="must be in"):
        pot_threshold(np.ones(10), risk=risk, init_level=level)
