"""Per-step decisions <-> events (inclusive ``(start, end)`` runs of anomalous steps).

Usage::

    >>> decisions_to_events(np.array([0, 1, 1, 0, 1], dtype=bool))
    [(1, 2), (4, 4)]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from satwatch.pipeline.event_finder import runs

LOGGER = logging.getLogger(__name__)

Event = tuple[int, int]
"""An anomalous interval of time steps, inclusive at both ends."""


def decisions_to_events(decisions: np.ndarray) -> list[Event]:
    """Return the inclusive runs of True in a 1-D boolean array.

    Args:
        decisions: ``(T,)`` per-step decisions (anything numpy can view as bool).

    Returns:
        ``[(start, end), ...]`` sorted, disjoint and non-adjacent.

    Raises:
        ValueError: ``decisions`` is not one-dimensional.
    """
    flags = np.asarray(decisions, dtype=bool)
    if flags.ndim != 1:
        raise ValueError(f"decisions must be 1-D (T,); got shape {flags.shape}")
    return runs(flags)


def events_to_decisions(events: Iterable[Any], length: int) -> np.ndarray:
    """Return a ``(length,)`` bool array that is True inside the given inclusive events.

    Args:
        events: ``(start, end)`` pairs or objects with ``start``/``end`` attributes.
        length: Number of time steps.

    Raises:
        ValueError: An event lies outside ``[0, length)``.
    """
    flags = np.zeros(length, dtype=bool)
    for start, end in as_intervals(events):
        if not 0 <= start <= end < length:
            raise ValueError(f"event ({start}, {end}) outside a series of {length} steps")
        flags[start : end + 1] = True
    return flags


def as_intervals(events: Iterable[Any]) -> list[Event]:
    """Normalise ``(start, end)`` pairs or ``LabelledEvent``-like objects to tuples."""
    out: list[Event] = []
    for event in events:
        if hasattr(event, "start") and hasattr(event, "end"):
            out.append((int(event.start), int(event.end)))
        else:
            start, end = event
            out.append((int(start), int(end)))
    return out


def overlap_matrix(first: Sequence[Event], second: Sequence[Event]) -> np.ndarray:
    """``(len(first), len(second))`` bool: True where two inclusive intervals share a step."""
    a = np.asarray(first, dtype=np.int64).reshape(-1, 2)
    b = np.asarray(second, dtype=np.int64).reshape(-1, 2)
    return (a[:, None, 0] <= b[None, :, 1]) & (b[None, :, 0] <= a[:, None, 1])
