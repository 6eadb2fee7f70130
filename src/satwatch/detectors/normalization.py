"""Per-channel min-max normalisation fitted on training telemetry (as OmniAnomaly does).

Each feature is mapped with ``(x - minimum) / scale`` where ``scale`` is the training range;
a feature that is constant in training (A-1's telemetry value, every command never issued)
gets ``scale = 1`` so it becomes ``x - minimum``: zero while it stays put, and a deviation of
its own size when it moves, never a division by zero. Normalised values are clipped to
``[-clip, clip]`` so one wild test value cannot dominate a score.

Usage::

    stats = Normalisation.fit(channel.train)
    train = stats.apply(channel.train)           # float32 (T, F)
    card["normalisation"] = stats.to_dict()      # JSON
    Normalisation.from_dict(card["normalisation"]).apply(channel.test)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

CONSTANT_SPAN = 1e-8
"""A training range at or below this counts as constant."""

DEFAULT_CLIP = 5.0


@dataclass(frozen=True)
class Normalisation:
    """Min-max statistics of one channel: ``(x - minimum) / scale``, clipped to ``±clip``.

    Attributes:
        minimum: per-feature training minimum, ``(F,)``.
        scale: per-feature training range, 1 where the feature is constant, ``(F,)``.
        clip: bound on the absolute normalised value.
    """

    minimum: np.ndarray
    scale: np.ndarray
    clip: float = DEFAULT_CLIP

    @classmethod
    def fit(cls, train: np.ndarray, clip: float = DEFAULT_CLIP) -> Normalisation:
        """Fit the statistics on one channel's raw training series ``(T, F)``."""
        if train.ndim != 2 or train.shape[0] < 1:
            raise DataError(f"normalisation: expected a (T, F) training array, got {train.shape}")
        if not np.isfinite(train).all():
            raise DataError("normalisation: the training series holds NaN or Inf values")
        data = train.astype(np.float64)
        minimum = data.min(axis=0)
        span = data.max(axis=0) - minimum
        scale = np.where(span > CONSTANT_SPAN, span, 1.0)
        return cls(minimum=minimum, scale=scale, clip=float(clip))

    @property
    def n_features(self) -> int:
        """Number of features the statistics were fitted on."""
        return int(self.minimum.shape[0])

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Normalise raw telemetry ``(T, F)`` -> float32 ``(T, F)``."""
        if raw.ndim != 2 or raw.shape[1] != self.n_features:
            raise DataError(
                f"normalisation: expected a (T, {self.n_features}) array, got {raw.shape}"
            )
        out = (raw.astype(np.float64) - self.minimum) / self.scale
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-serialisable form (for the model card)."""
        return {
            "method": "minmax",
            "minimum": self.minimum.tolist(),
            "scale": self.scale.tolist(),
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Normalisation:
        """Inverse of :meth:`to_dict`."""
        if data.get("method") != "minmax":
            raise DataError(f"normalisation: expected method 'minmax', got {data.get('method')!r}")
        return cls(
            minimum=np.asarray(data["minimum"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            clip=float(data["clip"]),
        )
