"""Point-wise, point-adjusted and event-wise metrics on hand-computed fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from satwatch.data import LabelledEvent, load_dataset
from satwatch.evaluation.metrics import (
    METRIC_KEYS,
    channel_metrics,
    evaluate_channels,
    event_counts,
    point_adjust,
    point_adjusted_f1,
    point_scores,
)


def _b(*values: int) -> np.ndarray:
    return np.array(values, dtype=bool)


# Channel A: labelled segments [1, 3] and [6, 7]; detections at 2, 5 and 9.
LABELS_A = _b(0, 1, 1, 1, 0, 0, 1, 1, 0, 0)
PRED_A = _b(0, 0, 1, 0, 0, 1, 0, 0, 0, 1)
# Channel B: labelled segment [0, 1]; one detection [1, 2].
LABELS_B = _b(1, 1, 0, 0)
PRED_B = _b(0, 1, 1, 0)


def test_point_scores_by_hand() -> None:
    # tp = {2}, fp = {5, 9}, fn = {1, 3, 6, 7}
    scores = point_scores(PRED_A, LABELS_A)
    assert scores == pytest.approx({"precision": 1 / 3, "recall": 1 / 5, "f1": 0.25})


def test_point_adjust_fills_only_segments_with_a_hit() -> None:
    adjusted = point_adjust(PRED_A, LABELS_A)
    assert adjusted.tolist() == _b(0, 1, 1, 1, 0, 1, 0, 0, 0, 1).tolist()
    assert PRED_A.tolist() == _b(0, 0, 1, 0, 0, 1, 0, 0, 0, 1).tolist()  # not modified


def test_point_adjusted_f1_by_hand() -> None:
    # adjusted: tp = {1, 2, 3}, fp = {5, 9}, fn = {6, 7}: F1 = 6 / (6 + 2 + 2)
    assert point_adjusted_f1(PRED_A, LABELS_A) == pytest.approx(0.6)


def test_event_counts_by_hand() -> None:
    # detections (2,2) (5,5) (9,9); labelled (1,3) (6,7)
    assert event_counts([(2, 2), (5, 5), (9, 9)], [(1, 3), (6, 7)]) == (1, 2, 1)


def test_one_detection_over_two_labelled_events_finds_both() -> None:
    assert event_counts([(1, 3)], [(0, 1), (3, 4)]) == (2, 0, 0)


def test_two_detections_in_one_labelled_event_are_one_tp_and_no_fp() -> None:
    assert event_counts([(0, 0), (3, 3)], [(0, 5)]) == (1, 0, 0)


def test_event_counts_with_nothing_detected_or_labelled() -> None:
    assert event_counts([], [LabelledEvent(1, 2, "point")]) == (0, 0, 1)
    assert event_counts([(1, 2)], []) == (0, 1, 0)


def test_no_detection_gives_zero_not_nan() -> None:
    scores = point_scores(np.zeros(4, dtype=bool), LABELS_B)
    assert scores == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(10,\) and \(4,\)"):
        point_scores(PRED_A, LABELS_B)


def test_channel_metrics_by_hand() -> None:
    metrics = channel_metrics(PRED_A, LABELS_A).as_dict()
    assert metrics["point_f1"] == pytest.approx(0.25)
    assert metrics["pa_f1"] == pytest.approx(0.6)
    assert metrics["event_precision"] == pytest.approx(1 / 3)
    assert metrics["event_recall"] == pytest.approx(1 / 2)
    assert metrics["event_f1"] == pytest.approx(0.4)
    assert (metrics["event_tp"], metrics["event_fp"], metrics["event_fn"]) == (1, 2, 1)
    assert metrics["steps"] == 10


def test_explicit_label_events_keep_adjacent_events_apart() -> None:
    labels = _b(1, 1, 1, 1)
    pred = _b(1, 0, 0, 0)
    assert channel_metrics(pred, labels).event_fn == 0
    split = channel_metrics(
        pred, labels, [LabelledEvent(0, 1, "point"), LabelledEvent(2, 3, "point")]
    )
    assert (split.event_tp, split.event_fn) == (1, 1)


def test_overall_is_micro_over_channels() -> None:
    report = evaluate_channels({"A-1": (PRED_A, LABELS_A, None), "B-1": (PRED_B, LABELS_B, None)})
    assert set(report) == {"overall", "channels"}
    assert set(report["channels"]) == {"A-1", "B-1"}
    overall = report["overall"]
    assert set(METRIC_KEYS) <= set(overall)
    # point: tp 1+1, fp 2+1, fn 4+1 -> F1 = 4 / (4 + 3 + 5)
    assert overall["point_f1"] == pytest.approx(1 / 3)
    # point-adjusted: tp 3+2, fp 2+1, fn 2+0 -> F1 = 10 / (10 + 3 + 2)
    assert overall["pa_f1"] == pytest.approx(2 / 3)
    # events: tp 1+1, fp 2+0, fn 1+0
    assert overall["event_precision"] == pytest.approx(0.5)
    assert overall["event_recall"] == pytest.approx(2 / 3)
    assert overall["event_f1"] == pytest.approx(4 / 7)
    assert overall["steps"] == 14
    assert report["channels"]["B-1"]["event_f1"] == pytest.approx(1.0)


def test_random_scores_look_good_point_adjusted_and_bad_event_wise(shared_data: Path) -> None:
    """The issue's point: flagging a random 5% of steps on the 27 seed channels.

    Measured over seeds 0-4: pa_f1 0.883-0.885, event_f1 0.0074-0.0077, point_f1 about 0.08.
    """
    dataset = load_dataset(shared_data)
    rng = np.random.default_rng(0)
    results = {}
    for name in dataset.resolve_channels("seed"):
        chan = dataset.channel(name)
        score = rng.random(chan.labels.size)
        results[name] = (score > np.quantile(score, 0.95), chan.labels, chan.events)
    overall = evaluate_channels(results)["overall"]
    assert overall["event_tp"] + overall["event_fn"] == 34
    assert overall["pa_f1"] > 0.85
    assert overall["event_f1"] < 0.02
    assert overall["point_f1"] < 0.12
