"""Served evaluation: stream the test split through the server and measure every detector.

Each channel's test telemetry is streamed in chunks (state carried) through the pipeline's
steps — ``preprocessing`` -> ``SMAP_<chan>`` and ``tranad_sat1`` -> ``postprocessing``
(:class:`satwatch.client.targets.StepsTarget`) — which gives, per step, each detector's own
served decision (``anomaly_detected``, the threshold baked into the graph) and the fused
decision of postprocessing (what ``custom_logic`` answers for the channel). The metrics are
those of the offline evaluation (:mod:`satwatch.evaluation.metrics`) with a ``fused``
detector added, so ``metrics.json`` has the same shape.

The fused detector is judged on the events it reports, as an operator sees them: every step
from an event's start to its end counts as flagged, including the quiet steps postprocessing
merged into the event (``merge_gap``). Its raw per-step decisions would count each merged
piece as a separate event.

The single detectors' numbers equal the offline evaluation's when it scores with the same
exported files (``evaluate_offline(..., repository=...)``): the chunked stream gives the
served graph's whole-series scores bit for bit (chunks a multiple of 16 steps).

Example::

    with Connection("grpc") as connection:
        result = evaluate_served(connection, ["E-1", "A-1"])
    result.report["detectors"]["fused"]["overall"]["event_f1"]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from satwatch.client.connection import Connection
from satwatch.client.output import write_stream_runs
from satwatch.client.sources import check_chunk, from_dataset
from satwatch.client.stream import (
    DEFAULT_WORKERS,
    REPLAY_CHUNK,
    OnChunk,
    OnEvent,
    StreamRun,
    prepare_target,
    stream_channels,
)
from satwatch.client.targets import STEPS
from satwatch.data import load_dataset
from satwatch.evaluation.events import events_to_decisions
from satwatch.evaluation.metrics import channel_metrics, summarize, write_report
from satwatch.evaluation.run import run_detectors
from satwatch.paths import data_dir

LOGGER = logging.getLogger(__name__)


@dataclass
class ServedEvaluation:
    """What :func:`evaluate_served` measured.

    Attributes:
        report: ``{"detectors": {"omni"|"tranad"|"fused": {"overall", "channels"}}}`` over the
            channels that streamed completely.
        runs: Every channel's stream (arrays, events, timing, error).
        failed: Channels whose stream stopped, with the error.
    """

    report: dict
    runs: dict[str, StreamRun]
    failed: dict[str, Exception] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Time steps streamed."""
        return sum(run.steps for run in self.runs.values())


def evaluate_served(
    connection: Connection,
    channels: Sequence[str],
    data: Path | None = None,
    *,
    chunk: int = REPLAY_CHUNK,
    workers: int = DEFAULT_WORKERS,
    spacecraft: str = "SMAP",
    on_chunk: OnChunk | None = None,
    on_event: OnEvent | None = None,
) -> ServedEvaluation:
    """Stream the channels' test splits through the server and compute the metrics.

    Raises:
        ClientError: No server, a model not READY, or every channel failed (the first error).
        DataError: Unknown channels or missing telemetry.
    """
    check_chunk(chunk)
    dataset = load_dataset(data_dir(data), spacecraft=spacecraft)
    sources = [from_dataset(dataset, name, chunk) for name in channels]
    target = prepare_target(connection, STEPS, list(channels), spacecraft=dataset.spacecraft)
    runs = stream_channels(
        connection, target, sources, workers=workers, on_chunk=on_chunk, on_event=on_event
    )
    failed = {name: run.error for name, run in runs.items() if run.error is not None}
    if failed and len(failed) == len(runs):
        raise next(iter(failed.values()))
    report = {"spacecraft": dataset.spacecraft, "detectors": {}}
    complete = {name: run for name, run in runs.items() if name not in failed}
    for detector in run_detectors():
        per_channel = {
            name: channel_metrics(judged_decisions(run, detector), run.labels, run.label_events)
            for name, run in complete.items()
        }
        report["detectors"][detector] = summarize(per_channel)
    return ServedEvaluation(report, runs, failed)


def judged_decisions(run: StreamRun, detector: str) -> np.ndarray:
    """The per-step decisions a detector is judged on: ``fused`` by its reported events."""
    if detector == "fused":
        return events_to_decisions(run.events, run.steps)
    return run.arrays[f"{detector}_decision"]


def write_evaluation(
    result: ServedEvaluation,
    output: Path,
    artifacts: Path | None = None,
    spacecraft: str = "SMAP",
) -> list[Path]:
    """Write metrics.json/metrics.csv, the per-channel arrays and the events into ``output``."""
    json_path, csv_path = write_report(result.report, output)
    complete = {n: r for n, r in result.runs.items() if n not in result.failed}
    return [json_path, csv_path, *write_stream_runs(output, complete, artifacts, spacecraft)]


def failure_lines(result: ServedEvaluation) -> list[str]:
    """One line per failed channel."""
    return [f"channel {name}: {error}" for name, error in result.failed.items()]


__all__ = [
    "ServedEvaluation",
    "evaluate_served",
    "failure_lines",
    "judged_decisions",
    "write_evaluation",
]
