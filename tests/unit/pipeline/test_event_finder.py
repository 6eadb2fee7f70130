"""The run finder and the event finder: hand-made decisions with exact answers."""

from __future__ import annotations

import numpy as np

from satwatch.pipeline.event_finder import find_events, runs


def test_runs_are_inclusive_and_reach_both_ends() -> None:
    assert runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 2), (4, 4)]
    assert runs(np.array([1, 1, 0, 1], bool)) == [(0, 1), (3, 3)]
    assert runs(np.zeros(4, bool)) == []
    assert runs(np.zeros(0, bool)) == []


def test_events_merge_gap_and_minimum_length_by_hand() -> None:
    decision = np.zeros(20, bool)
    decision[[2, 3, 6, 7]] = True  # runs 2-3 and 6-7: gap of 2 quiet steps -> merged 2..7
    decision[[12, 13]] = True  # run of 2 steps, alone: dropped
    final = np.arange(20, dtype=np.float32)
    events, run = find_events(final, decision, 0, None, min_event_length=3, merge_gap=2)
    assert events == [(2, 7, 7.0)]
    assert run is None


def test_gap_longer_than_merge_gap_splits_events() -> None:
    decision = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    events, _ = find_events(
        np.ones(8, np.float32), decision, 0, None, min_event_length=2, merge_gap=1
    )
    assert [e[:2] for e in events] == [(0, 1), (4, 5)]


def test_open_event_continues_into_the_next_chunk_with_absolute_indices() -> None:
    final = np.array([0.0, 2.0, 3.0, 0.0, 0.0, 4.0])
    events, run = find_events(final, final > 1, 0, None, min_event_length=2, merge_gap=1)
    assert (events, run) == ([(1, 2, 3.0)], (5, 5, 4.0))  # 5..5 open, too short to report
    # The next chunk starts at step 6: step 6 extends the open event, which is now reported.
    more = np.array([5.0, 0.0, 0.0, 0.0])
    events, run = find_events(more, more > 1, 6, run, min_event_length=2, merge_gap=1)
    assert events == [(5, 6, 5.0)]
    assert run is None  # closed: 2 quiet steps after step 6
