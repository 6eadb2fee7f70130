"""Decisions <-> inclusive events."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.data import LabelledEvent
from satwatch.evaluation.events import (
    decisions_to_events,
    events_to_decisions,
    overlap_matrix,
)


def test_decisions_to_events_returns_inclusive_runs() -> None:
    flags = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    assert decisions_to_events(flags) == [(0, 1), (4, 4), (6, 8)]


def test_decisions_to_events_of_nothing_and_everything() -> None:
    assert decisions_to_events(np.zeros(0, dtype=bool)) == []
    assert decisions_to_events(np.zeros(5, dtype=bool)) == []
    assert decisions_to_events(np.ones(5, dtype=bool)) == [(0, 4)]


def test_decisions_to_events_rejects_2d() -> None:
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        decisions_to_events(np.zeros((2, 2), dtype=bool))


def test_events_to_decisions_round_trips_and_takes_labelled_events() -> None:
    flags = events_to_decisions([(1, 2), LabelledEvent(4, 4, "point")], 6)
    assert flags.tolist() == [False, True, True, False, True, False]
    assert decisions_to_events(flags) == [(1, 2), (4, 4)]


def test_events_to_decisions_rejects_an_event_past_the_end() -> None:
    with pytest.raises(ValueError, match=r"\(3, 6\)"):
        events_to_decisions([(3, 6)], 6)


def test_overlap_matrix_counts_shared_end_points() -> None:
    matrix = overlap_matrix([(0, 2), (5, 5)], [(2, 4), (6, 9)])
    assert matrix.tolist() == [[True, False], [False, False]]
