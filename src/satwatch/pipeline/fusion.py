"""Fusion of per-detector scores into one score per step (config parameter ``fusion``).

The scores are already normalised (ratios to their thresholds, or training z-scores), so 1
means "at the threshold" for each of them:

- ``max``: the largest of them;
- ``mean``: their mean;
- ``vote``: the fraction of detectors whose score exceeds 1.

Example::

    fused = fuse([omni_ratio, tranad_ratio], "max")
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

FUSIONS = ("max", "mean", "vote")


def fuse(ratios: Sequence[np.ndarray], fusion: str) -> np.ndarray:
    """Fuse per-detector ratios ``[(T,), ...]`` into one float32 ``(T,)`` score.

    Raises:
        DataError: For an unknown ``fusion``.
    """
    stacked = np.stack([np.asarray(r, np.float32) for r in ratios])
    if fusion == "max":
        return stacked.max(axis=0)
    if fusion == "mean":
        return stacked.mean(axis=0, dtype=np.float32)
    if fusion == "vote":
        return (stacked > 1.0).mean(axis=0, dtype=np.float32)
    raise DataError(f"fusion: expected one of {', '.join(FUSIONS)}, got {fusion!r}")
