"""Stream channels' telemetry through the server, chunk by chunk, state carried.

A channel's chunks go one after another (each request carries the state the previous answer
returned: OmniAnomaly's ``encoder_state``/``decoder_state``, TranAD's ``context``,
postprocessing's ``post_state``), so the per-step scores are those of one request over the
whole series (bit-identical for chunk sizes that are multiples of 16, see
:data:`satwatch.client.sources.ALIGNMENT`). Channels run in parallel on a thread pool, so
several requests are in flight at once. A failing channel is recorded with its error; the
others go on. A replay's last chunk carries ``end_of_stream`` (where the target takes it), so
postprocessing confirms the steps of its incomplete last batch too; a live stream (standard
input) has no known end.

Example::

    with Connection("grpc", "127.0.0.1:8001") as connection:
        target = prepare_target(connection, "custom_logic", ["E-1"])
        runs = stream_channels(connection, target, [from_dataset(dataset, "E-1", 256)])
        runs["E-1"].events
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from satwatch.client.connection import Connection
from satwatch.client.sources import Telemetry
from satwatch.client.targets import Target, make_target, subsystem_for
from satwatch.client.tracking import Series, StreamTracker
from satwatch.evaluation.run import RunEvent
from satwatch.exceptions import ClientError, SatwatchError
from satwatch.pipeline.poststate import stream_id_of

LOGGER = logging.getLogger(__name__)

DEFAULT_CHUNK = 256
"""Time steps per request of a live stream (what has arrived) and of the benchmarks."""
REPLAY_CHUNK = 1024
"""Time steps per request when a recorded series is replayed (a channel's test split).

Each request pays the pipeline's fixed costs (the BLS hops, the stubs, gRPC) whatever its
length, so a replay sends four times fewer: the 27 seed channels took 11.1-18.7 s against
17.4-20.9 s with 256-step chunks (`detect --channels seed`, five alternating pairs, 2 cores,
2026-12-04; README, "Benchmark"), with the same events. Decisions do not depend on the
chunking.
"""
DEFAULT_WORKERS = 4

OnChunk = Callable[[str, int, int | None], None]
"""``on_chunk(channel, steps done, total or None)`` after every answered chunk."""
OnEvent = Callable[[RunEvent], None]
"""``on_event(event)`` as soon as an event is final."""


@dataclass
class StreamRun:
    """One channel's stream: every per-step array, the events, the timing, or the error.

    Attributes:
        channel: Channel id.
        subsystem: Its subsystem.
        steps: Time steps answered.
        value: Raw telemetry value (column 0) of the answered steps.
        arrays: ``<detector>_score`` / ``<detector>_decision`` over the whole stream.
        events: Events, each once, by start.
        labels: Expert labels when the source had them.
        label_events: Labelled events when the source had them.
        requests: Chunks sent.
        seconds: Wall time of the stream.
        error: Why the stream stopped early, or None.
        stream_id: postprocessing's id of the stream (the server's event log keys its rows
            by it), None for a target without postprocessing.
    """

    channel: str
    subsystem: str
    steps: int = 0
    value: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    events: list[RunEvent] = field(default_factory=list)
    labels: np.ndarray | None = None
    label_events: list | None = None
    requests: int = 0
    seconds: float = 0.0
    error: SatwatchError | None = None
    stream_id: int | None = None


def prepare_target(
    connection: Connection,
    model: str,
    channels: Sequence[str],
    version: str = "",
    spacecraft: str = "SMAP",
) -> Target:
    """The target for ``model``, checked against the channels and the running server.

    Raises:
        ClientError: No server, a model not READY, or a channel the target cannot serve.
    """
    target = make_target(model, version, spacecraft)
    for channel in channels:
        target.check_channel(channel)
    needed = dict.fromkeys(m for c in channels for m in target.models(c))
    connection.check_live()
    for name in needed:
        version_of = version if name == target.model else ""
        connection.check_ready([name], version_of)
    target.discover(connection)
    return target


def stream_channel(
    connection: Connection,
    target: Target,
    telemetry: Telemetry,
    on_chunk: OnChunk | None = None,
    on_event: OnEvent | None = None,
) -> StreamRun:
    """Stream one channel's chunks in order; errors end the stream and are recorded."""
    channel = telemetry.channel
    run = StreamRun(
        channel,
        subsystem_for(channel),
        labels=telemetry.labels,
        label_events=telemetry.label_events,
    )
    tracker: StreamTracker | None = None
    value = Series(np.dtype(np.float32))
    state: dict[str, np.ndarray] = {}
    started = time.perf_counter()
    sent = 0
    try:
        for raw in telemetry.chunks:
            sent += raw.shape[0]
            # A replay's length is known: its last chunk says so. A live stream has no end.
            last = telemetry.total is not None and sent >= telemetry.total
            result, state = target.step(connection, channel, raw, state, last)
            if tracker is None:
                if "post_state" in state:
                    run.stream_id = stream_id_of(state["post_state"])
                run.subsystem = subsystem_for(channel, result.subsystem)
                tracker = StreamTracker(
                    channel, run.subsystem, target.detectors, result.reported is not None
                )
            value.append(raw[:, 0])
            run.requests += 1
            for event in tracker.add(result.arrays, result.reported):
                _found(run, event, on_event)
            run.steps = tracker.steps
            if on_chunk is not None:
                on_chunk(channel, run.steps, telemetry.total)
        if tracker is not None:
            for event in tracker.finish():
                _found(run, event, on_event)
    except SatwatchError as error:
        LOGGER.info("channel %s stopped after %d steps: %s", channel, run.steps, error)
        run.error = error
    except Exception as error:  # noqa: BLE001 - one failing channel never stops the others
        LOGGER.exception("channel %s failed", channel)
        run.error = ClientError(f"channel {channel}: {type(error).__name__}: {error}")
    run.seconds = time.perf_counter() - started
    run.value = value.view().copy()
    if tracker is not None:
        run.arrays = {name: tracker.array(name) for name in tracker.arrays}
    return run


def _found(run: StreamRun, event: RunEvent, on_event: OnEvent | None) -> None:
    run.events.append(event)
    if on_event is not None:
        on_event(event)


def stream_channels(
    connection: Connection,
    target: Target,
    sources: Sequence[Telemetry],
    workers: int = DEFAULT_WORKERS,
    on_chunk: OnChunk | None = None,
    on_event: OnEvent | None = None,
    on_done: Callable[[StreamRun], None] | None = None,
) -> dict[str, StreamRun]:
    """Stream several channels in parallel (``workers`` at a time); runs by channel, in order.

    Raises:
        ClientError: When the same channel is given twice.
    """
    names = [t.channel for t in sources]
    if len(set(names)) != len(names):
        raise ClientError(f"channels: each channel once, got {', '.join(names)}")

    def one(telemetry: Telemetry) -> StreamRun:
        run = stream_channel(connection, target, telemetry, on_chunk, on_event)
        if on_done is not None:
            on_done(run)
        return run

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stream") as pool:
        runs = list(pool.map(one, sources))
    return {run.channel: run for run in runs}
