"""The frozen-value rule: its limit from training, and runs that stream as the whole series."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.detectors.frozen import (
    FROZEN_FACTOR,
    FROZEN_MINIMUM,
    frozen_limit,
    longest_unchanged_run,
    unchanged_runs,
)


def runs_step_by_step(values: np.ndarray) -> np.ndarray:
    """The definition written out: a step repeating the one before extends its run."""
    runs = np.zeros(values.size, np.int64)
    for step in range(1, values.size):
        if values[step] == values[step - 1]:
            runs[step] = runs[step - 1] + 1
    return runs


def held_series(seed: int) -> np.ndarray:
    """Random values with runs of every length, the first step included."""
    rng = np.random.default_rng(seed)
    return np.repeat(rng.normal(size=60), rng.integers(1, 40, size=60)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_runs_count_the_steps_repeating_the_value_before(seed: int) -> None:
    values = held_series(seed)
    np.testing.assert_array_equal(unchanged_runs(values), runs_step_by_step(values))


@pytest.mark.parametrize("size", [1, 7, 64])
def test_chunks_carrying_the_last_value_and_run_give_the_whole_series_runs(size: int) -> None:
    values = held_series(3)
    last, run, parts = float("nan"), 0, []
    for start in range(0, values.size, size):
        part = unchanged_runs(values[start : start + size], last, run)
        last, run = float(values[start + part.size - 1]), int(part[-1])
        parts.append(part)
    np.testing.assert_array_equal(np.concatenate(parts), runs_step_by_step(values))


def test_a_missing_value_repeats_nothing() -> None:
    values = np.array([1.0, np.nan, np.nan, 2.0, 2.0], np.float32)
    np.testing.assert_array_equal(unchanged_runs(values), [0, 0, 0, 0, 1])


def test_the_limit_comes_from_training_and_channels_that_hold_values_have_none() -> None:
    moving = np.sin(np.arange(1000) / 9.0)[:, None].astype(np.float32)
    assert frozen_limit(moving) == FROZEN_MINIMUM  # never repeats: the minimum
    held = moving.copy()
    held[300:340, 0] = held[300, 0]  # training holds a value for 39 steps
    assert longest_unchanged_run(held[:, 0]) == 39
    assert frozen_limit(held) == FROZEN_FACTOR * 39
    held[300:420, 0] = held[300, 0]  # held for over a tenth of training: normal there
    assert frozen_limit(held) == float("inf")
