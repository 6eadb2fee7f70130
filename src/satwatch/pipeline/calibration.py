"""Per-channel calibration: detector thresholds and training statistics, fitted at build time.

Each channel has, for each detector (score1 first):

- a :class:`Threshold` for the ``ratio`` policy: the score at which the detector calls a step
  anomalous and a typical (median) training score, its baseline;
- its training scores' median and standard deviation (the ``dynamic`` policy's z-scores,
  :func:`fused_z`), and for each number of fused scores the floor of the smoothed fused
  training z (:func:`training_statistics`).

:class:`ChannelThresholds` holds one channel's entry; :func:`select_thresholds` picks the
thresholds of one request. The file that ships them is :mod:`satwatch.pipeline.calibration_file`.

Example::

    entry = training_statistics([omni_train, tranad_train], ratio, settings.dynamic)
    thresholds = select_thresholds({"E-1": entry}, count=2, channel="E-1", dynamic=True)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from satwatch.exceptions import DataError
from satwatch.pipeline.dynamic_threshold import DynamicSettings, ewma
from satwatch.pipeline.fusion import fuse

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Threshold:
    """One detector's threshold for one channel.

    Attributes:
        threshold: Score at which the detector calls a step anomalous.
        baseline: A typical (median) training score; 0 means plain division.
    """

    threshold: float
    baseline: float = 0.0

    def ratio(self, scores: np.ndarray) -> np.ndarray:
        """Return float32 ``(scores - baseline) / (threshold - baseline)``."""
        # In float32 from float32-rounded values: thresholds sent as an FP32 tensor then give
        # the same bits as the ones read from the JSON file.
        threshold, baseline = np.float32(self.threshold), np.float32(self.baseline)
        span = np.float32(threshold - baseline)
        if not np.isfinite(span) or span <= 0:
            raise DataError(
                f"threshold {self.threshold!r}: expected above its baseline {self.baseline!r}"
            )
        return ((np.asarray(scores, np.float32) - baseline) / span).astype(np.float32)


def thresholds_from_array(values: np.ndarray, count: int) -> list[Threshold]:
    """Read thresholds from a request tensor: ``count`` thresholds, or ``count`` pairs.

    Raises:
        DataError: For another length.
    """
    flat = np.asarray(values, np.float64).reshape(-1)
    if flat.size == count:
        return [Threshold(float(v)) for v in flat]
    if flat.size == 2 * count:
        return [Threshold(float(t), float(b)) for t, b in flat.reshape(count, 2)]
    raise DataError(
        f"thresholds: expected {count} values (threshold per score) or {2 * count} "
        f"(threshold, baseline pairs), got {flat.size}"
    )


def fused_z(
    scores: Sequence[np.ndarray],
    scales: Sequence[Threshold],
    power: float = 1.0,
    weights: Sequence[float] = (),
) -> np.ndarray:
    """``max`` over detectors of ``weight * max(0, (score - median) / std) ** power``, float32.

    ``scales`` are ``Threshold(median + std, median)`` of each detector's training scores;
    ``weights`` one per score (empty: all 1). A ``power`` below 1 compresses the z-scores'
    long tail, so that one detector's extreme step does not stretch the dynamic threshold's
    window statistics over every other step; a weight below 1 lets a detector raise an alarm
    only with a larger z than the others need.
    """
    if len(scales) < len(scores):
        raise DataError(
            f"dynamic policy: expected training statistics for {len(scores)} scores, "
            f"got {len(scales)}"
        )
    if weights and len(weights) < len(scores):
        raise DataError(
            f"dynamic policy: expected a fusion weight for each of {len(scores)} scores, "
            f"got {len(weights)}"
        )
    pairs = zip(scores, scales[: len(scores)], strict=True)
    z = [np.maximum(t.ratio(np.asarray(s).reshape(-1)), 0) for s, t in pairs]
    if power != 1.0:
        z = [np.power(values, np.float32(power)) for values in z]
    if weights:
        z = [values * np.float32(w) for values, w in zip(z, weights, strict=False)]
    return fuse(z, "max")


@dataclass(frozen=True)
class ChannelThresholds(Sequence[Threshold]):
    """One channel's entry of ``thresholds.json``; as a sequence, its ratio thresholds.

    Attributes:
        ratio: Each detector's threshold and baseline (``ratio`` policy), score1 first.
        scales: ``Threshold(median + std, median)`` of each detector's training scores, so
            ``ratio`` gives the training z-score (``dynamic`` policy); empty if unknown.
        floors: ``floors[k - 1]``: the floor (``min_score``) of the smoothed fused z when the
            first ``k`` scores are fused (fitted on the channel's training scores by the
            ``floor`` rule of the dynamic settings).
        weights: Each score's fusion weight (its detector kind's ``z_weights``), the ones the
            floors were fitted with; empty: all 1.
        frozen_limit: The run of an unchanged telemetry value beyond which a step is
            anomalous by itself (:mod:`satwatch.pipeline.stuck`); ``inf``: never.
    """

    ratio: tuple[Threshold, ...]
    scales: tuple[Threshold, ...] = ()
    floors: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()
    frozen_limit: float = float("inf")

    def __getitem__(self, index):  # noqa: ANN001, ANN204  (int or slice, as a tuple)
        return self.ratio[index]

    def __len__(self) -> int:
        return len(self.ratio)

    def __iter__(self) -> Iterator[Threshold]:
        return iter(self.ratio)

    def head(self, count: int) -> ChannelThresholds:
        """The entry for the first ``count`` scores."""
        return ChannelThresholds(
            self.ratio[:count],
            self.scales[:count],
            self.floors,
            self.weights[:count],
            self.frozen_limit,
        )

    def floor_for(self, count: int) -> float:
        """The floor when ``count`` scores are fused.

        Raises:
            DataError: If the file holds none for that count.
        """
        if not 1 <= count <= len(self.floors):
            raise DataError(
                f"dynamic policy: expected a training floor for {count} fused scores, "
                f"got floors for 1..{len(self.floors)}"
            )
        return float(self.floors[count - 1])


def training_statistics(
    train_scores: Sequence[np.ndarray],
    ratio: Sequence[Threshold],
    dynamic: DynamicSettings,
    kinds: Sequence[str] = (),
) -> ChannelThresholds:
    """A channel's entry from its detectors' scores on the training split (score1 first).

    ``kinds`` names each score's detector kind, whose weight (``dynamic.z_weights``) the
    entry keeps; without them every score weighs 1. Medians and standard deviations give the
    z-scores; the floor for ``k`` fused scores comes from the EWMA-smoothed fused training z
    (weighted), computed exactly as the served stage smooths, by
    ``dynamic.floor``: its maximum (``max``) or its POT threshold (``pot``: risk 1e-3, initial
    level 0.98).
    """
    # Build-time only: the served postprocessing model never pays for scipy's import.
    from satwatch.detectors.thresholds import pot_threshold

    scales = []
    for scores in train_scores:
        values = np.asarray(scores, np.float64).reshape(-1)
        median, std = float(np.median(values)), float(np.std(values))
        # A constant training score: a tiny positive spread still representable next to it.
        std = max(std, 1e-6 * max(1.0, abs(median)))
        scales.append(Threshold(median + std, median))
    if kinds and len(kinds) != len(train_scores):
        raise DataError(
            f"training statistics: expected a kind for each of {len(train_scores)} scores, "
            f"got {len(kinds)}"
        )
    weights = tuple(dynamic.weight_of(kind) for kind in kinds)
    floors = []
    for count in range(1, len(train_scores) + 1):
        fused = fused_z(train_scores[:count], scales[:count], dynamic.z_power, weights)
        smoothed = ewma(fused, dynamic.span)[1]
        floor = smoothed.max() if dynamic.floor == "max" else pot_threshold(smoothed)
        floors.append(float(floor))
    return ChannelThresholds(tuple(ratio), tuple(scales), tuple(floors), weights)


def select_thresholds(
    table: Mapping[str, ChannelThresholds],
    count: int,
    channel: str | None = None,
    given: np.ndarray | None = None,
    dynamic: bool = False,
) -> Sequence[Threshold]:
    """The thresholds of one request of ``count`` scores.

    ``ratio`` policy: the ``given`` tensor (see :func:`thresholds_from_array`) or else the
    channel's. ``dynamic``: the channel's entry, which holds its training statistics; the
    channel travels with the request (``channel_id``), never guessed from the thresholds.

    Raises:
        DataError: For an unknown channel, or no channel (dynamic).
    """
    if given is not None and not dynamic:
        return thresholds_from_array(given, count)
    if channel is None:
        raise DataError(
            "threshold_policy dynamic: expected channel_id, the channel whose training "
            "statistics apply, got none"
        )
    if channel not in table:
        known = ", ".join(sorted(table)) or "none"
        raise DataError(f"unknown channel {channel!r}: thresholds exist for {known}")
    entry = table[channel]
    if len(entry) < count:
        raise DataError(
            f"channel {channel!r}: expected thresholds for {count} scores, got {len(entry)}"
        )
    return entry.head(count)
