"""Expert labels of SMAP/MSL telemetry: ``labeled_anomalies.csv`` -> events and point labels.

The CSV (Hundman et al., KDD 2018) has one row per channel with the columns ``chan_id``,
``spacecraft``, ``anomaly_sequences`` (``"[[start, end], ...]"``, inclusive, 0-based test
indices), ``class`` (``"[point, contextual]"``) and ``num_values`` (test length). Usage::

    labels = read_labels(Path("labeled_anomalies.csv"))
    info = labels["P-2"]          # ChannelLabels(channel, spacecraft, num_values, events)
    mask = events_to_mask(info.events, info.num_values)

A channel may appear on several rows (``P-2`` does, with overlapping intervals): the rows are
combined and overlapping or touching intervals merged into one event, so each labelled
anomaly counts once in event-wise metrics.
"""

from __future__ import annotations

import ast
import csv
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

LABELS_FILE = "labeled_anomalies.csv"
EVENT_KINDS = ("point", "contextual")
_COLUMNS = ("chan_id", "spacecraft", "anomaly_sequences", "class", "num_values")


@dataclass(frozen=True)
class LabelledEvent:
    """One labelled anomaly: test steps ``start``..``end`` inclusive, ``kind`` point|contextual."""

    start: int
    end: int
    kind: str

    @property
    def length(self) -> int:
        """Number of time steps the event covers."""
        return self.end - self.start + 1


@dataclass(frozen=True)
class ChannelLabels:
    """Everything the CSV says about one channel."""

    channel: str
    spacecraft: str
    num_values: int
    events: tuple[LabelledEvent, ...]


def merge_events(events: Iterable[LabelledEvent]) -> list[LabelledEvent]:
    """Merge overlapping or adjacent events into one; keep them sorted by start.

    When merged events disagree on the kind, ``"point"`` wins if any part is a point
    anomaly (it is the stronger statement), otherwise ``"contextual"``.

    Args:
        events: Events in any order.

    Returns:
        Disjoint, non-adjacent events sorted by start.
    """
    merged: list[LabelledEvent] = []
    for event in sorted(events, key=lambda e: (e.start, e.end)):
        if merged and event.start <= merged[-1].end + 1:
            last = merged[-1]
            kind = "point" if "point" in (last.kind, event.kind) else last.kind
            merged[-1] = LabelledEvent(last.start, max(last.end, event.end), kind)
        else:
            merged.append(event)
    return merged


def events_to_mask(events: Iterable[LabelledEvent], length: int) -> np.ndarray:
    """Return a boolean label per time step: True inside any event (inclusive ends).

    Raises:
        DataError: An event lies outside ``[0, length)``.
    """
    mask = np.zeros(length, dtype=bool)
    for event in events:
        if event.start < 0 or event.end >= length or event.start > event.end:
            raise DataError(
                f"labelled event [{event.start}, {event.end}] does not fit a test series of "
                f"{length} steps (expected 0 <= start <= end < {length})"
            )
        mask[event.start : event.end + 1] = True
    return mask


def _parse_row(row: dict[str, str], line: int, path: Path) -> ChannelLabels:
    where = f"{path}, line {line}"
    try:
        sequences = ast.literal_eval(row["anomaly_sequences"])
        num_values = int(row["num_values"])
    except (ValueError, SyntaxError) as err:
        raise DataError(f"{where}: cannot parse anomaly_sequences/num_values ({err})") from err
    # The class column is an unquoted list like "[point, contextual]".
    kinds = [k.strip() for k in row["class"].strip().strip("[]").split(",") if k.strip()]
    if len(kinds) != len(sequences):
        raise DataError(
            f"{where}: channel {row['chan_id']} has {len(sequences)} anomaly sequences but "
            f"{len(kinds)} classes; expected one class per sequence"
        )
    events = []
    for pair, kind in zip(sequences, kinds, strict=True):
        if kind not in EVENT_KINDS or len(pair) != 2:
            raise DataError(
                f"{where}: event {pair} of class {kind!r}; expected [start, end] of class "
                f"point or contextual"
            )
        events.append(LabelledEvent(int(pair[0]), int(pair[1]), kind))
    return ChannelLabels(row["chan_id"], row["spacecraft"], num_values, tuple(events))


def read_labels(path: Path) -> dict[str, ChannelLabels]:
    """Read ``labeled_anomalies.csv``; channels on several rows are combined (events merged).

    Args:
        path: The CSV file.

    Returns:
        Channel id -> its labels, in the CSV's order of first appearance.

    Raises:
        DataError: The file is missing, lacks a column, or has an unparsable or
            inconsistent row.
    """
    if not path.is_file():
        raise DataError(f"labels file not found: {path} (expected {LABELS_FILE})")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; got {reader.fieldnames}")
        rows = [_parse_row(row, line, path) for line, row in enumerate(reader, start=2)]

    labels: dict[str, ChannelLabels] = {}
    for row in rows:
        previous = labels.get(row.channel)
        if previous is None:
            labels[row.channel] = row
            continue
        if (previous.spacecraft, previous.num_values) != (row.spacecraft, row.num_values):
            raise DataError(
                f"{path}: channel {row.channel} listed twice with different spacecraft/"
                f"num_values: {previous.spacecraft}/{previous.num_values} vs "
                f"{row.spacecraft}/{row.num_values}"
            )
        LOGGER.debug("channel %s listed twice in %s: merging its intervals", row.channel, path)
        labels[row.channel] = ChannelLabels(
            row.channel, row.spacecraft, row.num_values, tuple(previous.events + row.events)
        )
    return {
        name: ChannelLabels(c.channel, c.spacecraft, c.num_values, tuple(merge_events(c.events)))
        for name, c in labels.items()
    }
