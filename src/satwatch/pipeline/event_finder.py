"""Runs of anomalous steps, and the served stage's events made of them.

:func:`runs` finds the inclusive ``(start, end)`` runs of True in a boolean array: the dynamic
threshold's runs above its ``epsilon`` and the events of the postprocessing stage both come
from it. :func:`find_events` turns one chunk's per-step decisions into events, carrying the
open event to the next chunk:

- runs closer than ``merge_gap`` quiet steps are merged into one event;
- an event shorter than ``min_event_length`` steps (start to end, gaps included) is dropped;
- rows are ``(start, end, peak)``: absolute step indices since the stream began (inclusive)
  and the highest score of the event.

Example::

    >>> runs(np.array([0, 1, 1, 0, 1], bool))
    [(1, 2), (4, 4)]
    >>> final = np.array([0.0, 2.0, 3.0, 0.0, 0.0, 4.0])
    >>> find_events(final, final > 1, 0, None, min_event_length=2, merge_gap=1)
    ([(1, 2, 3.0)], (5, 5, 4.0))
"""

from __future__ import annotations

import logging

import numpy as np

LOGGER = logging.getLogger(__name__)

EventRow = tuple[int, int, float]
"""An event ``(start, end, peak)``: inclusive absolute step indices and its highest score."""


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def find_events(
    final: np.ndarray,
    decision: np.ndarray,
    offset: int,
    run: EventRow | None,
    *,
    min_event_length: int,
    merge_gap: int,
) -> tuple[list[EventRow], EventRow | None]:
    """Events of one chunk: ``(events to report, open event carried on)``.

    Reported: events closed in this chunk that are long enough, then the open event when it
    is already long enough.

    Args:
        final: The chunk's scores ``(T,)``; an event's peak is their maximum over it.
        decision: The chunk's per-step decisions, bool ``(T,)``.
        offset: Stream index of the chunk's first step (indices are ``offset`` + position).
        run: The event left open by the previous chunk, or ``None``.
        min_event_length: Shortest event kept, in steps.
        merge_gap: Runs separated by at most this many quiet steps form one event.
    """
    closed: list[EventRow] = []

    def close(event: EventRow) -> None:
        if event[1] - event[0] + 1 >= min_event_length:
            closed.append(event)

    for first, last in runs(decision):
        peak = float(final[first : last + 1].max())
        start, end = offset + first, offset + last
        if run is not None and start - run[1] - 1 <= merge_gap:
            run = (run[0], end, max(run[2], peak))
        else:
            if run is not None:
                close(run)
            run = (start, end, peak)
    last_step = offset + final.size - 1
    if run is not None and last_step - run[1] > merge_gap:
        close(run)
        run = None
    report = list(closed)
    if run is not None and run[1] - run[0] + 1 >= min_event_length:
        report.append(run)
    return report, run
