"""POT thresholds on scores with known tails."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import stats

from satwatch.detectors import thresholds
from satwatch.detectors.thresholds import GpdFit, fit_gpd, fit_pot, pot_quantile, pot_threshold
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


@pytest.mark.parametrize("seed", [3, 4, 9, 16])
def test_pot_on_bounded_uniform_scores_stays_below_the_bound(seed: int) -> None:
    # scipy's own fit of these excesses has a shape below -1 (unbounded likelihood): the
    # fit must land on the gamma = -1 edge, not on the exponential, whose threshold is > 1.
    scores = np.random.default_rng(seed).random(10_000)
    fit = fit_pot(scores, risk=RISK)
    assert -1.0 <= fit.gamma < -0.85
    assert fit.threshold <= scores.max()
    assert fit.threshold == pytest.approx(1 - RISK, abs=2e-3)


@pytest.mark.parametrize("shape", [0.3, 1.0, -0.3, -0.8])
def test_fit_gpd_recovers_a_known_gpd_sample(shape: float) -> None:
    peaks = stats.genpareto.rvs(shape, scale=2.0, size=2_000, random_state=4)
    fit = fit_gpd(peaks)
    assert fit.gamma == pytest.approx(shape, abs=0.05)
    assert fit.sigma == pytest.approx(2.0, rel=0.05)
    assert fit.log_likelihood == pytest.approx(
        stats.genpareto.logpdf(peaks, fit.gamma, 0, fit.sigma).sum()
    )


@pytest.mark.parametrize("scale", [1e-12, 1e6])
def test_fit_gpd_does_not_depend_on_the_unit_of_the_scores(scale: float) -> None:
    # Unscaled, scipy's optimiser stops at gamma 1.17 instead of 0.41 on the 1e-12 excesses.
    peaks = stats.genpareto.rvs(0.55, size=200, random_state=7)
    unit, scaled = fit_gpd(peaks), fit_gpd(peaks * scale)
    assert scaled.gamma == pytest.approx(unit.gamma, abs=1e-3)
    assert scaled.sigma == pytest.approx(unit.sigma * scale, rel=1e-3)


@pytest.mark.parametrize("gamma", [0.0, 1e-12, 1e-7, -1e-7])
def test_pot_quantile_near_zero_shape_is_the_exponential_quantile(gamma: float) -> None:
    fit = GpdFit(gamma, 2.0, 0.0)
    expected = 1.0 - 2.0 * np.log(RISK * 10_000 / 200)
    assert pot_quantile(1.0, fit, RISK, 10_000, 200) == pytest.approx(expected, rel=1e-6)


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


def test_equal_peaks_give_the_exponential_fit() -> None:
    scores = np.concatenate([np.zeros(980), np.ones(20)])  # t = 0.02, 20 peaks of 0.98
    fit = fit_pot(scores, risk=RISK)
    assert not fit.fallback and fit.n_peaks == 20
    assert (fit.gamma, fit.sigma) == (0.0, pytest.approx(0.98))
    assert fit.threshold == pytest.approx(0.02 + 0.98 * np.log(20 / (RISK * 1000)))


def _failing_fit(*args: object, **kwargs: object) -> tuple[float, float, float]:
    raise RuntimeError("optimizer did not converge")


@pytest.mark.parametrize(
    "scipy_fit",
    [
        pytest.param(_failing_fit, id="raises"),
        pytest.param(lambda *a, **k: (np.nan, 0.0, 1.0), id="nan-shape"),
        pytest.param(lambda *a, **k: (0.1, 0.0, np.inf), id="inf-scale"),
        pytest.param(lambda *a, **k: (-0.5, 0.0, 1e-3), id="support-misses-peaks"),
    ],
)
def test_unusable_scipy_fit_falls_back_to_the_exponential(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, scipy_fit
) -> None:
    monkeypatch.setattr(thresholds.stats.genpareto, "fit", scipy_fit)
    scores = np.random.default_rng(6).exponential(size=20_000)
    with caplog.at_level(logging.WARNING, logger=thresholds.__name__):
        fit = fit_pot(scores, risk=RISK)
    assert fit.gamma == 0.0 and not fit.fallback
    assert np.isfinite(fit.threshold)
    assert fit.threshold == pytest.approx(-np.log(RISK), rel=0.05)
    assert "exponential" in caplog.text


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ModelError, match="1 NaN/inf of 3"):
        pot_threshold(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ModelError, match="empty"):
        pot_threshold(np.array([]))


@pytest.mark.parametrize(("risk", "level"), [(0.0, 0.98), (1.0, 0.98), (1e-3, 1.0)])
def test_parameters_outside_unit_interval_are_refused(risk: float, level: float) -> None:
    with pytest.raises(ValueError, match="must be in"):
        pot_threshold(np.ones(10), risk=risk, init_level=level)
