"""One PNG per channel: telemetry, each detector's score over its threshold, decisions, events.

Panels share the time axis, top to bottom: the raw telemetry value; one score panel per
detector (score line, dashed threshold, log scale when the scores span decades); a timeline
strip with one row per detector's decisions, the detected events and the expert labels.
Labelled anomalies are shaded red in every panel so a miss or a false alarm shows at a glance.

Figures are drawn on a bare :class:`~matplotlib.figure.Figure` with the Agg canvas, never
through ``pyplot``, so drawing leaves no global state behind and needs no display.

Usage::

    channel_figure(run.channel("E-1"), run.events_of("E-1"), Path("report/figures/E-1.png"))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from satwatch.detectors import registry
from satwatch.evaluation.events import decisions_to_events
from satwatch.evaluation.run import ChannelRun, RunEvent
from satwatch.exceptions import ModelError

LOGGER = logging.getLogger(__name__)

COLOURS = {
    "value": "#33415c",
    "omni": "#1f77b4",
    "tranad": "#2a9d8f",
    "fused": "#7b2cbf",
    "label": "#d62828",
    "event": "#f77f00",
    "other": "#6c757d",
}
"""Colours shared by the figures and the HTML page (one per detector, labels, events)."""

LOG_SPAN = 30.0
"""Use a log score axis when the 99.9th percentile exceeds the median by this factor."""

DPI = 100
WIDTH = 13.0
MIN_SPAN = 1 / 500
"""Narrowest drawn span as a fraction of the series, so a one-step event stays visible."""


def colour_of(detector: str) -> str:
    """The colour of a detector (grey for unknown names)."""
    return COLOURS.get(detector, COLOURS["other"])


def name_of(detector: str) -> str:
    """The display name of a detector (its registered title)."""
    try:
        return registry.detector(detector).title
    except ModelError:
        return detector


def wants_log_scale(scores: np.ndarray, threshold: float) -> bool:
    """True when scores are positive and span decades, so a linear axis would flatten them."""
    finite = scores[np.isfinite(scores)]
    if finite.size == 0 or finite.min() <= 0 or not threshold > 0:
        return False
    median = float(np.median(finite))
    return float(np.quantile(finite, 0.999)) > LOG_SPAN * median


def visible_span(start: int, end: int, length: int) -> tuple[float, float]:
    """``(left, width)`` of an inclusive step interval, widened about its centre to be seen."""
    width = max(end - start + 1.0, MIN_SPAN * length)
    centre = (start + end) / 2
    return centre - width / 2, width


def channel_figure(
    chan: ChannelRun,
    events: Sequence[RunEvent],
    path: Path,
    title: str | None = None,
) -> Path:
    """Draw one channel's figure and save it as PNG.

    Args:
        chan: The channel's arrays.
        events: Events detected on the channel.
        path: Where to write the PNG (parent folders are created).
        title: Headline above the panels (default: the channel id).

    Returns:
        ``path``.
    """
    detectors = chan.detectors
    steps = np.arange(chan.value.size)
    labelled = decisions_to_events(chan.labels) if chan.labels is not None else []
    heights = [2.2] + [1.3] * len(detectors) + [0.32 * (len(detectors) + 2)]
    fig = Figure(figsize=(WIDTH, sum(heights) + 0.9), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights, "hspace": 0.12}
    )
    value_ax, score_axes, strip = axes[0], axes[1:-1], axes[-1]

    for ax in axes:
        for start, end in labelled:
            left, width = visible_span(start, end, steps.size)
            ax.axvspan(left, left + width, color=COLOURS["label"], alpha=0.13, lw=0)
        ax.grid(axis="x", color="#e9ecef", lw=0.6)
        ax.tick_params(labelsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)

    value_ax.plot(steps, chan.value, color=COLOURS["value"], lw=0.8)
    value_ax.set_ylabel("value", fontsize=9)
    for event in events:
        # Detected events as a bar along the top of the telemetry panel.
        left, width = visible_span(event.start, event.end, steps.size)
        value_ax.axvspan(left, left + width, ymin=0.93, ymax=1.0, color=COLOURS["event"], lw=0)

    for ax, detector in zip(score_axes, detectors, strict=True):
        _score_panel(ax, detector, chan.scores[detector], chan.thresholds[detector])

    _strip(strip, chan, detectors, events, labelled)
    strip.set_xlim(-0.5, max(chan.value.size - 0.5, 0.5))
    strip.set_xlabel("time step (test split)", fontsize=9)

    fig.suptitle(title or chan.channel, x=0.01, ha="left", fontsize=12, fontweight="bold")
    fig.legend(
        handles=_legend(detectors),
        loc="upper right",
        ncol=len(detectors) + 4,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.99, 1.0),
    )
    fig.subplots_adjust(left=0.07, right=0.99, top=1 - 0.55 / fig.get_figheight(), bottom=0.08)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _score_panel(ax, detector: str, scores: np.ndarray, threshold: float) -> None:
    colour = colour_of(detector)
    scores = np.asarray(scores, dtype=np.float64)
    log = wants_log_scale(scores, threshold)
    ax.plot(np.arange(scores.size), scores, color=colour, lw=0.7)
    if np.isfinite(threshold):
        ax.axhline(threshold, color="#212529", lw=0.9, ls="--")
        above = np.where(scores > threshold, scores, np.nan)
        # Overdraw the steps above the threshold thicker so alarms stand out.
        ax.plot(np.arange(scores.size), above, color=colour, lw=1.6)
    if log:
        ax.set_yscale("log")
    label = name_of(detector) + (" (log)" if log else "")
    ax.set_ylabel(label, fontsize=9, color=colour)


def _strip(ax, chan: ChannelRun, detectors: list[str], events, labelled) -> None:
    rows: list[tuple[str, list[tuple[int, int]], str]] = [
        (name_of(d), decisions_to_events(chan.decisions[d]), colour_of(d)) for d in detectors
    ]
    rows.append(("events", [(e.start, e.end) for e in events], COLOURS["event"]))
    rows.append(("labelled", labelled, COLOURS["label"]))
    for row, (_, runs, colour) in enumerate(reversed(rows)):
        spans = [visible_span(start, end, chan.value.size) for start, end in runs]
        ax.broken_barh(spans, (row + 0.15, 0.7), color=colour, lw=0)
    ax.set_yticks(np.arange(len(rows)) + 0.5)
    ax.set_yticklabels([name for name, _, _ in reversed(rows)], fontsize=8)
    ax.set_ylim(0, len(rows))
    ax.grid(False)


def _legend(detectors: list[str]) -> list:
    handles = [Line2D([], [], color=COLOURS["value"], lw=1.2, label="telemetry value")]
    handles += [Line2D([], [], color=colour_of(d), lw=1.5, label=name_of(d)) for d in detectors]
    handles.append(Line2D([], [], color="#212529", lw=1, ls="--", label="threshold"))
    handles.append(Patch(color=COLOURS["label"], alpha=0.3, label="labelled anomaly"))
    handles.append(Patch(color=COLOURS["event"], label="detected event"))
    return handles


__all__ = ["COLOURS", "channel_figure", "colour_of", "name_of", "wants_log_scale"]
