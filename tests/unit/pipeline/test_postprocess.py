"""The postprocessing stage: hand-computed smoothing, decisions and events; streaming."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from satwatch.evaluation.events import decisions_to_events
from satwatch.exceptions import DataError
from satwatch.pipeline.calibration import ChannelThresholds, Threshold, fused_z
from satwatch.pipeline.dynamic_threshold import DynamicSettings, confirm_series
from satwatch.pipeline.postprocess import PostSettings, postprocess, smooth
from satwatch.pipeline.poststate import PostState


def test_settings_from_config_parameters_and_bad_values() -> None:
    settings = PostSettings.from_parameters(
        {"fusion": "vote", "smoothing_window": "3", "merge_gap": "0", "other": "x"}
    )
    assert (settings.fusion, settings.smoothing_window, settings.merge_gap) == ("vote", 3, 0)
    assert settings.min_event_length == 3
    with pytest.raises(DataError, match="fusion"):
        PostSettings.from_parameters({"fusion": "median"})
    with pytest.raises(DataError, match="smoothing_window"):
        PostSettings.from_parameters({"smoothing_window": "five"})


def test_causal_smoothing_by_hand() -> None:
    state = PostState.start(window=3, stream_id=7)
    out = smooth(np.array([3.0, 0.0, 3.0, 6.0], np.float32), state)
    # Means over the last 3 values, fewer at the start.
    np.testing.assert_allclose(out, [3.0, 1.5, 2.0, 3.0])


def test_postprocess_decisions_and_events_by_hand() -> None:
    settings = PostSettings(fusion="max", smoothing_window=1, min_event_length=2, merge_gap=0)
    score1 = np.array([1, 3, 3, 1, 1, 3], np.float32)
    score2 = np.array([0, 0, 0, 0, 0, 0], np.float32)
    result = postprocess([score1, score2], [Threshold(2.0), Threshold(1.0)], settings)
    np.testing.assert_allclose(result.final, [0.5, 1.5, 1.5, 0.5, 0.5, 1.5])
    assert result.decision.tolist() == [False, True, True, False, False, True]
    # 1..2 closed; 5 is open at the end but only 1 step long: not reported yet.
    np.testing.assert_allclose(result.events, [[1, 2, 1.5]])
    assert result.state.run == (5, 5, 1.5)


def _stream(scores, thresholds, settings, sizes):
    state, finals, decisions, events = None, [], [], {}
    start = 0
    for size in sizes:
        chunk = [s[start : start + size] for s in scores]
        start += size
        result = postprocess(chunk, thresholds, settings, state)
        state = PostState.from_array(result.state.to_array(), settings.smoothing_window)
        finals.append(result.final)
        decisions.append(result.decision)
        for row in result.events:
            events[int(row[0])] = tuple(row)  # the last report of an event wins
    return np.concatenate(finals), np.concatenate(decisions), events


@pytest.mark.parametrize("fusion", ["max", "mean", "vote"])
def test_chunks_with_state_equal_the_whole_series(fusion: str) -> None:
    rng = np.random.default_rng(3)
    length = 600
    scores = [rng.gamma(2.0, 0.4, length).astype(np.float32) for _ in range(2)]
    for start in (50, 200, 420):  # bursts so there are events spanning chunk boundaries
        scores[0][start : start + 30] += 3.0
    thresholds = [Threshold(2.0, 0.5), Threshold(1.8)]
    settings = PostSettings(fusion=fusion, smoothing_window=5, min_event_length=3, merge_gap=10)
    whole = postprocess(scores, thresholds, settings, PostState.start(5, 11))
    final, decision, events = _stream(scores, thresholds, settings, [1, 64, 7, 100, 28, 400])
    np.testing.assert_array_equal(final, whole.final)  # bit-identical
    np.testing.assert_array_equal(decision, whole.decision)
    assert len(whole.events) >= 2
    assert sorted(events.values()) == [tuple(row) for row in whole.events]


def test_mismatched_inputs_are_refused() -> None:
    settings = PostSettings()
    with pytest.raises(DataError, match="one threshold per score"):
        postprocess([np.ones(3)], [Threshold(1.0), Threshold(2.0)], settings)
    with pytest.raises(DataError, match="one non-zero length"):
        postprocess([np.ones(3), np.ones(4)], [Threshold(1.0)] * 2, settings)


# --- dynamic threshold policy ------------------------------------------------------------------


def _entry() -> ChannelThresholds:
    # ratio thresholds, then (median + std, median) per detector, then floors for 1 and 2 scores
    return ChannelThresholds(
        (Threshold(5.0, 1.0), Threshold(0.5, 0.1)),
        (Threshold(3.0, 1.0), Threshold(0.3, 0.1)),
        (0.5, 0.7),
    )


def test_dynamic_policy_fuses_training_z_scores_by_hand() -> None:
    settings = PostSettings(
        threshold_policy="dynamic", dynamic=DynamicSettings(span=1, window=20, batch=5)
    )
    score1 = np.array([1.0, 5.0, 0.0], np.float32)  # z (score - 1) / 2: 0, 2, clipped 0
    score2 = np.array([0.5, 0.1, 0.2], np.float32)  # z (score - 0.1) / 0.2: 2, 0, 0.5
    result = postprocess([score1, score2], _entry(), settings)
    np.testing.assert_allclose(result.final, [2.0, 2.0, 0.5], rtol=1e-6)
    assert not result.decision.any()  # no batch completed yet
    assert result.state.carry is not None and result.state.offset == 3


def test_dynamic_policy_fuses_the_powered_z_scores() -> None:
    dynamic = DynamicSettings(span=1, window=20, batch=5, z_power=0.5)
    settings = PostSettings(threshold_policy="dynamic", dynamic=dynamic)
    score1 = np.array([1.0, 9.0, 0.0], np.float32)  # z (score - 1) / 2: 0, 4, clipped 0
    score2 = np.array([0.5, 0.1, 0.2], np.float32)  # z (score - 0.1) / 0.2: 2, 0, 0.5
    result = postprocess([score1, score2], _entry(), settings)
    np.testing.assert_allclose(result.final, [np.sqrt(2.0), 2.0, np.sqrt(0.5)], rtol=1e-6)


def _dynamic_stream(scores, thresholds, settings, sizes):
    state, finals, decisions, events, start = None, [], [], {}, 0
    for size in sizes:
        chunk = [s[start : start + size] for s in scores]
        start += size
        result = postprocess(chunk, thresholds, settings, state)
        vector = result.state.to_array().astype(np.float32)  # as it travels: FP32
        state = PostState.from_array(vector, settings.smoothing_window, dynamic=True)
        finals.append(result.final)
        decisions.append(result.decision)
        for row in result.events:
            events[int(row[0])] = tuple(row)
    return np.concatenate(finals), np.concatenate(decisions), events


def test_dynamic_policy_weighs_each_score_as_its_entry_says() -> None:
    settings = PostSettings(
        threshold_policy="dynamic", dynamic=DynamicSettings(span=1, window=20, batch=5)
    )
    score1 = np.array([1.0, 9.0, 0.0], np.float32)  # z (score - 1) / 2: 0, 4, clipped 0
    score2 = np.array([0.5, 0.1, 0.2], np.float32)  # z (score - 0.1) / 0.2: 2, 0, 0.5
    entry = _entry()
    weighted = ChannelThresholds(entry.ratio, entry.scales, entry.floors, (1.0, 0.25))
    result = postprocess([score1, score2], weighted, settings)
    np.testing.assert_allclose(result.final, [0.5, 4.0, 0.125], rtol=1e-6)


@pytest.mark.parametrize(("z_power", "weights"), [(1.0, ()), (0.5, ()), (0.5, (1.0, 0.5))])
def test_dynamic_chunks_with_fp32_state_equal_the_whole_series(
    z_power: float, weights: tuple[float, ...]
) -> None:
    rng = np.random.default_rng(5)
    length = 900
    scores = [rng.gamma(2.0, 0.5, length).astype(np.float32) for _ in range(2)]
    for start in (150, 420, 700):
        scores[start % 2][start : start + 25] += 6.0
    dynamic = DynamicSettings(span=5, window=200, batch=10, z_power=z_power)
    settings = PostSettings(
        threshold_policy="dynamic", dynamic=dynamic, min_event_length=1, merge_gap=20
    )
    entry = ChannelThresholds(_entry().ratio, (Threshold(2.0, 1.0),) * 2, (0.5, 0.7), weights)
    whole = postprocess(scores, entry, settings, PostState.start(5, 3, dynamic=True))
    final, decision, events = _dynamic_stream(scores, entry, settings, [1, 9, 13, 77, 200, 3, 597])
    np.testing.assert_array_equal(final, whole.final)
    np.testing.assert_array_equal(decision, whole.decision)
    assert decision.sum() > 20 and len(whole.events) >= 2
    assert sorted(events.values()) == [tuple(row) for row in whole.events]


def _merged(decisions: np.ndarray, gap: int) -> list[list[int]]:
    """Runs of decisions closer than ``gap`` quiet steps merged, as ``[start, end]``."""
    events: list[list[int]] = []
    for start, end in decisions_to_events(decisions):
        if events and start - events[-1][1] - 1 <= gap:
            events[-1][1] = end
        else:
            events.append([start, end])
    return events


def test_dynamic_events_are_the_batch_rules_decisions_merged() -> None:
    rng = np.random.default_rng(7)
    scores = [rng.gamma(2.0, 0.5, 1000).astype(np.float32) for _ in range(2)]
    for start in (150, 420, 700):
        scores[start % 2][start : start + 25] += 6.0
    dynamic = DynamicSettings(span=5, window=200, batch=10, burn_in=30)
    settings = PostSettings(threshold_policy="dynamic", dynamic=dynamic, merge_gap=20)
    entry = ChannelThresholds(_entry().ratio, (Threshold(2.0, 1.0),) * 2, (0.5, 0.7))
    whole = postprocess(scores, entry, settings, PostState.start(5, 3, dynamic=True))
    # Each batch decided at its end (Telemanom's rule), runs closer than 20 steps merged.
    fused = fused_z(scores, entry.scales)
    confirmed = confirm_series(fused, replace(dynamic, min_score=0.7)).decision
    expected = _merged(confirmed, gap=20)
    assert len(expected) >= 2
    assert [[int(r[0]), int(r[1])] for r in whole.events] == expected
    # The per-step answer, decided on arrival, is a different (earlier-committed) rule.
    assert not np.array_equal(confirmed, whole.decision)


def test_end_of_stream_confirms_the_incomplete_last_batch_as_the_batch_rule_flushes() -> None:
    rng = np.random.default_rng(8)
    length = 1005  # the last batch (steps 1000..1004) never completes
    scores = [rng.gamma(2.0, 0.5, length).astype(np.float32) for _ in range(2)]
    scores[0][420:445] += 6.0
    scores[1][1001:] += 40.0  # a fault in the stream's last steps only
    dynamic = DynamicSettings(span=5, window=200, batch=10)
    settings = PostSettings(
        threshold_policy="dynamic", dynamic=dynamic, merge_gap=20, min_event_length=1
    )
    entry = ChannelThresholds(_entry().ratio, (Threshold(2.0, 1.0),) * 2, (0.5, 0.7))
    fused = fused_z(scores, entry.scales)
    flushed = confirm_series(fused, replace(dynamic, min_score=0.7)).decision
    expected = _merged(flushed, gap=20)
    assert len(expected) >= 3 and expected[-1][0] >= 1000  # only the flush confirms the last
    head = postprocess([s[:600] for s in scores], entry, settings)
    last = [s[600:] for s in scores]
    waiting = postprocess(last, entry, settings, head.state)
    ended = postprocess(last, entry, settings, head.state, end_of_stream=True)
    found = {int(r[0]): int(r[1]) for r in [*head.events, *ended.events]}
    assert [[s, e] for s, e in sorted(found.items())] == expected
    assert all(int(r[0]) < 1000 for r in waiting.events)
    # The per-step answers and the threshold's state do not depend on the flag.
    np.testing.assert_array_equal(waiting.final, ended.final)
    np.testing.assert_array_equal(waiting.decision, ended.decision)
    np.testing.assert_array_equal(waiting.state.carry.to_array(), ended.state.carry.to_array())
    assert ended.state.run == (1002, 1004, pytest.approx(ended.events[-1][2]))


def test_dynamic_policy_refuses_ratio_states_and_missing_statistics() -> None:
    settings = PostSettings(threshold_policy="dynamic")
    ratio_state = PostState.start(5, 1)
    with pytest.raises(DataError, match="dynamic threshold policy"):
        postprocess([np.ones(3)], _entry().head(1), settings, ratio_state)
    with pytest.raises(DataError, match="training statistics"):
        postprocess([np.ones(3)], [Threshold(1.0)], settings)
    with pytest.raises(DataError, match="ratio threshold policy"):
        postprocess([np.ones(3)], [Threshold(1.0)], PostSettings(), PostState.start(5, 1, True))
    with pytest.raises(DataError, match="smoothing window 5, got 3"):
        postprocess([np.ones(3)], [Threshold(1.0)], PostSettings(), PostState.start(3, 1))


def test_settings_read_the_policy_and_the_dynamic_parameters() -> None:
    settings = PostSettings.from_parameters(
        {"threshold_policy": "dynamic", "dt_span": "30", "dt_batch": "10", "dt_window": "2100"}
    )
    assert settings.threshold_policy == "dynamic"
    assert (settings.dynamic.span, settings.dynamic.batch, settings.dynamic.window) == (
        30,
        10,
        2100,
    )
    with pytest.raises(DataError, match="threshold_policy"):
        PostSettings.from_parameters({"threshold_policy": "pot"})  # no aliases
    assert PostSettings.from_parameters({"dt_z_power": "0.5"}).dynamic.z_power == 0.5
    for bad in ("0", "-1", "nan"):
        with pytest.raises(DataError, match="z_power: expected above 0"):
            PostSettings.from_parameters({"dt_z_power": bad})
    weights = PostSettings.from_parameters({"dt_z_weights": "tranad=0.5, omni=2"}).dynamic
    assert weights.z_weights == (("tranad", 0.5), ("omni", 2.0))
    assert (weights.weight_of("tranad"), weights.weight_of("nearest")) == (0.5, 1.0)
    for bad, problem in [
        ("tranad", "kind=weight pairs"),
        ("tranad=half", "kind=weight pairs"),
        ("=0.5", "kind=weight pairs"),
        ("tranad=0.5,tranad=1", "named twice"),
        ("tranad=0", "above 0 for 'tranad'"),
        ("tranad=inf", "above 0 for 'tranad'"),
    ]:
        with pytest.raises(DataError, match=problem):
            PostSettings.from_parameters({"dt_z_weights": bad})


def test_events_widen_by_the_margin_within_the_steps_seen() -> None:
    settings = PostSettings(smoothing_window=1, min_event_length=1, merge_gap=4, event_margin=2)
    score = np.array([0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 3], np.float32)
    result = postprocess([score], [Threshold(1.0)], settings)
    # 4..5 widened to 2..7; the open event at the last step ends at the last step seen.
    np.testing.assert_allclose(result.events, [[2, 7, 3.0], [12, 14, 3.0]])
    streamed = _stream([score], [Threshold(1.0)], settings, [5, 5, 5])[2]
    assert streamed == {int(r[0]): tuple(r) for r in result.events}
    with pytest.raises(DataError, match="event_margin.*half the merge_gap"):
        PostSettings(merge_gap=4, event_margin=3)
