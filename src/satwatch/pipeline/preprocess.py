"""Preprocessing stage: raw telemetry -> per-channel normalised steps.

A row has its channel's width (25 features for SMAP, 55 for MSL, the data's own for another
spacecraft): the width of the training statistics, so a row of another width is refused
naming the channel, the width expected and the shape sent.

The statistics are the detectors' own (:class:`satwatch.detectors.normalization.Normalisation`,
fitted on each channel's training data); ``satwatch build`` writes them for every channel into
``python/preprocessing/1/normalisation.json`` as ``{channel: Normalisation.to_dict()}``.

NaN / Inf policy: **refuse**, the one rule of every served model
(:mod:`satwatch.tensor_checks`): a chunk holding a non-finite value is rejected with a
:class:`~satwatch.exceptions.DataError` naming the first bad row, the rows and the columns (the
Python model turns it into an ``INVALID_ARG`` error for that request only; the server keeps
serving). Imputing would change what the detectors see without the operator knowing, and the
recurrent state a stream carries would silently absorb made-up values; a telemetry gap is the
ground station's to fill, so the request is refused and the client decides (drop the rows,
fill, resend).

Example::

    table = NormalisationTable.load(folder / "normalisation.json")
    normalised = preprocess(raw, table.get("E-1"))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satwatch.detectors.normalization import Normalisation
from satwatch.exceptions import DataError
from satwatch.tensor_checks import check_tensor

LOGGER = logging.getLogger(__name__)

STATS_FILE = "normalisation.json"
"""File of per-channel statistics in ``python/preprocessing/<version>/``."""


def check_raw(raw: np.ndarray, features: int, channel: str | None = None) -> np.ndarray:
    """Return ``raw`` as float32 ``(T, features)`` after checking shape, size and finiteness.

    Args:
        raw: The rows sent.
        features: The width expected (the channel's training width).
        channel: The channel they belong to, named in the error.

    Raises:
        DataError: For a wrong shape, too many steps, or NaN/Inf values (naming the rows).
    """
    array = np.asarray(raw)
    if array.ndim != 2 or array.shape[1] != features or array.shape[0] < 1:
        whose = f" of channel {channel!r} (its training width)" if channel else ""
        raise DataError(f"raw_input: expected shape (T>=1, {features}){whose}, got {array.shape}")
    check_tensor("raw_input", array)
    return array.astype(np.float32, copy=False)


def preprocess(raw: np.ndarray, stats: Normalisation, channel: str | None = None) -> np.ndarray:
    """Normalise raw telemetry ``(T, F)`` with one channel's training statistics.

    Raises:
        DataError: For a wrong shape or a non-finite value (see the module's policy), naming
            ``channel`` when given.
    """
    return stats.apply(check_raw(raw, stats.n_features, channel))


@dataclass(frozen=True)
class NormalisationTable:
    """Normalisation statistics of every channel of a repository.

    Attributes:
        stats: channel -> statistics.
    """

    stats: dict[str, Normalisation]

    def get(self, channel: str) -> Normalisation:
        """Return the statistics of ``channel``.

        Raises:
            DataError: For a channel without statistics (naming the known ones).
        """
        try:
            return self.stats[channel]
        except KeyError:
            known = ", ".join(sorted(self.stats)) or "none"
            raise DataError(
                f"channel {channel!r}: no normalisation statistics; expected one of {known}"
            ) from None

    def to_dict(self) -> dict:
        """JSON form: ``{channel: Normalisation.to_dict()}``."""
        return {name: stats.to_dict() for name, stats in sorted(self.stats.items())}

    def save(self, path: Path) -> Path:
        """Write the table as JSON to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> NormalisationTable:
        """Read a table written by :meth:`save`.

        Raises:
            DataError: If the file is missing or malformed.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise DataError(f"{path}: expected normalisation statistics JSON: {error}") from error
        return cls({name: Normalisation.from_dict(item) for name, item in data.items()})
