"""Postprocessing stage: detector scores -> fused score, per-step decision, anomaly events.

This module is the stage itself: its settings (:class:`PostSettings`), smoothing, deciding
and :func:`postprocess`, which chains the pure array functions of its neighbours: the
per-channel thresholds and statistics (:mod:`~satwatch.pipeline.calibration`), fusion
(:mod:`~satwatch.pipeline.fusion`), the dynamic threshold
(:mod:`~satwatch.pipeline.dynamic_threshold`), the event finder
(:mod:`~satwatch.pipeline.event_finder`) and the stream state
(:mod:`~satwatch.pipeline.poststate`). The Python model and offline code share them.

Two threshold policies (config parameter ``threshold_policy``). ``ratio``, steps 1-5 below:

1. **Normalise** each detector's score by its own threshold for the channel
   (:meth:`~satwatch.pipeline.calibration.Threshold.ratio`):
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
6. **Widen** each event by ``event_margin`` steps on both sides (Telemanom's
   ``error_buffer``), within the steps seen so far: a score that rises at step ``t`` may come
   from telemetry that changed a window's length earlier, and an operator looks at the
   telemetry around an alarm anyway. ``merge_gap`` is at least twice the margin, so widened
   events never overlap.

``dynamic`` (Telemanom-style, :mod:`satwatch.pipeline.dynamic_threshold`; settings from the
``dt_<field>`` parameters): each score becomes its training z-score
``max(0, (score - median) / std)`` (statistics of the channel's training split), raised to
``dt_z_power`` and multiplied by its detector kind's weight (``dt_z_weights``, kept in the
channel's entry of ``thresholds.json``), fused with ``max``
(:func:`~satwatch.pipeline.calibration.fused_z`),
EWMA-smoothed (``final_result``) and decided on arrival by
:func:`~satwatch.pipeline.dynamic_threshold.decide_on_arrival` (the threshold is re-chosen
every ``dt_batch`` steps from the last ``dt_window`` smoothed values; steps in between use the
last one chosen) above the channel's floor (``dt_floor``: the largest or the POT threshold of
its smoothed fused training z; ``dt_early_floor`` times higher in a stream's first
``dt_early_steps`` steps), never in the first ``dt_burn_in`` steps of a stream. Events
(step 5) are made of the decisions *confirmed* at the end of each batch of ``dt_batch`` steps,
over the window ending there (Telemanom's own rule, computed in the same pass:
:func:`~satwatch.pipeline.dynamic_threshold.decide_and_confirm`).
A step whose telemetry value (``values``) has repeated for longer than the channel's
``frozen_limit`` is confirmed anomalous whatever its score: the stuck-value rule
(:mod:`~satwatch.pipeline.stuck`), OR-ed in before events are made.
A confirmation comes at most ``dt_batch - 1`` steps after its step, long before an event
closes (``merge_gap`` quiet steps), and can differ from the on-arrival ``decision``, the
immediate per-step alarm that could not wait. On the validation channels, events from
confirmed decisions scored better than events from on-arrival ones
(``benchmarks/quality_study.py`` prints both).

A stream's last chunk may say so (``end_of_stream``): the steps after its last completed
batch are then confirmed by the window ending at its last step, as the batch rule flushes a
series, instead of waiting for a batch that never completes.

Streams: everything a later chunk needs (smoothing history, the open event, steps seen; the
dynamic policy's state appended) is in a flat FP32 ``post_state`` vector
(:class:`~satwatch.pipeline.poststate.PostState`). Passing each chunk the state the previous
chunk returned gives exactly the fused scores and decisions of one call over the whole
series. An event is reported by every chunk from the moment it is
``min_event_length`` long until it closes (no anomalous step within ``merge_gap`` steps); its
start never changes, so the last report for a start is the event (the same as the
whole-series call). Indices are exact up to 2**24 steps.

Example::

    settings = PostSettings.from_parameters({"fusion": "max", "smoothing_window": "5"})
    result = postprocess([omni, tranad], [Threshold(2.0, 0.1), Threshold(0.5)], settings)
    more = postprocess([omni2, tranad2], thresholds, settings, state=result.state)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from satwatch.exceptions import DataError
from satwatch.pipeline.calibration import ChannelThresholds, Threshold, fused_z
from satwatch.pipeline.dynamic_threshold import (
    ArrivalResult,
    ArrivalState,
    DynamicSettings,
    decide_and_confirm,
    decide_tail,
)
from satwatch.pipeline.event_finder import EventRow, find_events
from satwatch.pipeline.fusion import FUSIONS, fuse
from satwatch.pipeline.poststate import PostState
from satwatch.pipeline.stuck import StuckState, stuck_steps

LOGGER = logging.getLogger(__name__)

POLICIES = ("ratio", "dynamic")


@dataclass(frozen=True)
class PostSettings:
    """Fusion, smoothing and event rules (config ``parameters``).

    The defaults are the plain ``ratio`` policy's; the served settings are the parameters of
    ``configs/templates/postprocessing.pbtxt``.

    Attributes:
        fusion: ``max``, ``mean`` or ``vote``.
        smoothing_window: Steps in the causal moving average (1 = no smoothing).
        min_event_length: Shortest event kept, in steps.
        merge_gap: Runs separated by at most this many quiet steps form one event.
        vote_quorum: Fraction of detectors that must agree (``vote`` only).
        event_margin: Steps each event is widened by on both sides (step 6).
        threshold_policy: ``ratio`` (scores over their thresholds, moving average, ``> 1``) or
            ``dynamic`` (training z-scores, EWMA, Telemanom's dynamic threshold; see the
            module doc).
        dynamic: The dynamic threshold's settings (config parameters ``dt_<field>``).
    """

    fusion: str = "max"
    smoothing_window: int = 5
    min_event_length: int = 3
    merge_gap: int = 10
    vote_quorum: float = 0.5
    event_margin: int = 0
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
        if not 0 <= 2 * self.event_margin <= self.merge_gap:
            raise DataError(
                f"event_margin: expected 0 to half the merge_gap ({self.merge_gap}) so that "
                f"widened events never overlap, got {self.event_margin}"
            )

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> PostSettings:
        """Build from a config's ``parameters`` (strings); absent keys keep the defaults."""
        fields = {"fusion": str, "smoothing_window": int, "min_event_length": int}
        fields |= {"merge_gap": int, "vote_quorum": float, "threshold_policy": str}
        fields |= {"event_margin": int}
        values: dict[str, object] = {}
        for name, kind in fields.items():
            if parameters.get(name) not in (None, ""):
                try:
                    values[name] = kind(parameters[name])
                except ValueError as error:
                    raise DataError(f"parameter {name}: got {parameters[name]!r}") from error
        values["dynamic"] = DynamicSettings.from_parameters(parameters)
        return cls(**values)

    def decide(self, final: np.ndarray) -> np.ndarray:
        """Per-step decision on the smoothed fused score."""
        if self.fusion == "vote":
            return final >= self.vote_quorum
        return final > 1.0


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
    values: np.ndarray | None = None,
) -> PostResult:
    """Normalise, fuse, smooth, decide and find events for one chunk (see the module doc).

    ``values`` is the chunk's telemetry value, ``(T,)``: with the dynamic policy, a step
    whose value has repeated for longer than the channel's ``frozen_limit`` is anomalous
    whatever its fused score (:mod:`~satwatch.pipeline.stuck`). ``None`` turns that rule off.

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
    carry = stuck = None
    if dynamic:
        fused, final, decision, (carry, stuck), confirmed = _dynamic_stage(
            flat, thresholds, settings, state, end_of_stream, values
        )
        # Events come from the decisions confirmed at the end of each batch (module doc).
        confirmed_final, confirmed_decision, confirmed_state = confirmed
        report, run = _events(confirmed_final, confirmed_decision, settings, confirmed_state)
    else:
        ratios = [t.ratio(s) for s, t in zip(flat, thresholds, strict=True)]
        fused = fuse(ratios, settings.fusion)
        final = smooth(fused, state)
        decision = settings.decide(final)
        report, run = _events(final, decision, settings, state)
    joined = np.concatenate([state.history, fused])
    history = joined[joined.size - state.history.size :]
    new_state = PostState(state.stream_id, state.offset + fused.size, history, run, carry, stuck)
    last_step = state.offset + fused.size - 1
    widened = [widen(row, settings.event_margin, last_step) for row in report]
    events = np.asarray(widened, np.float32).reshape(-1, 3)
    return PostResult(final, decision, events, new_state)


def widen(row: EventRow, margin: int, last_step: int) -> EventRow:
    """Step 6: the event ``margin`` steps wider on both sides, within steps ``0..last_step``.

    A closed event's widened end is always seen (it closed ``merge_gap >= 2 * margin`` quiet
    steps later); an open one's grows with the stream, and its last report is the event the
    whole series gives.
    """
    start, end, peak = row
    return (max(0, start - margin), min(end + margin, last_step), peak)


def _events(
    final: np.ndarray, decision: np.ndarray, settings: PostSettings, state: PostState
) -> tuple[list[EventRow], EventRow | None]:
    """Step 5 for one chunk, continuing ``state``: ``(events to report, open event)``."""
    return find_events(
        final,
        decision,
        state.offset,
        state.run,
        min_event_length=settings.min_event_length,
        merge_gap=settings.merge_gap,
    )


def _dynamic_stage(
    scores: Sequence[np.ndarray],
    thresholds: Sequence[Threshold],
    settings: PostSettings,
    state: PostState,
    end_of_stream: bool = False,
    values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[ArrivalState, StuckState], tuple]:
    """``(fused z, smoothed, decision, (carry, stuck), confirmed)`` of the dynamic policy for
    one chunk.

    ``confirmed`` is what events are made of: ``(smoothed, decision, state)`` of the steps whose
    batch completed in this chunk, decided at the end of the batch (``state.offset`` = the
    first of them), as :func:`~satwatch.pipeline.dynamic_threshold.decide_and_confirm` gives;
    at the end of the stream, the steps of its incomplete last batch follow. Each of those
    decisions is also true where the stuck-value rule flags its step.
    """
    if not isinstance(thresholds, ChannelThresholds) or not thresholds.scales:
        raise DataError(
            "threshold_policy dynamic: expected the channel's training statistics (median, "
            "std, floor from thresholds.json written by satwatch build), got thresholds only"
        )
    fused = fused_z(scores, thresholds.scales, settings.dynamic.z_power, thresholds.weights)
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
    before = state.stuck or StuckState()
    # The flags of the steps still waiting for their batch came with the previous chunk.
    flags, stuck = stuck_steps(
        values, fused.size, thresholds.frozen_limit, before, keep=dynamic.batch - 1
    )
    first_flagged = state.offset - before.recent.size
    flags = flags[result.confirmed_first - first_flagged :][: decisions.size]
    decisions = decisions | flags
    confirmed = (smoothed, decisions, replace(state, offset=result.confirmed_first))
    return fused, result.smoothed, result.decision, (result.state, stuck), confirmed


def confirmed_smoothed(result: ArrivalResult, before: ArrivalState, offset: int) -> np.ndarray:
    """The smoothed values of the confirmed steps, float32.

    The first confirmed steps may be the previous chunk's last ones, still waiting for their
    batch then: they are the newest values of the state's history.
    """
    waiting = offset - result.confirmed_first
    earlier = before.history[before.history.size - waiting :] if waiting else np.zeros(0)
    values = np.concatenate([earlier, result.smoothed])[: result.confirmed.size]
    return values.astype(np.float32)
