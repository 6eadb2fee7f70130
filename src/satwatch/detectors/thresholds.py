"""Anomaly-score thresholds from extreme-value theory: peaks over threshold (POT).

Siffer, Fouque, Termier, Largouët, "Anomaly Detection in Streams with Extreme Value Theory"
(KDD 2017). The excesses of the scores over a high initial threshold ``t`` follow a
generalized Pareto distribution (GPD) with shape ``gamma`` and scale ``sigma``; the score
exceeded with probability ``risk`` is then::

    z = t + sigma / gamma * ((risk * n / n_peaks) ** -gamma - 1)    (gamma != 0)
    z = t - sigma * log(risk * n / n_peaks)                         (gamma -> 0, exponential)

The GPD is fitted by maximum likelihood with ``scipy.stats.genpareto.fit`` (location fixed at
0; scipy's shape ``c`` is ``gamma``, its ``scale`` is ``sigma``). A shape below -1, where the
likelihood has no maximum, becomes the bounded-tail edge ``gamma = -1`` (uniform excesses).
Where scipy's fit cannot be used (all excesses equal, scipy raising or returning non-finite
values, or a fit less likely than the exponential) the exponential ``gamma = 0, sigma = mean
excess`` is used instead; with too few excesses the threshold is the empirical quantile::

    threshold = pot_threshold(train_scores, risk=1e-3, init_level=0.98)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import stats

from satwatch.exceptions import ModelError

LOGGER = logging.getLogger(__name__)

MIN_PEAKS = 10
"""Fewer excesses than this make the GPD fit meaningless: use the empirical quantile."""


@dataclass(frozen=True)
class GpdFit:
    """Generalized Pareto parameters of the excesses (``gamma`` 0 = exponential)."""

    gamma: float
    sigma: float
    log_likelihood: float


@dataclass(frozen=True)
class PotFit:
    """Result of a POT fit; ``fallback`` is True when too few peaks forced the quantile."""

    threshold: float
    init_threshold: float
    gamma: float
    sigma: float
    n: int
    n_peaks: int
    risk: float
    fallback: bool


def _check_params(risk: float, init_level: float) -> None:
    if not 0.0 < risk < 1.0:
        raise ValueError(f"risk must be in (0, 1); got {risk}")
    if not 0.0 < init_level < 1.0:
        raise ValueError(f"init_level must be in (0, 1); got {init_level}")


def _as_scores(scores: np.ndarray) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ModelError("cannot fit a threshold on an empty score series")
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ModelError(
            f"anomaly scores must be finite to fit a threshold; got {bad} NaN/inf of {values.size}"
        )
    return values


def _exponential(peaks: np.ndarray) -> GpdFit:
    """The maximum-likelihood exponential (``gamma = 0``): ``sigma`` is the mean excess."""
    mean = float(peaks.mean())
    return GpdFit(0.0, mean, -peaks.size * (np.log(mean) + 1.0))


def _scipy_fit(peaks: np.ndarray, mean: float) -> GpdFit | None:
    """``scipy.stats.genpareto.fit`` of the excesses, or None where its answer is unusable."""
    # The excesses are divided by their mean before fitting: scipy's optimiser (Nelder-Mead)
    # uses absolute tolerances and can stop at a wrong shape on tiny excesses (OmniAnomaly's
    # fitted scales go down to 1e-7; at 1e-12 a GPD sample of shape 0.41 came out as 1.17).
    # The GPD is a scale family, so the fitted scale is simply multiplied back.
    try:
        gamma, _, scale = stats.genpareto.fit(peaks / mean, floc=0)
    except (ValueError, RuntimeError) as exc:  # scipy's FitError is a RuntimeError
        LOGGER.warning("POT: scipy's GPD fit of %d peaks failed (%s)", peaks.size, exc)
        return None
    gamma, sigma = float(gamma), float(scale) * mean
    if not (np.isfinite(gamma) and np.isfinite(sigma) and sigma > 0):
        LOGGER.warning("POT: scipy's GPD fit is not finite (gamma %s, sigma %s)", gamma, sigma)
        return None
    if gamma < -1.0:
        # Below gamma = -1 the likelihood is unbounded (the density is infinite at the upper
        # end of the support, which the optimiser slides onto max(Y)): no maximum exists there
        # and scipy's answer is wherever it stopped. Bounded scores (uniform-like tails) get
        # the edge of the regular family instead: gamma = -1, the uniform on [0, max(Y)].
        high = float(peaks.max())
        return GpdFit(-1.0, high, -peaks.size * np.log(high))
    with np.errstate(all="ignore"):
        loglik = float(stats.genpareto.logpdf(peaks, gamma, 0.0, sigma).sum())
    if not np.isfinite(loglik):  # a support that leaves out some excesses: no fit of them
        LOGGER.warning("POT: scipy's GPD fit has log-likelihood %s", loglik)
        return None
    return GpdFit(gamma, sigma, loglik)


def fit_gpd(peaks: np.ndarray) -> GpdFit:
    """Maximum-likelihood GPD fit of positive excesses with ``scipy.stats.genpareto.fit``.

    Args:
        peaks: Excesses over the initial threshold, all > 0.

    Returns:
        scipy's fit (``gamma`` at least -1), or the exponential fit where that is unusable:
        all excesses equal, scipy raising or returning non-finite values, or a fit less
        likely than the exponential.
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    exponential = _exponential(peaks)
    low, high = float(peaks.min()), float(peaks.max())
    if high - low <= 1e-12 * high:
        # All excesses equal: the likelihood has no maximum (it grows without bound as the
        # GPD shrinks to a point mass, gamma -> -inf), so there is no tail shape to fit.
        return exponential
    fitted = _scipy_fit(peaks, exponential.sigma)
    # The exponential MLE is closed-form and defined for any positive excesses, so it is the
    # fallback where scipy's fit is unusable (a threshold from NaN/inf parameters would be
    # meaningless). It also wins where the optimiser stopped at a fit less likely than it:
    # gamma = 0 lies inside scipy's search space, so it is a fair candidate.
    if fitted is None or fitted.log_likelihood < exponential.log_likelihood:
        if fitted is None:
            LOGGER.warning("POT: exponential tail fitted to %d peaks instead", peaks.size)
        return exponential
    return fitted


def pot_quantile(t: float, fit: GpdFit, risk: float, n: int, n_peaks: int) -> float:
    """The score exceeded with probability ``risk`` under the fitted tail."""
    log_ratio = float(np.log(risk * n / n_peaks))
    if abs(fit.gamma) < 1e-9:
        return float(t - fit.sigma * log_ratio)
    # (ratio ** -gamma - 1) / gamma through expm1: exact as gamma -> 0, where the plain
    # formula loses every digit to cancellation and the exponential limit takes over.
    return float(t + fit.sigma * np.expm1(-fit.gamma * log_ratio) / fit.gamma)


def fit_pot(scores: np.ndarray, risk: float = 1e-3, init_level: float = 0.98) -> PotFit:
    """Peaks-over-threshold fit of a score series.

    Args:
        scores: Calibration scores (e.g. the training scores), any shape, finite.
        risk: Probability that a normal score exceeds the returned threshold.
        init_level: Quantile of the scores used as the initial threshold ``t``.

    Returns:
        The fit; ``threshold`` is ``z``. With fewer than ``MIN_PEAKS`` excesses over ``t``
        the threshold is the empirical ``1 - risk`` quantile instead (``fallback`` True).

    Raises:
        ValueError: ``risk`` or ``init_level`` outside (0, 1).
        ModelError: Empty or non-finite scores.
    """
    _check_params(risk, init_level)
    values = _as_scores(scores)
    t = float(np.quantile(values, init_level))
    peaks = values[values > t] - t
    if peaks.size < MIN_PEAKS:
        z = float(np.quantile(values, 1.0 - risk))
        LOGGER.warning(
            "POT: only %d peaks over the %.3g quantile of %d scores (need %d); "
            "threshold = empirical %.3g quantile %.6g",
            peaks.size, init_level, values.size, MIN_PEAKS, 1.0 - risk, z,
        )  # fmt: skip
        return PotFit(z, t, 0.0, 0.0, values.size, int(peaks.size), risk, True)
    fit = fit_gpd(peaks)
    z = pot_quantile(t, fit, risk, values.size, peaks.size)
    return PotFit(z, t, fit.gamma, fit.sigma, values.size, int(peaks.size), risk, False)


def pot_threshold(scores: np.ndarray, risk: float = 1e-3, init_level: float = 0.98) -> float:
    """Threshold that normal scores exceed with probability ``risk`` (see :func:`fit_pot`)."""
    return fit_pot(scores, risk=risk, init_level=init_level).threshold
