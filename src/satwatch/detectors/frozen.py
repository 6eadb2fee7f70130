"""Frozen telemetry: a value held unchanged longer than the channel's training ever held one.

A stuck sensor or a hung downlink repeats one value. The rule is calibrated on training
alone: a step is frozen once the run of steps repeating the value before it is longer than
:func:`frozen_limit`, ``FROZEN_FACTOR`` times the longest run in the channel's training split
and at least ``FROZEN_MINIMUM`` steps. A channel whose training holds one value for
``FROZEN_FRACTION`` of its length or more holds values as normal behaviour and has no limit
(``benchmarks/frozen_runs.py`` measured the three settings on the validation channels).

Postprocessing turns every frozen step into an anomalous one whatever the fused score
(``satwatch.pipeline.stuck``; the build fits the limit). This module is numpy only, so the
served stages can use it.

Example::

    limit = frozen_limit(train)                  # from the training split, at build time
    runs = unchanged_runs(test[:, 0])            # the run ending at each step
    frozen = runs > limit
"""

from __future__ import annotations

import numpy as np

FROZEN_FACTOR = 2.0
"""A held value is frozen once its run is this many times the longest training run ..."""

FROZEN_MINIMUM = 50
"""... and longer than this many steps."""

FROZEN_FRACTION = 0.1
"""Training holding a value for this fraction of its length makes held values normal."""


def longest_unchanged_run(values: np.ndarray) -> int:
    """The most steps in a row that repeat the value of the step before."""
    breaks = np.flatnonzero(np.r_[True, np.diff(values) != 0, True])
    return int(np.diff(breaks).max()) - 1


def frozen_limit(
    train: np.ndarray,
    factor: float = FROZEN_FACTOR,
    minimum: int = FROZEN_MINIMUM,
    fraction: float = FROZEN_FRACTION,
) -> float:
    """The run of an unchanged telemetry value (column 0 of ``train``, ``(T, F)``) beyond
    which the channel's value counts as frozen (``inf`` where training itself holds values).
    The served settings are the defaults; ``benchmarks/frozen_runs.py`` passes others."""
    longest = longest_unchanged_run(train[:, 0])
    if longest >= fraction * train.shape[0]:
        return float("inf")
    return max(factor * longest, float(minimum))


def unchanged_runs(
    values: np.ndarray, last_value: float = float("nan"), run: int = 0
) -> np.ndarray:
    """Per step, how many steps in a row (ending there) repeat the value of the step before.

    ``last_value`` and ``run`` continue a stream: the value and the run of the step before
    ``values[0]`` (``nan`` and 0 for a new stream, whose first step repeats nothing). So
    chunks give the runs of the whole series. int64 ``(T,)``.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    before = np.r_[np.float64(last_value), values[:-1]]
    same = values == before
    counted = np.cumsum(same)
    # The count at the last step that broke a run (a step repeating nothing), per step.
    at_break = np.maximum.accumulate(np.where(same, 0, counted))
    broken = np.maximum.accumulate(~same)
    return np.where(broken, counted - at_break, run + counted).astype(np.int64)
