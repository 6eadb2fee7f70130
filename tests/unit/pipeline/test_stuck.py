"""Postprocessing's stuck-value rule: a frozen value is an anomaly whatever the fused score."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from satwatch.exceptions import DataError
from satwatch.pipeline.calibration import ChannelThresholds, Threshold
from satwatch.pipeline.calibration_file import load_thresholds, save_thresholds
from satwatch.pipeline.dynamic_threshold import DynamicSettings
from satwatch.pipeline.postprocess import PostSettings, postprocess
from satwatch.pipeline.poststate import PostState
from satwatch.pipeline.stuck import StuckState

LIMIT = 60.0
DYNAMIC = DynamicSettings(span=5, window=200, batch=10)
SETTINGS = PostSettings(
    threshold_policy="dynamic", dynamic=DYNAMIC, merge_gap=20, min_event_length=1
)


def entry(limit: float = LIMIT) -> ChannelThresholds:
    """One quiet detector: its scores never reach the floor."""
    return ChannelThresholds((Threshold(1.0),), (Threshold(2.0, 1.0),), (50.0,), (), limit)


def telemetry(length: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A moving value held at steps 300..449 (149 repeats), and a quiet score."""
    rng = np.random.default_rng(4)
    values = rng.normal(size=length).astype(np.float32)
    values[300:450] = values[300]
    return values, rng.gamma(2.0, 0.5, length).astype(np.float32)


def test_a_run_past_the_frozen_limit_is_an_event_whatever_the_fused_score() -> None:
    values, score = telemetry()
    result = postprocess([score], entry(), SETTINGS, end_of_stream=True, values=values)
    # Step 300 + 61 is the first whose run (61 repeats) exceeds the limit; the event ends
    # with the run.
    assert [(int(s), int(e)) for s, e, _ in result.events] == [(361, 449)]
    assert not postprocess([score], entry(), SETTINGS, end_of_stream=True).events.size
    never = entry(float("inf"))
    assert not postprocess([score], never, SETTINGS, end_of_stream=True, values=values).events.size


@pytest.mark.parametrize("size", [7, 64, 256])
def test_chunks_carrying_the_state_give_the_whole_series_events(size: int) -> None:
    values, score = telemetry()
    whole = postprocess([score], entry(), SETTINGS, end_of_stream=True, values=values)
    state, found = None, {}
    for start in range(0, values.size, size):
        end = min(start + size, values.size)
        result = postprocess(
            [score[start:end]], entry(), SETTINGS, state, end == values.size, values[start:end]
        )
        vector = result.state.to_array().astype(np.float32)  # as it travels: FP32
        state = PostState.from_array(vector, SETTINGS.smoothing_window, dynamic=True)
        found |= {int(row[0]): tuple(row) for row in result.events}
    assert list(found.values()) == [tuple(row) for row in whole.events]


def test_the_state_vector_carries_the_rule_and_refuses_a_short_one() -> None:
    stuck = StuckState(1.5, 42, np.array([False, True, True]))
    state = replace(PostState.start(5, 9, dynamic=True), stuck=stuck)
    back = PostState.from_array(state.to_array(), 5, dynamic=True)
    assert (back.stuck.last_value, back.stuck.run) == (1.5, 42)
    np.testing.assert_array_equal(back.stuck.recent, stuck.recent)
    with pytest.raises(DataError, match="stuck-value state"):
        StuckState.from_array(np.array([1.0, 2.0, 5.0, 1.0], np.float32))


def test_telemetry_of_another_length_than_the_scores_is_refused() -> None:
    values, score = telemetry()
    with pytest.raises(DataError, match="telemetry value of each of the 1000 steps"):
        postprocess([score], entry(), SETTINGS, values=values[:-1])


def test_the_limit_travels_in_thresholds_json(tmp_path) -> None:
    path = save_thresholds(tmp_path / "thresholds.json", {"A-1": entry(), "A-2": entry(np.inf)})
    table = load_thresholds(path)
    assert table["A-1"].frozen_limit == LIMIT
    assert table["A-2"].frozen_limit == float("inf")  # written without it: no limit
    assert "frozen_limit" not in path.read_text().split('"A-2"')[1]
