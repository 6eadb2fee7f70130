"""Postprocessing stage: detector scores -> fused score, per-step decision, anomaly events.

Two threshold policies (config parameter ``threshold_policy``). ``ratio``, steps 1-5 below;
each a pure array function (the Python model and offline code share them):

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

``dynamic`` (Telemanom-style, :mod:`satwatch.pipeline.dynamic_threshold`; settings from the
``dt_<field>`` parameters): each score becomes its training z-score
``max(0, (score - median) / std)`` (statistics of the channel's training split in
``thresholds.json``), fused with ``max``, EWMA-smoothed (``final_result``) and decided on
arrival by :func:`~satwatch.pipeline.dynamic_threshold.decide_on_arrival` (the threshold is
re-chosen every ``dt_batch`` steps from the last ``dt_window`` smoothed values; steps in
between use the last one chosen) above the channel's floor (``dt_floor``: the largest or the
POT threshold of its smoothed fused training z), never in the first ``dt_burn_in`` steps of a
stream. Events (step 5) are made of the decisions *confirmed* at the end of each batch of
``dt_batch`` steps, over the window ending there (Telemanom's own rule, computed in the same
pass: :func:`~satwatch.pipeline.dynamic_threshold.decide_and_confirm`). A confirmation comes
at most ``dt_batch - 1`` steps after its step, long before an event closes (``merge_gap``
quiet steps), and can differ from the on-arrival ``decision``, the immediate per-step alarm
that could not wait. On the validation channels, events from confirmed decisions scored
better than events from on-arrival ones (the study prints both).

A stream's last chunk may say so (``end_of_stream``): the steps after its last completed
batch are then confirmed by the window ending at its last step, as the batch rule flushes a
series, instead of waiting for a batch that never completes.

Streams: everything a later chunk needs (smoothing history, the open event, steps seen; the
dynamic policy's state appended) is in a flat FP32 ``post_state`` vector. Passing each chunk
the state the previous chunk returned gives exactly the fused scores and decisions of one
call over the whole series. An event is reported by every chunk from the moment it is
``min_event_length`` long until it closes (no anomalous step within ``merge_gap`` steps); its
start never changes, so the last report for a start is the event (the same as the
whole-series call). Indices are exact up to 2**24 steps.

Example::

    settings = PostSettings.from_parameters({"fusion": "max", "smoothing_window": "5"})
    result = postprocess([omni, tranad], [Threshold(2.0, 0.1), Threshold(0.5)], settings)
    more = postprocess([omni2, tranad2], thresholds, settings, state=result.state)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from satwatch.exceptions import DataError
from satwatch.pipeline.dynamic_threshold import (
    ArrivalResult,
    ArrivalState,
    DynamicSettings,
    DynamicThreshold,
    decide_and_confirm,
    decide_tail,
)

LOGGER = logging.getLogger(__name__)

FUSIONS = ("max", "mean", "vote")
POLICIES = ("ratio", "dynamic")
_POLICY_ALIASES = {"pot": "ratio"}  # older configs: ratios to the (POT-fitted) card thresholds
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
        threshold_policy: ``ratio`` (scores over their thresholds, moving average, ``> 1``) or
            ``dynamic`` (training z-scores, EWMA, Telemanom's dynamic threshold; see
            :func:`postprocess_dynamic`).
        dynamic: The dynamic threshold's settings (config parameters ``dt_<field>``).
    """

    fusion: str = "max"
    smoothing_window: int = 5
    min_event_length: int = 3
    merge_gap: int = 10
    vote_quorum: float = 0.5
    threshold_policy: str = "ratio"
    dynamic: DynamicSettings = field(default_factory=DynamicSettings)

    def __post_init__(self) -> None:
        if self.threshold_policy not in POLICIES:
            raise DataError(
                f"threshold_policy: expected one of {', '.join(POLICIES)}, "
                f"got {self.threshold_policy!r}"
            )
        if self.threshold_policy == "dynamic" and self.fusion != "max":
            raise DataError(f"fusion: the dynamic policy fuses with max, got {self.fusion!r}")
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
        fields |= {"merge_gap": int, "vote_quorum": float, "threshold_policy": str}
        values: dict[str, object] = {}
        for name, kind in fields.items():
            if parameters.get(name) not in (None, ""):
                try:
                    values[name] = kind(parameters[name])
                except ValueError as error:
                    raise DataError(f"parameter {name}: got {parameters[name]!r}") from error
        policy = values.get("threshold_policy")
        if policy in _POLICY_ALIASES:
            values["threshold_policy"] = _POLICY_ALIASES[policy]
        values["dynamic"] = DynamicSettings.from_parameters(parameters)
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
        carry: The dynamic policy's state (appended to the vector), ``None`` for ``ratio``.
    """

    stream_id: int
    offset: int
    history: np.ndarray
    run: tuple[int, int, float] | None = None
    carry: ArrivalState | None = None

    @classmethod
    def start(cls, window: int, stream_id: int | None = None, dynamic: bool = False) -> PostState:
        """The state of a new stream (a random stream id unless given)."""
        if stream_id is None:
            stream_id = int(np.random.default_rng().integers(1, _MAX_STREAM_ID))
        carry = ArrivalState() if dynamic else None
        return cls(int(stream_id), 0, np.zeros(window - 1, np.float32), carry=carry)

    def to_array(self) -> np.ndarray:
        """The flat FP32 ``post_state`` vector."""
        start, end, peak = self.run if self.run is not None else (-1, -1, 0.0)
        window = self.history.size + 1
        head = [STATE_VERSION, self.stream_id, self.offset, window, start, end, peak]
        parts = [np.asarray(head, np.float32), self.history.astype(np.float32)]
        if self.carry is not None:
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
            DataError: If it is not a version-1 state of this smoothing window and policy.
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
        carry = ArrivalState.from_array(flat[expected:]) if dynamic else None
        return cls(int(flat[1]), int(flat[2]), flat[_HEADER:expected].copy(), run, carry)


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
    end_of_stream: bool = False,
) -> PostResult:
    """Normalise, fuse, smooth, decide and find events for one chunk (see the module doc).

    ``end_of_stream`` marks the stream's last chunk: the dynamic policy then also confirms
    the steps after the last completed batch, by the window ending at its last step
    (:func:`~satwatch.pipeline.dynamic_threshold.decide_tail`), instead of waiting for a batch
    that never completes; so an event in the stream's last steps is reported too. A later
    chunk would confirm them again.

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
    dynamic = settings.threshold_policy == "dynamic"
    if state is None:
        state = PostState.start(settings.smoothing_window, dynamic=dynamic)
    elif state.history.size != settings.smoothing_window - 1:
        raise DataError(
            f"post_state: expected smoothing window {settings.smoothing_window}, "
            f"got {state.history.size + 1}"
        )
    elif (state.carry is not None) != dynamic:
        raise DataError(
            f"post_state: expected a state of the {settings.threshold_policy} threshold policy, "
            f"got one of the other policy"
        )
    flat = [np.asarray(s).reshape(-1) for s in scores]
    carry = None
    if dynamic:
        fused, final, decision, carry, confirmed = _dynamic_stage(
            flat, thresholds, settings, state, end_of_stream
        )
        # Events come from the decisions confirmed at the end of each batch (module doc).
        confirmed_final, confirmed_decision, confirmed_state = confirmed
        report, run = find_events(confirmed_final, confirmed_decision, settings, confirmed_state)
    else:
        ratios = [t.ratio(s) for s, t in zip(flat, thresholds, strict=True)]
        fused = fuse(ratios, settings.fusion)
        final = smooth(fused, state)
        decision = settings.decide(final)
        report, run = find_events(final, decision, settings, state)
    joined = np.concatenate([state.history, fused])
    history = joined[joined.size - state.history.size :]
    new_state = PostState(state.stream_id, state.offset + fused.size, history, run, carry)
    events = np.asarray(report, np.float32).reshape(-1, 3)
    return PostResult(final, decision, events, new_state)


def _dynamic_stage(
    scores: Sequence[np.ndarray],
    thresholds: Sequence[Threshold],
    settings: PostSettings,
    state: PostState,
    end_of_stream: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, ArrivalState, tuple]:
    """``(fused z, smoothed, decision, carry, confirmed)`` of the dynamic policy for one chunk.

    ``confirmed`` is what events are made of: ``(smoothed, decision, state)`` of the steps whose
    batch completed in this chunk, decided at the end of the batch (``state.offset`` = the
    first of them), as :func:`~satwatch.pipeline.dynamic_threshold.decide_and_confirm` gives;
    at the end of the stream, the steps of its incomplete last batch follow.
    """
    if not isinstance(thresholds, ChannelThresholds) or not thresholds.scales:
        raise DataError(
            "threshold_policy dynamic: expected the channel's training statistics (median, "
            "std, floor from thresholds.json written by satwatch build), got thresholds only"
        )
    fused = fused_z(scores, thresholds.scales)
    floor = thresholds.floor_for(len(scores))
    dynamic = replace(settings.dynamic, min_score=floor)
    assert state.carry is not None  # checked by the caller
    result = decide_and_confirm(fused, state.carry, state.offset, dynamic)
    smoothed = confirmed_smoothed(result, state.carry, state.offset)
    decisions = result.confirmed
    history = result.state.history
    rest = min((state.offset + fused.size) % dynamic.batch, history.size)
    if end_of_stream and rest:
        first = state.offset + fused.size - rest
        decided, _ = decide_tail(history, rest, first, dynamic)
        smoothed = np.concatenate([smoothed, history[history.size - rest :].astype(np.float32)])
        decisions = np.concatenate([decisions, decided])
    confirmed = (smoothed, decisions, replace(state, offset=result.confirmed_first))
    return fused, result.smoothed, result.decision, result.state, confirmed


def confirmed_smoothed(result: ArrivalResult, before: ArrivalState, offset: int) -> np.ndarray:
    """The smoothed values of the confirmed steps, float32.

    The first confirmed steps may be the previous chunk's last ones, still waiting for their
    batch then: they are the newest values of the state's history.
    """
    waiting = offset - result.confirmed_first
    earlier = before.history[before.history.size - waiting :] if waiting else np.zeros(0)
    values = np.concatenate([earlier, result.smoothed])[: result.confirmed.size]
    return values.astype(np.float32)


def fused_z(scores: Sequence[np.ndarray], scales: Sequence[Threshold]) -> np.ndarray:
    """``max`` over detectors of ``max(0, (score - median) / std)``, float32 ``(T,)``.

    ``scales`` are ``Threshold(median + std, median)`` of each detector's training scores.
    """
    if len(scales) < len(scores):
        raise DataError(
            f"dynamic policy: expected training statistics for {len(scores)} scores, "
            f"got {len(scales)}"
        )
    pairs = zip(scores, scales[: len(scores)], strict=True)
    z = [np.maximum(t.ratio(np.asarray(s).reshape(-1)), 0) for s, t in pairs]
    return fuse(z, "max")


THRESHOLDS_FILE = "thresholds.json"
"""Per-channel thresholds and training statistics in ``python/postprocessing/<version>/``."""


@dataclass(frozen=True)
class ChannelThresholds(Sequence[Threshold]):
    """One channel's entry of ``thresholds.json``; as a sequence, its ratio thresholds.

    Attributes:
        ratio: Each detector's threshold and baseline (``ratio`` policy), score1 first.
        scales: ``Threshold(median + std, median)`` of each detector's training scores, so
            ``ratio`` gives the training z-score (``dynamic`` policy); empty if unknown.
        floors: ``floors[k - 1]``: the floor (``min_score``) of the smoothed fused z when the
            first ``k`` scores are fused (fitted on the channel's training scores by the
            ``floor`` rule of the dynamic settings).
    """

    ratio: tuple[Threshold, ...]
    scales: tuple[Threshold, ...] = ()
    floors: tuple[float, ...] = ()

    def __getitem__(self, index):  # noqa: ANN001, ANN204  (int or slice, as a tuple)
        return self.ratio[index]

    def __len__(self) -> int:
        return len(self.ratio)

    def __iter__(self) -> Iterator[Threshold]:
        return iter(self.ratio)

    def head(self, count: int) -> ChannelThresholds:
        """The entry for the first ``count`` scores."""
        return ChannelThresholds(self.ratio[:count], self.scales[:count], self.floors)

    def floor_for(self, count: int) -> float:
        """The floor when ``count`` scores are fused.

        Raises:
            DataError: If the file holds none for that count.
        """
        if not 1 <= count <= len(self.floors):
            raise DataError(
                f"dynamic policy: expected a training floor for {count} fused scores, "
                f"got floors for 1..{len(self.floors)}"
            )
        return float(self.floors[count - 1])


def training_statistics(
    train_scores: Sequence[np.ndarray],
    ratio: Sequence[Threshold],
    dynamic: DynamicSettings,
) -> ChannelThresholds:
    """A channel's entry from its detectors' scores on the training split (score1 first).

    Medians and standard deviations give the z-scores; the floor for ``k`` fused scores comes
    from the EWMA-smoothed fused training z, computed exactly as the served stage smooths, by
    ``dynamic.floor``: its maximum (``max``) or its POT threshold (``pot``: risk 1e-3, initial
    level 0.98).
    """
    # Build-time only: the served postprocessing model never pays for scipy's import.
    from satwatch.detectors.thresholds import pot_threshold

    scales = []
    for scores in train_scores:
        values = np.asarray(scores, np.float64).reshape(-1)
        median, std = float(np.median(values)), float(np.std(values))
        # A constant training score: a tiny positive spread still representable next to it.
        std = max(std, 1e-6 * max(1.0, abs(median)))
        scales.append(Threshold(median + std, median))
    stage = DynamicThreshold(dynamic)
    floors = []
    for count in range(1, len(train_scores) + 1):
        fused = fused_z(train_scores[:count], scales[:count])
        smoothed = stage.smooth(fused)[1]
        floor = smoothed.max() if dynamic.floor == "max" else pot_threshold(smoothed)
        floors.append(float(floor))
    return ChannelThresholds(tuple(ratio), tuple(scales), tuple(floors))


def select_thresholds(
    table: Mapping[str, ChannelThresholds],
    count: int,
    channel: str | None = None,
    given: np.ndarray | None = None,
    dynamic: bool = False,
) -> Sequence[Threshold]:
    """The thresholds of one request of ``count`` scores.

    ``ratio`` policy: the ``given`` tensor (see :func:`thresholds_from_array`) or else the
    channel's. ``dynamic``: the channel's entry, which holds its training statistics; the
    channel travels with the request (``channel_id``), never guessed from the thresholds.

    Raises:
        DataError: For an unknown channel, or no channel (dynamic).
    """
    if given is not None and not dynamic:
        return thresholds_from_array(given, count)
    if channel is None:
        raise DataError(
            "threshold_policy dynamic: expected channel_id, the channel whose training "
            "statistics apply, got none"
        )
    if channel not in table:
        known = ", ".join(sorted(table)) or "none"
        raise DataError(f"unknown channel {channel!r}: thresholds exist for {known}")
    entry = table[channel]
    if len(entry) < count:
        raise DataError(
            f"channel {channel!r}: expected thresholds for {count} scores, got {len(entry)}"
        )
    return entry.head(count)


def save_thresholds(path: Path, table: Mapping[str, Sequence[Threshold]]) -> Path:
    """Write ``{channel: {"ratio": [[threshold, baseline], ...], "scale": [...], "floors"}}``.

    ``scale`` rows are ``[median + std, median]`` of each detector's training scores.

    Plain sequences of thresholds (no training statistics) are written with ``ratio`` only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {}
    for channel, thresholds in sorted(table.items()):
        record: dict[str, list] = {"ratio": [[t.threshold, t.baseline] for t in thresholds]}
        if isinstance(thresholds, ChannelThresholds) and thresholds.scales:
            record["scale"] = [[t.threshold, t.baseline] for t in thresholds.scales]
            record["floors"] = list(thresholds.floors)
        data[channel] = record
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def load_thresholds(path: Path) -> dict[str, ChannelThresholds]:
    """Read a file written by :func:`save_thresholds` (or the older ``{channel: rows}``).

    Raises:
        DataError: If it is missing or malformed.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        table = {}
        for channel, record in data.items():
            rows = record if isinstance(record, list) else record["ratio"]
            ratio = tuple(Threshold(float(t), float(b)) for t, b in rows)
            scales: tuple[Threshold, ...] = ()
            floors: tuple[float, ...] = ()
            if isinstance(record, dict) and "scale" in record:
                scales = tuple(Threshold(float(t), float(b)) for t, b in record["scale"])
                floors = tuple(float(f) for f in record["floors"])
            table[channel] = ChannelThresholds(ratio, scales, floors)
        return table
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise DataError(f"{path}: expected per-channel thresholds JSON: {error}") from error
