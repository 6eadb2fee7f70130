"""Per-channel calibration: ratios, training statistics and floors, the pick for a request."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.exceptions import DataError
from satwatch.pipeline.calibration import (
    ChannelThresholds,
    Threshold,
    fused_z,
    select_thresholds,
    thresholds_from_array,
    training_statistics,
)
from satwatch.pipeline.dynamic_threshold import DynamicSettings, ewma


def test_threshold_ratio_is_one_at_the_threshold_whatever_the_sign() -> None:
    negative = Threshold(threshold=-10.0, baseline=-30.0)
    ratios = negative.ratio(np.array([-30.0, -10.0, 10.0], np.float32))
    np.testing.assert_allclose(ratios, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(Threshold(4.0).ratio(np.array([2.0, 8.0])), [0.5, 2.0])


def test_threshold_below_its_baseline_is_refused() -> None:
    with pytest.raises(DataError, match="above its baseline"):
        Threshold(1.0, 2.0).ratio(np.ones(3))


def test_thresholds_from_request_values() -> None:
    assert thresholds_from_array(np.array([2.0, 3.0]), 2) == [Threshold(2.0), Threshold(3.0)]
    assert thresholds_from_array(np.array([2.0, 1.0, 3.0, 0.5]), 2) == [
        Threshold(2.0, 1.0),
        Threshold(3.0, 0.5),
    ]
    with pytest.raises(DataError, match="expected 2 values"):
        thresholds_from_array(np.array([1.0, 2.0, 3.0]), 2)


def test_fused_z_is_the_largest_clipped_training_z_by_hand() -> None:
    scales = (Threshold(3.0, 1.0), Threshold(0.3, 0.1))  # (median + std, median)
    score1 = np.array([1.0, 5.0, 0.0], np.float32)  # z (score - 1) / 2: 0, 2, clipped 0
    score2 = np.array([0.5, 0.1, 0.2], np.float32)  # z (score - 0.1) / 0.2: 2, 0, 0.5
    np.testing.assert_allclose(fused_z([score1, score2], scales), [2.0, 2.0, 0.5], rtol=1e-6)
    with pytest.raises(DataError, match="training statistics for 2 scores, got 1"):
        fused_z([score1, score2], scales[:1])


def test_fused_z_raises_each_z_to_the_power_before_the_max() -> None:
    scales = (Threshold(3.0, 1.0), Threshold(0.3, 0.1))
    score1 = np.array([1.0, 9.0, 0.0], np.float32)  # z 0, 4, clipped 0
    score2 = np.array([0.5, 0.1, 0.2], np.float32)  # z 2, 0, 0.5
    fused = fused_z([score1, score2], scales, power=0.5)
    np.testing.assert_allclose(fused, [np.sqrt(2.0), 2.0, np.sqrt(0.5)], rtol=1e-6)
    assert fused.dtype == np.float32


def test_training_floors_are_fitted_on_the_powered_z() -> None:
    rng = np.random.default_rng(1)
    train = [rng.gamma(2.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000)]
    ratio = [Threshold(4.0), Threshold(3.0)]
    plain = training_statistics(train, ratio, DynamicSettings(span=30, floor="max"))
    rooted = training_statistics(train, ratio, DynamicSettings(span=30, floor="max", z_power=0.5))
    assert rooted.scales == plain.scales  # the power changes the floors, not the z-scores
    fused = fused_z(train, rooted.scales, 0.5)
    assert rooted.floors[1] == ewma(fused, 30)[1].max()
    assert rooted.floors[1] < plain.floors[1]  # the smoothed fused z exceeds 1 in training


def test_fused_z_multiplies_each_powered_z_by_its_weight() -> None:
    scales = [Threshold(3.0, 1.0), Threshold(0.3, 0.1)]
    score1 = np.array([1.0, 9.0, 0.0], np.float32)  # z (score - 1) / 2: 0, 4, clipped 0
    score2 = np.array([0.5, 0.1, 0.2], np.float32)  # z (score - 0.1) / 0.2: 2, 0, 0.5
    fused = fused_z([score1, score2], scales, power=0.5, weights=(1.0, 0.5))
    np.testing.assert_allclose(fused, [0.5 * np.sqrt(2.0), 2.0, 0.5 * np.sqrt(0.5)], rtol=1e-6)
    with pytest.raises(DataError, match="expected a fusion weight for each of 2 scores"):
        fused_z([score1, score2], scales, weights=(1.0,))


def test_training_statistics_keep_each_kinds_weight_and_fit_the_floors_with_it() -> None:
    rng = np.random.default_rng(2)
    train = [rng.gamma(2.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000)]
    ratio = [Threshold(4.0), Threshold(3.0)]
    dynamic = DynamicSettings(span=30, floor="max", z_weights=(("tranad", 0.5),))
    plain = training_statistics(train, ratio, dynamic)  # no kinds: every score weighs 1
    weighted = training_statistics(train, ratio, dynamic, ("omni", "tranad"))
    assert plain.weights == () and weighted.weights == (1.0, 0.5)
    assert weighted.head(1).weights == (1.0,)
    fused = fused_z(train, weighted.scales, 1.0, (1.0, 0.5))
    assert weighted.floors[1] == ewma(fused, 30)[1].max() != plain.floors[1]
    assert weighted.floors[0] == plain.floors[0]  # omni alone weighs 1 either way
    with pytest.raises(DataError, match="expected a kind for each of 2 scores"):
        training_statistics(train, ratio, dynamic, ("omni",))


def test_training_statistics_and_channel_lookup() -> None:
    rng = np.random.default_rng(0)
    train = [rng.normal(2.0, 0.5, 3000), rng.gamma(2.0, 1.0, 3000)]
    ratio = [Threshold(4.0, 2.0), Threshold(6.0, 1.5)]
    entry = training_statistics(train, ratio, DynamicSettings(span=30))
    assert entry.scales[0].baseline == pytest.approx(np.median(train[0]))
    assert entry.scales[0].threshold - entry.scales[0].baseline == pytest.approx(np.std(train[0]))
    assert len(entry.floors) == 2 and 0 < entry.floors[0] < entry.floors[1]
    # The "max" rule: the largest smoothed fused training z (POT extrapolates past it or not).
    highest = training_statistics(train, ratio, DynamicSettings(span=30, floor="max"))
    for count in (1, 2):
        fused = fused_z(train[:count], entry.scales[:count])
        assert highest.floors[count - 1] == ewma(fused, 30)[1].max()
        assert highest.floors[count - 1] != entry.floors[count - 1]
    table = {"A-1": entry}
    # The dynamic policy takes the channel's statistics; thresholds never stand in for it.
    given = np.array([4.0, 2.0, 6.0, 1.5], np.float32)
    assert select_thresholds(table, 2, "A-1", given, dynamic=True) == entry
    assert select_thresholds(table, 1, "A-1", None, dynamic=True).floor_for(1) == entry.floors[0]
    with pytest.raises(DataError, match="expected channel_id"):
        select_thresholds(table, 2, None, given, dynamic=True)
    with pytest.raises(DataError, match="unknown channel 'B-9'"):
        select_thresholds(table, 2, "B-9", None, dynamic=True)
    assert select_thresholds(table, 2, None, given, dynamic=False) == ratio
    with pytest.raises(DataError, match="expected thresholds for 3 scores, got 2"):
        select_thresholds(table, 3, "A-1")


def test_channel_entry_is_its_ratio_thresholds_as_a_sequence() -> None:
    entry = ChannelThresholds(
        (Threshold(5.0, 1.0), Threshold(0.5, 0.1)), (Threshold(3.0, 1.0),) * 2, (0.5, 0.7)
    )
    assert list(entry) == list(entry.ratio) and entry[1] == Threshold(0.5, 0.1)
    assert entry.head(1) == ChannelThresholds(entry.ratio[:1], entry.scales[:1], (0.5, 0.7))
    assert entry.floor_for(2) == 0.7
    with pytest.raises(DataError, match="training floor for 3 fused scores"):
        entry.floor_for(3)
