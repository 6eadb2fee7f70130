"""The postprocessing stage's stream state and its flat FP32 ``post_state`` vector.

Everything a later chunk of a stream needs travels in the vector the previous chunk returned
(``post_state_out``), so the served model keeps nothing between requests:

- a header ``[version, stream id, steps seen, smoothing window, open event start, end, peak]``
  (an open event's start is -1 when there is none);
- the last ``smoothing_window - 1`` fused values (the moving average's history);
- for the ``dynamic`` threshold policy, the stuck-value rule's state
  (:meth:`~satwatch.pipeline.stuck.StuckState.to_array`) and the dynamic threshold's
  (:meth:`~satwatch.pipeline.dynamic_threshold.ArrivalState.to_array`) appended.

Indices and stream ids are exact in FP32 up to 2**24.

Example::

    state = PostState.start(window=5)
    vector = state.to_array()
    assert PostState.from_array(vector, window=5).stream_id == stream_id_of(vector)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from satwatch.exceptions import DataError
from satwatch.pipeline.dynamic_threshold import ArrivalState
from satwatch.pipeline.event_finder import EventRow
from satwatch.pipeline.stuck import StuckState

LOGGER = logging.getLogger(__name__)

STATE_VERSION = 2  # 2: the stuck-value rule's state came in
_HEADER = 7  # version, stream id, offset, window, run start, run end, run peak
_MAX_STREAM_ID = 2**24  # exact in FP32


@dataclass(frozen=True)
class PostState:
    """What a stream carries from chunk to chunk.

    Attributes:
        stream_id: Identifies the stream (the event log keys events by it).
        offset: Steps seen before the next chunk.
        history: The last ``window - 1`` fused values, oldest first (zeros before the start).
        run: The open event ``(start, end, peak)`` or ``None``.
        carry: The dynamic policy's state (appended to the vector), ``None`` for ``ratio``.
        stuck: The stuck-value rule's state (dynamic policy; before ``carry`` in the vector).
    """

    stream_id: int
    offset: int
    history: np.ndarray
    run: EventRow | None = None
    carry: ArrivalState | None = None
    stuck: StuckState | None = None

    @classmethod
    def start(cls, window: int, stream_id: int | None = None, dynamic: bool = False) -> PostState:
        """The state of a new stream (a random stream id unless given)."""
        if stream_id is None:
            stream_id = int(np.random.default_rng().integers(1, _MAX_STREAM_ID))
        carry, stuck = (ArrivalState(), StuckState()) if dynamic else (None, None)
        return cls(int(stream_id), 0, np.zeros(window - 1, np.float32), carry=carry, stuck=stuck)

    def to_array(self) -> np.ndarray:
        """The flat FP32 ``post_state`` vector."""
        start, end, peak = self.run if self.run is not None else (-1, -1, 0.0)
        window = self.history.size + 1
        head = [STATE_VERSION, self.stream_id, self.offset, window, start, end, peak]
        parts = [np.asarray(head, np.float32), self.history.astype(np.float32)]
        if self.carry is not None:
            parts.append((self.stuck or StuckState()).to_array())
            parts.append(self.carry.to_array())
        return np.concatenate(parts)

    @classmethod
    def from_array(cls, values: np.ndarray, window: int, dynamic: bool = False) -> PostState:
        """Read a ``post_state`` vector written by :meth:`to_array` with the same window.

        Args:
            values: The vector.
            window: The smoothing window of the settings in use.
            dynamic: Whether the dynamic policy's state is appended (and expected).

        Raises:
            DataError: If it is not a state of this version, smoothing window and policy.
        """
        flat = np.asarray(values, np.float32).reshape(-1)
        expected = _HEADER + window - 1
        size_ok = flat.size > expected if dynamic else flat.size == expected
        if not size_ok or int(flat[0]) != STATE_VERSION or int(flat[3]) != window:
            got = f"{flat.size} values" + (f", window {int(flat[3])}" if flat.size > 3 else "")
            policy = "dynamic" if dynamic else "ratio"
            raise DataError(
                f"post_state: expected {'more than ' if dynamic else ''}{expected} values of "
                f"state version {STATE_VERSION} with smoothing window {window} and the "
                f"{policy} threshold policy (pass back post_state_out unchanged), got {got}"
            )
        start = int(flat[4])
        run = (start, int(flat[5]), float(flat[6])) if start >= 0 else None
        carry = stuck = None
        if dynamic:
            stuck, rest = StuckState.from_array(flat[expected:])
            carry = ArrivalState.from_array(rest)
        return cls(int(flat[1]), int(flat[2]), flat[_HEADER:expected].copy(), run, carry, stuck)


def stream_id_of(values: np.ndarray) -> int:
    """The stream id recorded in a ``post_state`` vector.

    Raises:
        DataError: If the vector is not a state of this layout.
    """
    flat = np.asarray(values, np.float32).reshape(-1)
    if flat.size < _HEADER or int(flat[0]) != STATE_VERSION:
        raise DataError(
            f"post_state: expected a version-{STATE_VERSION} state, got {flat.size} values"
        )
    return int(flat[1])
