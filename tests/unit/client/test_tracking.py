"""StreamTracker: events of a chunked stream come out once, as over the whole series."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.client.tracking import Series, StreamTracker
from satwatch.evaluation.events import decisions_to_events
from satwatch.pipeline.calibration import Threshold
from satwatch.pipeline.postprocess import PostSettings, postprocess
from satwatch.pipeline.poststate import PostState


def _scores(length: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    omni = rng.normal(0.0, 1.0, length).astype(np.float32)
    tranad = rng.normal(0.0, 1.0, length).astype(np.float32)
    for start in rng.integers(0, length - 40, 12):  # bursts, some across chunk boundaries
        omni[start : start + rng.integers(2, 40)] += 6.0
    return [omni, tranad]


def _stream(scores, chunk: int, detectors=("omni", "tranad")):
    settings = PostSettings(smoothing_window=5, min_event_length=3, merge_gap=10)
    thresholds = [Threshold(3.0), Threshold(3.0)]
    tracker = StreamTracker("E-1", "EPS", (*detectors, "fused"), from_rows=True)
    state = PostState.start(settings.smoothing_window, stream_id=7)
    events = []
    for start in range(0, scores[0].size, chunk):
        part = [s[start : start + chunk] for s in scores]
        result = postprocess(part, thresholds, settings, state)
        state = result.state
        arrays = {
            "omni_score": part[0],
            "omni_decision": part[0] > 3.0,
            "tranad_score": part[1],
            "tranad_decision": part[1] > 3.0,
            "fused_score": result.final,
            "fused_decision": result.decision,
        }
        events += tracker.add(arrays, result.events)
    return events + tracker.finish(), tracker


@pytest.mark.parametrize("chunk", [1, 7, 64, 100, 333])
def test_postprocessing_reports_give_each_event_once_as_the_whole_series(chunk: int) -> None:
    scores = _scores(2000, seed=3)
    whole, _ = _stream(scores, 2000)
    chunked, tracker = _stream(scores, chunk)
    assert len(whole) >= 5
    assert [(e.start, e.end, e.peak_score) for e in chunked] == [
        (e.start, e.end, e.peak_score) for e in whole
    ]
    assert len({e.start for e in chunked}) == len(chunked)
    assert tracker.steps == 2000
    np.testing.assert_array_equal(tracker.array("omni_score"), scores[0])


def test_agreeing_detectors_are_the_ones_flagging_inside_the_event() -> None:
    scores = _scores(2000, seed=3)
    events, tracker = _stream(scores, 128)
    for event in events:
        omni = tracker.array("omni_decision")[event.start : event.end + 1].any()
        tranad = tracker.array("tranad_decision")[event.start : event.end + 1].any()
        expected = tuple(d for d, hit in (("omni", omni), ("tranad", tranad)) if hit)
        assert event.detectors == (expected or ("fused",))
    assert any("omni" in e.detectors for e in events)


def _decision_stream(decisions: np.ndarray, chunk: int):
    tracker = StreamTracker("A-1", "ACS", ("omni",), from_rows=False)
    scores = np.arange(decisions.size, dtype=np.float32)
    events = []
    for start in range(0, decisions.size, chunk):
        arrays = {
            "omni_score": scores[start : start + chunk],
            "omni_decision": decisions[start : start + chunk],
        }
        events += tracker.add(arrays, None)
    return events + tracker.finish()


@pytest.mark.parametrize("chunk", [1, 2, 5, 16, 999])
def test_detector_runs_continue_across_chunk_boundaries(chunk: int) -> None:
    rng = np.random.default_rng(11)
    decisions = rng.random(999) < 0.3
    decisions[-4:] = True  # a run still open at the end of the stream
    events = _decision_stream(decisions, chunk)
    assert [(e.start, e.end) for e in events] == decisions_to_events(decisions)
    # Scores are the step indices here, so the peak is the run's last step.
    assert all(e.peak_score == e.end for e in events)
    assert all(e.detectors == ("omni",) for e in events)


def test_a_run_filling_whole_chunks_is_one_event() -> None:
    decisions = np.zeros(40, bool)
    decisions[5:30] = True
    assert [(e.start, e.end) for e in _decision_stream(decisions, 10)] == [(5, 29)]


def test_series_grows_and_views_inclusive_ranges() -> None:
    series = Series(np.dtype(np.float32))
    for start in range(0, 3000, 700):
        series.append(np.arange(start, min(start + 700, 3000), dtype=np.float32))
    assert series.size == 3000
    np.testing.assert_array_equal(series.view(1020, 1023), [1020, 1021, 1022, 1023])
    np.testing.assert_array_equal(series.view(), np.arange(3000))
