"""Tests of the Telemanom-style dynamic threshold: hand-computed answers, chunked == whole."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.exceptions import DataError
from satwatch.pipeline.dynamic_threshold import (
    ArrivalState,
    DynamicSettings,
    DynamicState,
    DynamicThreshold,
    choose_epsilon,
    decide_on_arrival,
    surviving_runs,
)


def test_choose_epsilon_hand_computed() -> None:
    # mean 1, std 3. z = 2.5 -> epsilon 8.5: one value above, one run; removing it leaves
    # mean 0 and std 0, so the score is (1 + 1) / (1 + 1) = 1. z = 3 -> epsilon 10: nothing
    # strictly above, not a candidate.
    values = np.array([0.0] * 9 + [10.0])
    settings = DynamicSettings(z_min=2.5, z_max=3.0, z_step=0.5)
    assert choose_epsilon(values, settings) == pytest.approx(8.5)


def test_choose_epsilon_falls_back_to_the_largest_z() -> None:
    # Constant window: no spread, nothing can be above; a flat window gives mean + z_max * 0.
    assert choose_epsilon(np.full(7, 2.0), DynamicSettings()) == 2.0
    # Too many runs for max_sequences = 1: two separate spikes at every z that catches both.
    values = np.array([0.0, 10.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    settings = DynamicSettings(z_min=1.0, z_max=2.0, z_step=1.0, max_sequences=1)
    mean, std = values.mean(), values.std()
    assert choose_epsilon(values, settings) == pytest.approx(mean + 2.0 * std)


def test_pruning_keeps_runs_down_to_the_last_big_drop() -> None:
    # Run maxima 10 (step 3), 9.5 (step 5), 5 (step 1); largest value below epsilon 4.6.
    # Drops: 10 -> 9.5 is 5 % (< 13 %), 9.5 -> 5 is 47 % (keep the top two), 5 -> 4.6 is 8 %.
    values = np.array([0.0, 5.0, 0.0, 10.0, 0.0, 9.5, 0.0, 4.6])
    assert surviving_runs(values, 4.8, 0.13) == [(3, 3), (5, 5)]
    # With no drop of 13 % anywhere, nothing survives: 10 -> 9 is 10 %.
    assert surviving_runs(np.array([9.0, 0.0, 10.0]), 9.5, 0.13) == []
    # A run of several steps counts once, by its maximum.
    assert surviving_runs(np.array([0.0, 3.0, 6.0, 0.0]), 1.0, 0.13) == [(1, 2)]


def test_single_spike_is_the_only_decision() -> None:
    scores = np.array([0.0] * 20 + [10.0] + [0.0] * 5)
    result = DynamicThreshold(DynamicSettings(window=100, batch=1)).run(scores)
    assert result.first == 0
    assert result.decision.tolist() == [i == 20 for i in range(26)]


def test_min_score_floor_suppresses_small_anomalies() -> None:
    scores = np.array([0.0] * 20 + [10.0] + [0.0] * 5)
    result = DynamicThreshold(DynamicSettings(window=100, min_score=10.0)).run(scores)
    assert not result.decision.any()


@pytest.mark.parametrize("batch", [1, 4])
def test_burn_in_keeps_the_first_steps_normal_in_both_rules(batch: int) -> None:
    scores = np.array([0.0] * 20 + [10.0] + [0.0] * 7)
    for burn_in, expected in ((20, True), (21, False)):
        settings = DynamicSettings(window=100, batch=batch, burn_in=burn_in)
        batched = DynamicThreshold(settings).run(scores).decision
        _, arrival, _ = decide_on_arrival(scores, ArrivalState(), 0, settings)
        assert batched.any() == expected and batched.sum() <= 1
        assert arrival[20] == expected, burn_in
    # Streams are counted from their first step: a later chunk is past the burn-in.
    _, later, _ = decide_on_arrival(scores, ArrivalState(), 100, DynamicSettings(burn_in=21))
    assert later[20]


def test_ewma_smoothing_hand_computed() -> None:
    # span 3 -> alpha 0.5: 2, 0.5 * 4 + 0.5 * 2 = 3, 0.5 * 8 + 0.5 * 3 = 5.5.
    result = DynamicThreshold(DynamicSettings(span=3)).update(np.array([2.0, 4.0, 8.0]))
    assert result.smoothed.tolist() == [2.0, 3.0, 5.5]
    assert result.state.level == 5.5


def test_batches_decide_with_a_delay_and_flush_decides_the_rest() -> None:
    stage = DynamicThreshold(DynamicSettings(window=10, batch=2))
    head = stage.update(np.arange(5.0))
    assert (head.first, head.decision.size, head.state.pending) == (0, 4, 1)
    # Two more steps complete the batch of steps 4-5; step 6 waits.
    more = stage.update(np.arange(2.0), head.state)
    assert (more.first, more.decision.size, more.state.pending) == (4, 2, 1)
    tail = stage.flush(more.state)
    assert (tail.first, tail.decision.size, tail.state.pending) == (6, 1, 0)


def _series(seed: int, length: int = 800) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = np.abs(rng.normal(size=length))
    for start in rng.integers(100, length - 50, size=4):
        scores[start : start + rng.integers(3, 30)] += rng.uniform(3, 12)
    return scores


@pytest.mark.parametrize(
    ("settings", "cuts"),
    [
        (DynamicSettings(span=5, window=200, batch=1), [1, 2, 199, 200, 201, 577]),
        (DynamicSettings(span=20, window=400, batch=70), [1, 69, 70, 71, 500, 701]),
        (DynamicSettings(span=1, window=250, batch=7, min_score=1.0), [3, 10, 11, 700]),
        (DynamicSettings(span=3, window=300, batch=10, burn_in=450), [5, 449, 451, 640]),
    ],
)
def test_chunked_equals_whole(settings: DynamicSettings, cuts: list[int]) -> None:
    scores = _series(len(cuts))
    stage = DynamicThreshold(settings)
    warm = _series(99, 500)
    whole = stage.run(scores, warm=warm)
    assert whole.decision.size == scores.size
    assert whole.decision.any() and not whole.decision.all()
    state = stage.start(warm)
    decisions, thresholds, firsts = [], [], []
    for chunk in np.split(scores, cuts):
        # The state survives an FP32 tensor unchanged (how a served model carries it).
        state = DynamicState.from_array(state.to_array().astype(np.float32))
        part = stage.update(chunk, state)
        firsts.append(part.first)
        decisions.append(part.decision)
        thresholds.append(part.threshold)
        state = part.state
    tail = stage.flush(state)
    decisions.append(tail.decision)
    thresholds.append(tail.threshold)
    assert np.array_equal(np.concatenate(decisions), whole.decision)
    assert np.array_equal(np.concatenate(thresholds), whole.threshold)
    assert firsts == sorted(firsts) and firsts[0] == 0


def test_decisions_do_not_depend_on_later_steps() -> None:
    scores = _series(5)
    stage = DynamicThreshold(DynamicSettings(span=5, window=200, batch=1))
    full = stage.run(scores).decision
    cut = stage.run(scores[:500]).decision
    assert full.any() and np.array_equal(full[:500], cut)


def test_errors_name_the_problem() -> None:
    with pytest.raises(DataError, match="batch: expected at most the window"):
        DynamicSettings(window=10, batch=20)
    with pytest.raises(DataError, match="min_decrease"):
        DynamicSettings(min_decrease=1.5)
    with pytest.raises(DataError, match="floor: expected one of pot, max, got 'median'"):
        DynamicSettings.from_parameters({"dt_floor": "median"})
    with pytest.raises(DataError, match="burn_in: expected 0 or more, got -1"):
        DynamicSettings(burn_in=-1)
    with pytest.raises(DataError, match="not finite"):
        DynamicThreshold().update(np.array([1.0, np.nan]))
    with pytest.raises(DataError, match="pending <= history length"):
        DynamicState.from_array(np.array([5.0, 1.0, 4.0, 0.0]))
    with pytest.raises(DataError, match="dt_window"):
        DynamicSettings.from_parameters({"dt_window": "big"})
    assert DynamicSettings.from_parameters({"dt_window": "900", "dt_min_decrease": "0.2"}) == (
        DynamicSettings(window=900, min_decrease=0.2)
    )
