"""Anomaly-score thresholds from extreme-value theory: peaks over threshold (POT).

Siffer, Fouque, Termier, Largouët, "Anomaly Detection in Streams with Extreme Value Theory"
(KDD 2017). The excesses of the scores over a high initial threshold ``t`` follow a
generalized Pareto distribution (GPD) with shape ``gamma`` and scale ``sigma``; the score
exceeded with probability ``risk`` is then::

    z = t + sigma / gamma * ((risk * n / n_peaks) ** -gamma - 1)    (gamma != 0)
    z = t - sigma * log(risk * n / n_peaks)                         (gamma -> 0, exponential)

The GPD is fitted by maximum likelihood through Grimshaw's reduction to one variable
``x = gamma / sigma``: for a given ``x`` the best ``gamma`` is ``mean(log(1 + x * Y))``, which
leaves a profile log-likelihood in ``x`` whose interior maxima are the candidate fits; the
exponential fit (``x -> 0``) is always a candidate. Usage::

    threshold = pot_threshold(train_scores, risk=1e-3, init_level=0.98)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from satwatch.exceptions import ModelError

LOGGER = logging.getLogger(__name__)

MIN_PEAKS = 10
"""Fewer excesses than this make the GPD fit meaningless: use the empirical quantile."""

_GRID = 64
"""Grid points per sign of ``x`` on which the profile likelihood is scanned for maxima."""


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


def _profile(x: float, peaks: np.ndarray) -> tuple[float, float, float]:
    """Return ``(log-likelihood, gamma, sigma)`` of the best GPD with ``gamma / sigma = x``."""
    logs = np.log1p(x * peaks)
    gamma = float(logs.mean())
    sigma = gamma / x
    n = peaks.size
    if not np.isfinite(gamma) or gamma == 0.0 or sigma <= 0.0:
        return -np.inf, gamma, sigma
    # sum(log(1 + x*Y)) = n * gamma turns -(1 + 1/gamma) * sum(...) into -n * (1 + gamma).
    return -n * np.log(sigma) - n * (1.0 + gamma), gamma, sigma


def _profile_grid(grid: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Profile log-likelihood of :func:`_profile` at many ``x`` at once (-inf where invalid)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.log1p(grid[:, None] * peaks[None, :]).mean(axis=1)
        sigma = gamma / grid
        values = -peaks.size * (np.log(sigma) + 1.0 + gamma)
    return np.where(np.isfinite(values) & (sigma > 0) & (gamma != 0), values, -np.inf)


def fit_gpd(peaks: np.ndarray) -> GpdFit:
    """Maximum-likelihood GPD fit of positive excesses (Grimshaw's one-variable reduction).

    Args:
        peaks: Excesses over the initial threshold, all > 0.

    Returns:
        The fit with the highest likelihood among the exponential and every interior
        maximum of the profile likelihood.
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    mean, low, high = float(peaks.mean()), float(peaks.min()), float(peaks.max())
    best = GpdFit(0.0, mean, -peaks.size * (np.log(mean) + 1.0))
    if high - low <= 1e-12 * max(high, 1.0):
        return best  # all excesses equal: nothing to shape
    # gamma = -1 is the uniform on [0, max(Y)]: the bounded-tail edge of the family, where a
    # bounded score (e.g. uniform) puts its maximum since no interior maximum exists there.
    uniform = GpdFit(-1.0, high, -peaks.size * np.log(high))
    if uniform.log_likelihood > best.log_likelihood:
        best = uniform
    # x must keep 1 + x * Y > 0: x > -1 / max(Y). Grimshaw's bound caps the positive side.
    upper = 2.0 * (mean - low) / (low * low) if low > 0 else 1e6 / mean
    # Dense at both ends of (-1/max(Y), 0): strongly bounded tails (gamma near -1) put their
    # maximum within a hair of -1/max(Y).
    fractions = np.concatenate(
        [np.geomspace(1e-6, 0.5, _GRID), 1.0 - np.geomspace(0.5, 1e-12, _GRID)]
    )
    negative = -np.unique(fractions) / high
    positive = np.geomspace(1e-6 / high, max(upper, 1e-5 / high), _GRID)
    for grid in (negative[::-1], positive):
        values = _profile_grid(grid, peaks)
        # interior local maxima only: the likelihood grows without bound towards x = -1/max(Y)
        # when gamma < -1, and that edge is no fit (Grimshaw keeps roots of the score equation).
        inner = values[1:-1]
        peaks_at = (
            np.flatnonzero(np.isfinite(inner) & (inner > values[:-2]) & (inner >= values[2:])) + 1
        )
        for i in peaks_at:
            res = minimize_scalar(
                lambda x: -_profile(x, peaks)[0],
                bounds=(min(grid[i - 1], grid[i + 1]), max(grid[i - 1], grid[i + 1])),
                method="bounded",
                options={"xatol": 1e-9 / high},
            )
            loglik, gamma, sigma = _profile(float(res.x), peaks)
            if loglik > best.log_likelihood:
                best = GpdFit(gamma, sigma, loglik)
    return best


def pot_quantile(t: float, fit: GpdFit, risk: float, n: int, n_peaks: int) -> float:
    """The score exceeded with probability ``risk`` under the fitted tail."""
    ratio = risk * n / n_peaks
    if abs(fit.gamma) < 1e-9:
        return float(t - fit.sigma * np.log(ratio))
    return float(t + fit.sigma / fit.gamma * (ratio ** (-fit.gamma) - 1.0))


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
