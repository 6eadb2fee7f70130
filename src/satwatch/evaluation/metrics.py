"""Detection metrics: point-wise, point-adjusted and event-wise (Telemanom), pure numpy.

* **point-wise**: precision/recall/F1 over time steps.
* **point-adjusted** (the protocol of the OmniAnomaly and TranAD papers): if any step of a
  labelled segment is flagged, every step of that segment counts as flagged; then point-wise.
  It rewards a detector for one lucky hit in a long segment, so it flatters random scores.
* **event-wise** (Hundman et al., KDD 2018): TP = labelled events overlapped by some detected
  event, FP = detected events that overlap no labelled event, FN = labelled events overlapped
  by none. Precision = TP / (TP + FP), recall = TP / (TP + FN).

Overall figures are micro-averaged: counts summed over channels (for point metrics that is
the same as concatenating the channels). A ratio with a zero denominator is 0.0.

Usage::

    per_channel = {name: channel_metrics(pred[name], labels[name], events[name]) for name in ...}
    report = summarize(per_channel)   # {"overall": {...}, "channels": {"E-1": {...}, ...}}
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satwatch.evaluation.events import as_intervals, decisions_to_events, overlap_matrix

LOGGER = logging.getLogger(__name__)

METRIC_KEYS = ("point_f1", "pa_f1", "event_precision", "event_recall", "event_f1")
"""The headline figures every report carries (metrics.json, metrics.csv)."""

TABLE_COLUMNS = (
    ("point_f1", "point F1"),
    ("pa_f1", "PA F1"),
    ("event_precision", "event P"),
    ("event_recall", "event R"),
    ("event_f1", "event F1"),
    ("event_tp", "TP"),
    ("event_fp", "FP"),
    ("event_fn", "FN"),
)
"""The overall figures the tables show (key, column title), as the commands print them."""


def table_cells(overall: Mapping[str, Any]) -> list[str]:
    """One row's figures as table cells (ratios to 3 decimals, counts as they are)."""
    return [
        str(overall[key]) if isinstance(overall[key], int) else f"{overall[key]:.3f}"
        for key, _ in TABLE_COLUMNS
    ]


def _ratio(num: int, den: int) -> float:
    return float(num) / float(den) if den else 0.0


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 from counts (0.0 where undefined)."""
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {"precision": precision, "recall": recall, "f1": f1}


def _check_pair(pred: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    if pred.ndim != 1 or pred.shape != labels.shape:
        raise ValueError(
            f"pred and labels must be 1-D of the same length; got {pred.shape} and {labels.shape}"
        )
    return pred, labels


def point_counts(pred: np.ndarray, labels: np.ndarray) -> tuple[int, int, int]:
    """Point-wise ``(tp, fp, fn)`` of boolean decisions against boolean labels."""
    pred, labels = _check_pair(pred, labels)
    tp = int(np.count_nonzero(pred & labels))
    fp = int(np.count_nonzero(pred & ~labels))
    fn = int(np.count_nonzero(~pred & labels))
    return tp, fp, fn


def point_scores(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Point-wise precision, recall and F1.

    Args:
        pred: ``(T,)`` bool decisions.
        labels: ``(T,)`` bool labels.

    Returns:
        ``{"precision", "recall", "f1"}``.
    """
    return prf(*point_counts(pred, labels))


def point_adjust(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return ``pred`` with every labelled segment that holds a detection filled completely.

    Labelled segments are the runs of True in ``labels``; steps outside them are unchanged.
    """
    pred, labels = _check_pair(pred, labels)
    adjusted = pred.copy()
    for start, end in decisions_to_events(labels):
        if pred[start : end + 1].any():
            adjusted[start : end + 1] = True
    return adjusted


def point_adjusted_f1(pred: np.ndarray, labels: np.ndarray) -> float:
    """Point-adjusted F1 (OmniAnomaly/TranAD protocol): point-wise F1 after :func:`point_adjust`."""
    return point_scores(point_adjust(pred, labels), labels)["f1"]


def event_counts(pred_events: Iterable[Any], label_events: Iterable[Any]) -> tuple[int, int, int]:
    """Event-wise ``(tp, fp, fn)`` as Telemanom defines them.

    Args:
        pred_events: Detected inclusive ``(start, end)`` intervals.
        label_events: Labelled intervals (``(start, end)`` or ``LabelledEvent``).

    Returns:
        ``tp`` labelled events overlapped by some detection, ``fp`` detections that overlap no
        labelled event, ``fn`` labelled events overlapped by no detection.
    """
    detected = as_intervals(pred_events)
    labelled = as_intervals(label_events)
    if not detected or not labelled:
        return 0, len(detected), len(labelled)
    overlaps = overlap_matrix(detected, labelled)
    tp = int(overlaps.any(axis=0).sum())
    fp = int((~overlaps.any(axis=1)).sum())
    return tp, fp, len(labelled) - tp


@dataclass(frozen=True)
class ChannelMetrics:
    """The counts behind every metric of one channel (or of a sum of channels)."""

    point_tp: int
    point_fp: int
    point_fn: int
    pa_tp: int
    pa_fp: int
    pa_fn: int
    event_tp: int
    event_fp: int
    event_fn: int
    steps: int

    def __add__(self, other: ChannelMetrics) -> ChannelMetrics:
        """Sum the counts (micro-averaging over channels)."""
        return ChannelMetrics(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )

    def as_dict(self) -> dict[str, float | int]:
        """Flat dict: ``point_*``, ``pa_*``, ``event_*`` precision/recall/f1 and the counts."""
        out: dict[str, float | int] = {}
        for kind in ("point", "pa", "event"):
            counts = (getattr(self, f"{kind}_{c}") for c in ("tp", "fp", "fn"))
            for key, value in prf(*counts).items():
                out[f"{kind}_{key}"] = value
        for name in self.__dataclass_fields__:
            out[name] = getattr(self, name)
        return out


def channel_metrics(
    pred: np.ndarray, labels: np.ndarray, label_events: Iterable[Any] | None = None
) -> ChannelMetrics:
    """Score one channel's decisions.

    Args:
        pred: ``(T,)`` bool decisions of the detector.
        labels: ``(T,)`` bool labels.
        label_events: Labelled events for the event-wise counts; default the runs of
            ``labels`` (pass the CSV events to keep adjacent labelled events apart).

    Returns:
        The counts; :meth:`ChannelMetrics.as_dict` turns them into metrics.
    """
    pred, labels = _check_pair(pred, labels)
    events = decisions_to_events(labels) if label_events is None else as_intervals(label_events)
    point = point_counts(pred, labels)
    pa = point_counts(point_adjust(pred, labels), labels)
    event = event_counts(decisions_to_events(pred), events)
    return ChannelMetrics(*point, *pa, *event, steps=int(pred.size))


def summarize(per_channel: Mapping[str, ChannelMetrics]) -> dict[str, Any]:
    """Shape per-channel counts as metrics.json: ``{"overall": {...}, "channels": {...}}``.

    ``overall`` sums the counts over channels (micro) before computing the ratios.
    """
    channels = {name: m.as_dict() for name, m in per_channel.items()}
    total = ChannelMetrics(*([0] * len(ChannelMetrics.__dataclass_fields__)))
    for metrics in per_channel.values():
        total = total + metrics
    return {"overall": total.as_dict(), "channels": channels}


def evaluate_channels(
    results: Mapping[str, tuple[np.ndarray, np.ndarray, Iterable[Any] | None]],
) -> dict[str, Any]:
    """Score several channels at once.

    Args:
        results: Channel -> ``(pred, labels, label_events)``; ``label_events`` may be None.

    Returns:
        The metrics.json-shaped dict of :func:`summarize`.
    """
    return summarize({name: channel_metrics(*triple) for name, triple in results.items()})


CSV_KEYS = (
    "point_precision",
    "point_recall",
    "point_f1",
    "pa_f1",
    "event_precision",
    "event_recall",
    "event_f1",
    "event_tp",
    "event_fp",
    "event_fn",
)
"""The columns of ``metrics.csv``, after ``detector`` and ``channel``."""


def write_report(report: dict, output: Path) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.csv`` (one row per detector x channel, plus overall)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    json_path = output / "metrics.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    csv_path = output / "metrics.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["detector", "channel", *CSV_KEYS])
        for detector, section in report["detectors"].items():
            rows = [*section["channels"].items(), ("overall", section["overall"])]
            for channel, values in rows:
                writer.writerow([detector, channel, *(_fmt(values[k]) for k in CSV_KEYS)])
    return json_path, csv_path


def _fmt(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6f}"
