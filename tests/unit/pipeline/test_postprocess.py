"""Postprocessing stages: hand-computed fusion, smoothing, decisions and events; streaming."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from satwatch.evaluation.events import decisions_to_events
from satwatch.exceptions import DataError
from satwatch.pipeline.dynamic_threshold import (
    ArrivalState,
    DynamicSettings,
    DynamicThreshold,
    decide_on_arrival,
)
from satwatch.pipeline.postprocess import (
    ChannelThresholds,
    PostSettings,
    PostState,
    Threshold,
    find_events,
    fuse,
    fused_z,
    load_thresholds,
    postprocess,
    save_thresholds,
    select_thresholds,
    smooth,
    stream_id_of,
    thresholds_from_array,
    training_statistics,
)


def test_threshold_ratio_is_one_at_the_threshold_whatever_the_sign() -> None:
    negative = Threshold(threshold=-10.0, baseline=-30.0)
    ratios = negative.ratio(np.array([-30.0, -10.0, 10.0], np.float32))
    np.testing.assert_allclose(ratios, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(Threshold(4.0).ratio(np.array([2.0, 8.0])), [0.5, 2.0])


def test_threshold_below_its_baseline_is_refused() -> None:
    with pytest.raises(DataError, match="above its baseline"):
        Threshold(1.0, 2.0).ratio(np.ones(3))


def test_fusion_max_mean_vote_by_hand() -> None:
    a = np.array([0.5, 2.0, 1.5], np.float32)
    b = np.array([1.5, 0.0, 0.5], np.float32)
    np.testing.assert_allclose(fuse([a, b], "max"), [1.5, 2.0, 1.5])
    np.testing.assert_allclose(fuse([a, b], "mean"), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(fuse([a, b], "vote"), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(fuse([a, a * 0 + 3], "vote"), [0.5, 1.0, 1.0])


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


def test_events_merge_gap_and_minimum_length_by_hand() -> None:
    settings = PostSettings(min_event_length=3, merge_gap=2)
    decision = np.zeros(20, bool)
    decision[[2, 3, 6, 7]] = True  # runs 2-3 and 6-7: gap of 2 quiet steps -> merged 2..7
    decision[[12, 13]] = True  # run of 2 steps, alone: dropped
    final = np.arange(20, dtype=np.float32)
    events, run = find_events(final, decision, settings, PostState.start(1, 1))
    assert events == [(2, 7, 7.0)]
    assert run is None


def test_gap_longer_than_merge_gap_splits_events() -> None:
    settings = PostSettings(min_event_length=2, merge_gap=1)
    decision = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    events, _ = find_events(np.ones(8, np.float32), decision, settings, PostState.start(1, 1))
    assert [e[:2] for e in events] == [(0, 1), (4, 5)]


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


def test_state_round_trip_and_wrong_state_refused() -> None:
    state = PostState(42, 17, np.array([1, 2, 3, 4], np.float32), (10, 12, 3.5))
    back = PostState.from_array(state.to_array(), window=5)
    assert (back.stream_id, back.offset, back.run) == (42, 17, (10, 12, 3.5))
    np.testing.assert_array_equal(back.history, state.history)
    assert stream_id_of(state.to_array()) == 42
    with pytest.raises(DataError, match="smoothing window 3"):
        PostState.from_array(state.to_array(), window=3)
    with pytest.raises(DataError, match="post_state"):
        PostState.from_array(np.zeros(2, np.float32), window=5)


def test_new_streams_get_distinct_ids() -> None:
    ids = {PostState.start(5).stream_id for _ in range(20)}
    assert len(ids) > 15


def test_mismatched_inputs_are_refused() -> None:
    settings = PostSettings()
    with pytest.raises(DataError, match="one threshold per score"):
        postprocess([np.ones(3)], [Threshold(1.0), Threshold(2.0)], settings)
    with pytest.raises(DataError, match="one non-zero length"):
        postprocess([np.ones(3), np.ones(4)], [Threshold(1.0)] * 2, settings)


def test_thresholds_from_request_values_and_file(tmp_path) -> None:
    assert thresholds_from_array(np.array([2.0, 3.0]), 2) == [Threshold(2.0), Threshold(3.0)]
    assert thresholds_from_array(np.array([2.0, 1.0, 3.0, 0.5]), 2) == [
        Threshold(2.0, 1.0),
        Threshold(3.0, 0.5),
    ]
    with pytest.raises(DataError, match="expected 2 values"):
        thresholds_from_array(np.array([1.0, 2.0, 3.0]), 2)
    table = {"E-1": [Threshold(2.0, 0.25), Threshold(-1.0, -4.0)]}
    loaded = load_thresholds(save_thresholds(tmp_path / "t.json", table))
    assert {c: list(t) for c, t in loaded.items()} == table
    assert loaded["E-1"].scales == ()  # no training statistics: ratio policy only


# --- dynamic threshold policy ------------------------------------------------------------------

HAND = DynamicSettings(span=1, window=20, batch=5, z_min=1.0, z_max=1.0, min_decrease=0.13)


def test_dynamic_decisions_on_arrival_by_hand() -> None:
    x = np.zeros(25)
    x[12:17] = 10.0  # a run across the batch ending at step 14
    x[23] = 10.0  # a lone step as high as the run that survived
    smoothed, decision, state = decide_on_arrival(x, ArrivalState(), 0, HAND)
    np.testing.assert_array_equal(smoothed, x)  # span 1: no smoothing
    # Steps 0-3: no threshold yet. Steps 4 and 9 end batches of zeros: epsilon 0, no run, so
    # the cut is the window's max 0 / (1 - p) = 0. 12, 13: above both, a new run. Step 14 ends
    # batch 3: window 0..14 has mean 2, std 4, epsilon 6; the run 12..14 survives pruning and
    # holds step 14. 15, 16 go on above 6; 17 falls. Step 19: the run ends before it. Step 23:
    # a new run above epsilon 6.83 that reaches the cut (10, the smallest surviving maximum).
    assert np.flatnonzero(decision).tolist() == [12, 13, 14, 15, 16, 23]
    assert state.epsilon == pytest.approx(3.0 + np.sqrt(21.0), rel=1e-6)  # batch ending at 24
    assert state.cut == 10.0 and not state.flagged and state.history.size == 20


def test_dynamic_floor_keeps_low_runs_normal() -> None:
    x = np.zeros(25)
    x[12:17] = 10.0
    _, decision, _ = decide_on_arrival(x, ArrivalState(), 0, replace(HAND, min_score=10.0))
    assert not decision.any()


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


def test_dynamic_chunks_with_fp32_state_equal_the_whole_series() -> None:
    rng = np.random.default_rng(5)
    length = 900
    scores = [rng.gamma(2.0, 0.5, length).astype(np.float32) for _ in range(2)]
    for start in (150, 420, 700):
        scores[start % 2][start : start + 25] += 6.0
    dynamic = DynamicSettings(span=5, window=200, batch=10)
    settings = PostSettings(
        threshold_policy="dynamic", dynamic=dynamic, min_event_length=1, merge_gap=20
    )
    entry = ChannelThresholds(_entry().ratio, (Threshold(2.0, 1.0),) * 2, (0.5, 0.7))
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
    confirmed = DynamicThreshold(replace(dynamic, min_score=0.7)).run(fused).decision
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
    flushed = DynamicThreshold(replace(dynamic, min_score=0.7)).run(fused).decision
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
    with pytest.raises(DataError, match="dynamic threshold policy"):
        PostState.from_array(ratio_state.to_array(), 5, dynamic=True)
    dynamic_state = PostState.start(5, 1, dynamic=True)
    with pytest.raises(DataError, match="ratio threshold policy"):
        PostState.from_array(dynamic_state.to_array(), 5)


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
    assert PostSettings.from_parameters({"threshold_policy": "pot"}).threshold_policy == "ratio"
    with pytest.raises(DataError, match="threshold_policy"):
        PostSettings.from_parameters({"threshold_policy": "magic"})


def test_training_statistics_round_trip_and_channel_lookup(tmp_path) -> None:
    rng = np.random.default_rng(0)
    train = [rng.normal(2.0, 0.5, 3000), rng.gamma(2.0, 1.0, 3000)]
    ratio = [Threshold(4.0, 2.0), Threshold(6.0, 1.5)]
    entry = training_statistics(train, ratio, DynamicSettings(span=30))
    assert entry.scales[0].baseline == pytest.approx(np.median(train[0]))
    assert entry.scales[0].threshold - entry.scales[0].baseline == pytest.approx(np.std(train[0]))
    assert len(entry.floors) == 2 and 0 < entry.floors[0] < entry.floors[1]
    # The "max" rule: the largest smoothed fused training z (POT extrapolates past it or not).
    highest = training_statistics(train, ratio, DynamicSettings(span=30, floor="max"))
    stage = DynamicThreshold(DynamicSettings(span=30))
    for count in (1, 2):
        fused = fused_z(train[:count], entry.scales[:count])
        assert highest.floors[count - 1] == stage.smooth(fused)[1].max()
        assert highest.floors[count - 1] != entry.floors[count - 1]
    table = load_thresholds(save_thresholds(tmp_path / "t.json", {"A-1": entry}))
    assert table["A-1"] == entry
    # The dynamic policy takes the channel's statistics; thresholds never stand in for it.
    given = np.array([4.0, 2.0, 6.0, 1.5], np.float32)
    assert select_thresholds(table, 2, "A-1", given, dynamic=True) == entry
    assert select_thresholds(table, 1, "A-1", None, dynamic=True).floor_for(1) == entry.floors[0]
    with pytest.raises(DataError, match="expected channel_id"):
        select_thresholds(table, 2, None, given, dynamic=True)
    with pytest.raises(DataError, match="unknown channel 'B-9'"):
        select_thresholds(table, 2, "B-9", None, dynamic=True)
    assert select_thresholds(table, 2, None, given, dynamic=False) == ratio
