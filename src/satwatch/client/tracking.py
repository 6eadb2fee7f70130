"""Per-step arrays and events of one stream, put back together across chunk boundaries.

Two sources of events:

* postprocessing (``custom_logic``, the ensembles, the step-by-step pipeline) reports an
  event in every chunk from the moment it is long enough until it closes, always with the
  same start; the last report for a start is the event. Rows before the last one of a chunk
  are closed; the last one may still grow, so it is held until a later chunk no longer
  reports it, or the stream ends.
* a single detector gives per-step decisions only: runs of True continue across a chunk
  boundary when the previous chunk ended inside a run, exactly as
  :func:`satwatch.evaluation.events.decisions_to_events` cuts the whole series.

Either way each event comes out once, with 0-based inclusive steps of the replayed series.

Example::

    tracker = StreamTracker("E-1", "EPS", detectors=("omni", "tranad"), from_rows=True)
    for result in results:
        for event in tracker.add(result.arrays, result.reported):
            print(event)
    tail = tracker.finish()
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from satwatch.evaluation.events import decisions_to_events
from satwatch.evaluation.run import RunEvent

LOGGER = logging.getLogger(__name__)

FUSED = "fused"


class Series:
    """A growing 1-D array (amortised appends, views of any range)."""

    def __init__(self, dtype: np.dtype) -> None:
        self._data = np.zeros(1024, dtype)
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        """Add values at the end."""
        values = np.asarray(values, self._data.dtype).reshape(-1)
        needed = self.size + values.size
        if needed > self._data.size:
            grown = np.zeros(max(needed, 2 * self._data.size), self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : needed] = values
        self.size = needed

    def view(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """Steps ``start..end`` inclusive (all when ``end`` is None)."""
        stop = self.size if end is None else end + 1
        return self._data[start:stop]


class StreamTracker:
    """Collects a stream's per-step arrays and yields each event once, when it is final.

    Args:
        channel: Channel id of the stream.
        subsystem: Its subsystem.
        detectors: Detectors whose ``<d>_score``/``<d>_decision`` arrays come with each chunk.
        from_rows: Events come from postprocessing's reported rows (else from the decisions
            of the one detector).
    """

    def __init__(
        self, channel: str, subsystem: str, detectors: tuple[str, ...], from_rows: bool
    ) -> None:
        self.channel = channel
        self.subsystem = subsystem
        self.detectors = detectors
        self.from_rows = from_rows
        self.arrays: dict[str, Series] = {}
        self.steps = 0
        self._pending: tuple[int, int, float] | None = None  # postprocessing's open event
        self._run: tuple[int, int] | None = None  # the detector's run reaching the chunk end

    def add(self, arrays: Mapping[str, np.ndarray], reported: np.ndarray | None) -> list[RunEvent]:
        """Add one chunk's arrays (and postprocessing's rows); return the events now final."""
        offset = self.steps
        sizes = {np.asarray(a).reshape(-1).size for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"chunk arrays of different lengths: {sizes}")
        for name, values in arrays.items():
            if name not in self.arrays:
                dtype = np.dtype(bool) if name.endswith("_decision") else np.dtype(np.float32)
                self.arrays[name] = Series(dtype)
            self.arrays[name].append(values)
        self.steps += sizes.pop()
        if self.from_rows:
            return self._add_rows(reported)
        return self._add_decisions(offset)

    def finish(self) -> list[RunEvent]:
        """The events still open when the stream ends."""
        final = []
        if self._pending is not None:
            final.append(self._event(*self._pending))
            self._pending = None
        if self._run is not None:
            final.append(self._detector_event(*self._run))
            self._run = None
        return final

    def array(self, name: str) -> np.ndarray:
        """The whole stream's array ``name`` so far (a copy)."""
        return self.arrays[name].view().copy()

    def _add_rows(self, reported: np.ndarray | None) -> list[RunEvent]:
        rows = [] if reported is None else [tuple(r) for r in np.asarray(reported).reshape(-1, 3)]
        rows = [(int(s), int(e), float(p)) for s, e, p in rows]
        final = []
        starts = {row[0] for row in rows}
        if self._pending is not None and self._pending[0] not in starts:
            # Not reported again: it closed in an earlier chunk, as last reported.
            final.append(self._event(*self._pending))
            self._pending = None
        for row in rows[:-1]:
            final.append(self._event(*row))
        self._pending = rows[-1] if rows else self._pending
        return final

    def _add_decisions(self, offset: int) -> list[RunEvent]:
        (detector,) = self.detectors
        decisions = self.arrays[f"{detector}_decision"].view(offset)
        final = []
        for first, last in decisions_to_events(decisions):
            start, end = offset + first, offset + last
            if self._run is not None and first == 0 and self._run[1] == offset - 1:
                start = self._run[0]  # the run went on across the boundary
            elif self._run is not None:
                final.append(self._detector_event(*self._run))
            self._run = None
            if end == self.steps - 1:
                self._run = (start, end)
            else:
                final.append(self._detector_event(start, end))
        if self._run is not None and self._run[1] < self.steps - 1:
            final.append(self._detector_event(*self._run))
            self._run = None
        return final

    def _agreed(self, start: int, end: int) -> tuple[str, ...]:
        agreed = tuple(
            d
            for d in self.detectors
            if d != FUSED
            and f"{d}_decision" in self.arrays
            and self.arrays[f"{d}_decision"].view(start, end).any()
        )
        return agreed or (FUSED,)

    def _event(self, start: int, end: int, peak: float) -> RunEvent:
        return RunEvent(self.channel, self.subsystem, start, end, peak, self._agreed(start, end))

    def _detector_event(self, start: int, end: int) -> RunEvent:
        (detector,) = self.detectors
        peak = float(self.arrays[f"{detector}_score"].view(start, end).max())
        return RunEvent(self.channel, self.subsystem, start, end, peak, (detector,))
