"""The numbers a report shows: our metrics per detector, published figures, worst-first order.

Usage::

    metrics = report_metrics(run, channels)          # {"omni": {"overall", "channels"}, ...}
    order = worst_first(metrics, channels)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from satwatch.evaluation.metrics import prf
from satwatch.evaluation.run import Run, channel_metrics_from_arrays, ordered_detectors

LOGGER = logging.getLogger(__name__)

COUNT_KINDS = ("point", "pa", "event")

TARGET_EVENT_F1 = 0.80
"""Issue 6's target for the fused detector on the seed channels (event-wise F1)."""

GOAL_EVENT_F1 = 0.86
GOAL_PA_F1 = 0.92
"""Issue 6's goal beyond the target: beat every published figure."""


@dataclass(frozen=True)
class Published:
    """A published result on SMAP, shown beside ours.

    Attributes:
        method: Method name as the table shows it.
        scope: Which channels it was measured on.
        protocol: How it was scored (why it is not directly comparable).
        source: Citation (authors, venue, year).
        url: Where the paper is (a plain link; nothing is loaded from it).
        metrics: The reported figures, keys as in metrics.json (``event_f1``, ``pa_f1``...).
    """

    method: str
    scope: str
    protocol: str
    source: str
    url: str
    metrics: dict[str, float | int]


# Figures as published (their digits). Telemanom's SMAP results: 59 TP, 10 FP, 10 FN of 69
# labelled sequences, so precision = recall = 59/69 and F1 = 2*59 / (2*59 + 10 + 10) = 0.855.
PUBLISHED: tuple[Published, ...] = (
    Published(
        "Telemanom (LSTM + dynamic thresholds)",
        "all 55 SMAP channels",
        "event-wise, Telemanom's definition (as ours)",
        "Hundman et al., KDD 2018",
        "https://arxiv.org/abs/1802.04431",
        {
            "event_f1": 0.855,
            "event_precision": 0.855,
            "event_recall": 0.855,
            "event_tp": 59,
            "event_fp": 10,
            "event_fn": 10,
        },
    ),
    Published(
        "Orion AER",
        "all 55 SMAP channels",
        "event-wise (Orion's overlapping-segment scoring)",
        "Wong et al., IEEE BigData 2022",
        "https://arxiv.org/abs/2212.13558",
        {"event_f1": 0.764},
    ),
    Published(
        "TranAD",
        "all 55 SMAP channels, concatenated",
        "point-adjusted, POT threshold",
        "Tuli et al., VLDB 2022 (Table: SMAP)",
        "https://arxiv.org/abs/2201.07284",
        {"pa_f1": 0.8915},
    ),
    Published(
        "OmniAnomaly",
        "all 55 SMAP channels, concatenated",
        "point-adjusted, POT threshold (as reported by TranAD)",
        "Tuli et al., VLDB 2022 (Table: SMAP)",
        "https://arxiv.org/abs/2201.07284",
        {"pa_f1": 0.8728},
    ),
)


def report_metrics(run: Run, channels: Sequence[str]) -> dict[str, dict]:
    """Per detector ``{"overall", "channels"}`` restricted to ``channels``.

    metrics.json is used where it has a channel; otherwise the figures are computed from the
    channel's arrays. ``overall`` sums the counts of the shown channels (micro), so a report
    on a subset of channels does not show the whole run's overall figures.
    """
    detectors = set(run.detectors)
    for name in channels:
        if name in run.channels:
            detectors.update(run.channel(name).detectors)
    out: dict[str, dict] = {}
    for detector in ordered_detectors(detectors):
        per_channel: dict[str, dict] = {}
        for name in channels:
            figures = run.channel_metrics(detector, name)
            if figures is None and name in run.channels:
                figures = channel_metrics_from_arrays(run.channel(name), [detector]).get(detector)
            if figures is not None:
                per_channel[name] = figures
        if per_channel:
            out[detector] = {"overall": micro_overall(per_channel), "channels": per_channel}
    return out


def micro_overall(per_channel: dict[str, dict]) -> dict[str, float | int]:
    """Sum ``<kind>_tp/fp/fn`` over channels and recompute precision/recall/F1."""
    overall: dict[str, float | int] = {}
    for kind in COUNT_KINDS:
        keys = [f"{kind}_{c}" for c in ("tp", "fp", "fn")]
        if not all(k in m for m in per_channel.values() for k in keys):
            continue
        counts = [sum(int(m[k]) for m in per_channel.values()) for k in keys]
        overall.update(dict(zip(keys, counts, strict=True)))
        for key, value in prf(*counts).items():
            overall[f"{kind}_{key}"] = value
    return overall


def sort_detector(metrics: dict[str, dict]) -> str | None:
    """The detector that orders the channels: ``fused`` when present, else None (best of)."""
    return "fused" if "fused" in metrics else None


def channel_key_f1(metrics: dict[str, dict], channel: str) -> float | None:
    """The F1 a channel is ranked by: fused event F1, else the best detector's; None if none."""
    detector = sort_detector(metrics)
    if detector is not None:
        figures = metrics[detector]["channels"].get(channel)
        return None if figures is None else float(figures["event_f1"])
    values = [
        float(section["channels"][channel]["event_f1"])
        for section in metrics.values()
        if channel in section["channels"]
    ]
    return max(values) if values else None


def worst_first(metrics: dict[str, dict], channels: Sequence[str]) -> list[str]:
    """Channels by ascending event F1, more misses + false alarms first on ties.

    Channels without metrics go last, in their given order.
    """

    def errors(channel: str) -> int:
        detector = sort_detector(metrics) or next(
            (d for d, s in metrics.items() if channel in s["channels"]), None
        )
        if detector is None:
            return 0
        figures = metrics[detector]["channels"].get(channel, {})
        return int(figures.get("event_fp", 0)) + int(figures.get("event_fn", 0))

    scored = [c for c in channels if channel_key_f1(metrics, c) is not None]
    unscored = [c for c in channels if channel_key_f1(metrics, c) is None]
    scored.sort(key=lambda c: (channel_key_f1(metrics, c), -errors(c), c))
    return scored + unscored


__all__ = [
    "GOAL_EVENT_F1",
    "GOAL_PA_F1",
    "PUBLISHED",
    "TARGET_EVENT_F1",
    "Published",
    "channel_key_f1",
    "micro_overall",
    "report_metrics",
    "sort_detector",
    "worst_first",
]
