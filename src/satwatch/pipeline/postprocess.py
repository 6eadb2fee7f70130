"""Postprocessing stage: detector scores -> fused score, per-step decision, anomaly events.

Steps, each a pure array function (the Python model and offline code share them):

1. **Normalise** each detector's score by its own threshold for the channel:
   ``ratio = (score - baseline) / (threshold - baseline)``, where ``baseline`` is the median of
   the detector's training scores (0 gives plain ``score / threshold``). The ratio is 1 at the
   threshold whatever the score's sign (OmniAnomaly scores are negative log-likelihoods and
   often below zero) and 0 at a typical training step.
2. **Fuse** (config parameter ``fusion``): ``max`` or ``mean`` of the ratios, or ``vote``, the
   fraction of detectors whose ratio exceeds 1.
3. **Smooth** causally: the mean of the last ``smoothing_window`` fused values (fewer at the
   start of a stream). The result is ``final_result``.
4. **Decide** per step: ``final_result > 1`` (max, mean) or ``>= vote_quorum`` (vote).
5. **Events**: runs of anomalous steps closer than ``merge_gap`` quiet steps are merged; an
   event shorter than ``min_event_length`` steps (start to end, gaps included) is dropped.
   Rows are ``(start, end, peak)``: absolute step indices since the stream began (inclusive)
   and the highest ``final_result`` of the event.

Streams: everything a later chunk needs (smoothing history, the open event, steps seen) is
in a flat FP32 ``post_state`` vector. Passing each chunk the state the previous chunk returned
gives exactly the fused scores and decisions of one call over the whole series. An event is
reported by every chunk from the moment it is ``min_event_length`` long until it closes (no
anomalous step within ``merge_gap`` steps); its start never changes, so the last report for a
start is the event (the same as the whole-series call). Indices are exact up to 2**24 steps.

Example::

    settings = PostSettings.from_parameters({"fusion": "max", "smoothing_window": "5"})
    result = postprocess([omni, tranad], [Threshold(2.0, 0.1), Threshold(0.5)], settings)
    more = postprocess([omni2, tranad2], thresholds, settings, state=result.state)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

FUSIONS = ("max", "mean", "vote")
STATE_VERSION = 1
_HEADER = 7  # version, stream id, offset, window, run start, run end, run peak
_MAX_STREAM_ID = 2**24  # exact in FP32


@dataclass(frozen=True)
class Threshold:
    """One detector's threshold for one channel.

    Attributes:
        threshold: Score at which the detector calls a step anomalous.
        baseline: A typical (median) training score; 0 means plain division.
    """

    threshold: float
    baseline: float = 0.0

    def ratio(self, scores: np.ndarray) -> np.ndarray:
        """Return float32 ``(scores - baseline) / (threshold - baseline)``."""
        # In float32 from float32-rounded values: thresholds sent as an FP32 tensor then give
        # the same bits as the ones read from the JSON file.
        threshold, baseline = np.float32(self.threshold), np.float32(self.baseline)
        span = np.float32(threshold - baseline)
        if not np.isfinite(span) or span <= 0:
            raise DataError(
                f"threshold {self.threshold!r}: expected above its baseline {self.baseline!r}"
            )
        return ((np.asarray(scores, np.float32) - baseline) / span).astype(np.float32)


def thresholds_from_array(values: np.ndarray, count: int) -> list[Threshold]:
    """Read thresholds from a request tensor: ``count`` thresholds, or ``count`` pairs.

    Raises:
        DataError: For another length.
    """
    flat = np.asarray(values, np.float64).reshape(-1)
    if flat.size == count:
        return [Threshold(float(v)) for v in flat]
    if flat.size == 2 * count:
        return [Threshold(float(t), float(b)) for t, b in flat.reshape(count, 2)]
    raise DataError(
        f"thresholds: expected {count} values (threshold per score) or {2 * count} "
        f"(threshold, baseline pairs), got {flat.size}"
    )


@dataclass(frozen=True)
class PostSettings:
    """Fusion, smoothing and event rules (config ``parameters``; defaults as common.pbtxt).

    Attributes:
        fusion: ``max``, ``mean`` or ``vote``.
        smoothing_window: Steps in the causal moving average (1 = no smoothing).
        min_event_length: Shortest event kept, in steps.
        merge_gap: Runs separated by at most this many quiet steps form one event.
        vote_quorum: Fraction of detectors that must agree (``vote`` only).
    """

    fusion: str = "max"
    smoothing_window: int = 5
    min_event_length: int = 3
    merge_gap: int = 10
    vote_quorum: float = 0.5

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise DataError(f"fusion: expected one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        for name in ("smoothing_window", "min_event_length"):
            if getattr(self, name) < 1:
                raise DataError(f"{name}: expected at least 1, got {getattr(self, name)}")
        if self.merge_gap < 0:
            raise DataError(f"merge_gap: expected 0 or more, got {self.merge_gap}")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> PostSettings:
        """Build from a config's ``parameters`` (strings); absent keys keep the defaults."""
        fields = {"fusion": str, "smoothing_window": int, "min_event_length": int}
        fields |= {"merge_gap": int, "vote_quorum": float}
        values = {}
        for name, kind in fields.items():
            if parameters.get(name) not in (None, ""):
                try:
                    values[name] = kind(parameters[name])
                except ValueError as error:
                    raise DataError(f"parameter {name}: got {parameters[name]!r}") from error
        return cls(**values)

    def decide(self, final: np.ndarray) -> np.ndarray:
        """Per-step decision on the smoothed fused score."""
        if self.fusion == "vote":
            return final >= self.vote_quorum
        return final > 1.0


def fuse(ratios: Sequence[np.ndarray], fusion: str) -> np.ndarray:
    """Fuse per-detector ratios ``[(T,), ...]`` into one float32 ``(T,)`` score."""
    stacked = np.stack([np.asarray(r, np.float32) for r in ratios])
    if fusion == "max":
        return stacked.max(axis=0)
    if fusion == "mean":
        return stacked.mean(axis=0, dtype=np.float32)
    if fusion == "vote":
        return (stacked > 1.0).mean(axis=0, dtype=np.float32)
    raise DataError(f"fusion: expected one of {', '.join(FUSIONS)}, got {fusion!r}")


@dataclass(frozen=True)
class PostState:
    """What a stream carries from chunk to chunk.

    Attributes:
        stream_id: Identifies the stream (the event log keys events by it).
        offset: Steps seen before the next chunk.
        history: The last ``window - 1`` fused values, oldest first (zeros before the start).
        run: The open event ``(start, end, peak)`` or ``None``.
    """

    stream_id: int
    offset: int
    history: np.ndarray
    run: tuple[int, int, float] | None = None

    @classmethod
    def start(cls, window: int, stream_id: int | None = None) -> PostState:
        """The state of a new stream (a random stream id unless given)."""
        if stream_id is None:
            stream_id = int(np.random.default_rng().integers(1, _MAX_STREAM_ID))
        return cls(int(stream_id), 0, np.zeros(window - 1, np.float32))

    def to_array(self) -> np.ndarray:
        """The flat FP32 ``post_state`` vector."""
        start, end, peak = self.run if self.run is not None else (-1, -1, 0.0)
        window = self.history.size + 1
        head = [STATE_VERSION, self.stream_id, self.offset, window, start, end, peak]
        return np.concatenate([np.asarray(head, np.float32), self.history.astype(np.float32)])

    @classmethod
    def from_array(cls, values: np.ndarray, window: int) -> PostState:
        """Read a ``post_state`` vector written by :meth:`to_array` with the same window.

        Raises:
            DataError: If it is not a version-1 state of this smoothing window.
        """
        flat = np.asarray(values, np.float32).reshape(-1)
        expected = _HEADER + window - 1
        if flat.size != expected or int(flat[0]) != STATE_VERSION or int(flat[3]) != window:
            got = f"{flat.size} values" + (f", window {int(flat[3])}" if flat.size > 3 else "")
            raise DataError(
                f"post_state: expected {expected} values of state version {STATE_VERSION} with "
                f"smoothing window {window} (pass back post_state_out unchanged), got {got}"
            )
        start = int(flat[4])
        run = (start, int(flat[5]), float(flat[6])) if start >= 0 else None
        return cls(int(flat[1]), int(flat[2]), flat[_HEADER:].copy(), run)


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


def smooth(fused: np.ndarray, state: PostState) -> np.ndarray:
    """Causal moving average of ``fused`` continuing ``state`` (float32 ``(T,)``).

    The window sums are taken term by term in a fixed order, so a chunked stream gives the
    same bits as one pass.
    """
    window = state.history.size + 1
    count = fused.size
    extended = np.concatenate([state.history, fused.astype(np.float32)]).astype(np.float64)
    sums = np.zeros(count, np.float64)
    for k in range(window):
        sums += extended[k : k + count]
    seen = np.minimum(state.offset + np.arange(1, count + 1), window)
    return (sums / seen).astype(np.float32)


def _runs(decision: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], decision, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def find_events(
    final: np.ndarray, decision: np.ndarray, settings: PostSettings, state: PostState
) -> tuple[list[tuple[int, int, float]], tuple[int, int, float] | None]:
    """Events of one chunk: ``(events to report, open event carried on)``.

    Reported: events closed in this chunk that are long enough, then the open event when it
    is already long enough. Indices are absolute (``state.offset`` + position in the chunk).
    """
    closed: list[tuple[int, int, float]] = []
    run = state.run

    def close(event: tuple[int, int, float]) -> None:
        if event[1] - event[0] + 1 >= settings.min_event_length:
            closed.append(event)

    for first, last in _runs(decision):
        peak = float(final[first : last + 1].max())
        start, end = state.offset + first, state.offset + last
        if run is not None and start - run[1] - 1 <= settings.merge_gap:
            run = (run[0], end, max(run[2], peak))
        else:
            if run is not None:
                close(run)
            run = (start, end, peak)
    last_step = state.offset + final.size - 1
    if run is not None and last_step - run[1] > settings.merge_gap:
        close(run)
        run = None
    report = list(closed)
    if run is not None and run[1] - run[0] + 1 >= settings.min_event_length:
        report.append(run)
    return report, run


@dataclass(frozen=True)
class PostResult:
    """Outputs of :func:`postprocess`.

    Attributes:
        final: Smoothed fused score, float32 ``(T,)`` (``final_result``).
        decision: Per-step decision, bool ``(T,)``.
        events: float32 ``(N, 3)`` rows ``(start, end, peak)``.
        state: The state to pass with the next chunk.
    """

    final: np.ndarray
    decision: np.ndarray
    events: np.ndarray
    state: PostState


def postprocess(
    scores: Sequence[np.ndarray],
    thresholds: Sequence[Threshold],
    settings: PostSettings,
    state: PostState | None = None,
) -> PostResult:
    """Normalise, fuse, smooth, decide and find events for one chunk (see the module doc).

    Raises:
        DataError: For mismatched score lengths or thresholds, or an unusable state.
    """
    if not scores:
        raise DataError("postprocess: expected at least one score, got none")
    if len(thresholds) != len(scores):
        raise DataError(
            f"postprocess: expected one threshold per score ({len(scores)}), got {len(thresholds)}"
        )
    lengths = {np.asarray(s).reshape(-1).size for s in scores}
    if len(lengths) != 1 or 0 in lengths:
        raise DataError(f"postprocess: expected scores of one non-zero length, got {lengths}")
    if state is None:
        state = PostState.start(settings.smoothing_window)
    elif state.history.size != settings.smoothing_window - 1:
        raise DataError(
            f"post_state: expected smoothing window {settings.smoothing_window}, "
            f"got {state.history.size + 1}"
        )
    ratios = [t.ratio(np.asarray(s).reshape(-1)) for s, t in zip(scores, thresholds, strict=True)]
    fused = fuse(ratios, settings.fusion)
    final = smooth(fused, state)
    decision = settings.decide(final)
    report, run = find_events(final, decision, settings, state)
    joined = np.concatenate([state.history, fused])
    history = joined[joined.size - state.history.size :]
    new_state = PostState(state.stream_id, state.offset + fused.size, history, run)
    events = np.asarray(report, np.float32).reshape(-1, 3)
    return PostResult(final, decision, events, new_state)


THRESHOLDS_FILE = "thresholds.json"
"""Per-channel thresholds in ``python/postprocessing/<version>/``, in score order."""


def save_thresholds(path: Path, table: Mapping[str, Sequence[Threshold]]) -> Path:
    """Write ``{channel: [[threshold, baseline], ...]}`` (score1 first) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        channel: [[t.threshold, t.baseline] for t in thresholds]
        for channel, thresholds in sorted(table.items())
    }
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def load_thresholds(path: Path) -> dict[str, list[Threshold]]:
    """Read a file written by :func:`save_thresholds`.

    Raises:
        DataError: If it is missing or malformed.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            channel: [Threshold(float(t), float(b)) for t, b in rows]
            for channel, rows in data.items()
        }
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"{path}: expected per-channel thresholds JSON: {error}") from error
