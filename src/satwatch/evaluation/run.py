"""Evaluation run folders: what ``evaluate``/``detect`` write and ``satwatch report`` reads.

A run folder holds (every part optional except that the folder holds at least one of them)::

    DIR/metrics.json        {"spacecraft", "detectors": {<detector>: {"overall", "channels"}}}
    DIR/metrics.csv         the same figures, one row per detector x channel (+ overall)
    DIR/scores/<chan>.npz   value, labels and <d>_score / <d>_threshold / <d>_decision per detector
    DIR/events.csv          channel,subsystem,start,end,peak_score,detectors
    DIR/events.json         a list of the same records

``start``/``end`` are 0-based inclusive steps of the replayed series. In ``events.csv`` the
agreeing detectors are joined with ``+`` (``omni+tranad``); ``events.json`` lists them.

Usage::

    save_channel_run(out, "E-1", value=chan.test[:, 0], labels=chan.labels,
                     omni_score=s, omni_threshold=t, omni_decision=s > t)
    write_events(out, [RunEvent("E-1", "EPS", 120, 180, 3.2, ("omni", "tranad"))])
    run = load_run(out)
    run.channel("E-1").scores["omni"], run.metrics["detectors"]["omni"]["overall"]["event_f1"]
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satwatch.detectors import registry
from satwatch.evaluation.metrics import channel_metrics
from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

FUSED = "fused"


def run_detectors() -> tuple[str, ...]:
    """Detectors in their display order: the registered ones, then ``fused``; other names
    are accepted after these."""
    return (*registry.kinds(), FUSED)


EVENT_COLUMNS = ("channel", "subsystem", "start", "end", "peak_score", "detectors")
SCORES_DIR = "scores"
METRICS_FILE = "metrics.json"
EVENTS_CSV = "events.csv"
EVENTS_JSON = "events.json"

_ARRAY_KEY = re.compile(r"^([a-z][a-z0-9]*)_(score|threshold|decision)$")
_DETECTOR_SEP = "+"


@dataclass(frozen=True)
class RunEvent:
    """One detected anomaly event.

    Attributes:
        channel: Channel id, e.g. ``"E-1"``.
        subsystem: Its subsystem, e.g. ``"EPS"``.
        start: First anomalous step (0-based, inclusive).
        end: Last anomalous step (inclusive).
        peak_score: Highest (fused) score inside the event.
        detectors: The detectors that agreed, e.g. ``("omni", "tranad")``.
    """

    channel: str
    subsystem: str
    start: int
    end: int
    peak_score: float
    detectors: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        """The events.json record (``detectors`` as a list)."""
        body = asdict(self)
        body["detectors"] = list(self.detectors)
        return body


@dataclass(frozen=True)
class ChannelRun:
    """One channel's arrays from ``scores/<channel>.npz``.

    Attributes:
        channel: Channel id.
        value: Raw telemetry value (column 0), float32 ``(T,)``.
        labels: Expert labels, bool ``(T,)``, or None when the run had none.
        scores: Detector -> per-step score, float32 ``(T,)``.
        thresholds: Detector -> its threshold (``fused``: 1.0, or NaN when it moves with the
            stream).
        decisions: Detector -> per-step decision, bool ``(T,)``.
    """

    channel: str
    value: np.ndarray
    labels: np.ndarray | None
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    decisions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def detectors(self) -> list[str]:
        """Detectors with arrays for this channel, in display order."""
        return ordered_detectors(self.scores)


def ordered_detectors(names: Iterable[str]) -> list[str]:
    """The registered detectors and ``fused`` first (in that order), then any others sorted."""
    names, order = set(names), run_detectors()
    known = [d for d in order if d in names]
    return known + sorted(names - set(order))


def channel_file(run_dir: Path, channel: str) -> Path:
    """Where a channel's arrays live: ``run_dir/scores/<channel>.npz``."""
    return Path(run_dir) / SCORES_DIR / f"{channel}.npz"


def save_channel_run(
    run_dir: Path,
    channel: str,
    *,
    value: np.ndarray,
    labels: np.ndarray | None = None,
    **arrays: Any,
) -> Path:
    """Write one channel's arrays to ``run_dir/scores/<channel>.npz`` (atomically).

    Args:
        run_dir: The run folder (created if missing).
        channel: Channel id.
        value: Raw telemetry value, ``(T,)`` (column 0 of the test split).
        labels: Expert labels ``(T,)`` bool; omit when there are none (``--input FILE``).
        **arrays: Per detector ``d``: ``d_score`` ``(T,)``, ``d_threshold`` scalar and
            optionally ``d_decision`` ``(T,)`` bool (default ``score > threshold`` in float32,
            as the served graph decides).

    Returns:
        The written file.

    Raises:
        DataError: A shape does not match ``value``, a key is not ``<detector>_<kind>``, or a
            detector lacks its score or threshold.
    """
    value = np.asarray(value, dtype=np.float32).reshape(-1)
    length = value.size
    out: dict[str, np.ndarray] = {"value": value}
    if labels is not None:
        out["labels"] = _series(channel, "labels", labels, length, bool)
    detectors: dict[str, set[str]] = {}
    for key, array in arrays.items():
        match = _ARRAY_KEY.match(key)
        if match is None:
            raise DataError(
                f"channel {channel}: array {key!r} is not <detector>_score|_threshold|_decision"
            )
        detector, kind = match.groups()
        detectors.setdefault(detector, set()).add(kind)
        if kind == "threshold":
            out[key] = _threshold(channel, key, array)
        elif kind == "score":
            out[key] = _series(channel, key, array, length, np.float32)
        else:
            out[key] = _series(channel, key, array, length, bool)
    for detector, kinds in detectors.items():
        missing = {"score", "threshold"} - kinds
        if missing:
            raise DataError(
                f"channel {channel}: detector {detector!r} needs {detector}_score and "
                f"{detector}_threshold; got only {sorted(f'{detector}_{k}' for k in kinds)}"
            )
        if "decision" not in kinds:
            out[f"{detector}_decision"] = out[f"{detector}_score"] > out[f"{detector}_threshold"]
    path = channel_file(run_dir, channel)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target then rename: a reader never sees a half-written file, and
    # concurrent channel writers never share a temporary name.
    handle, tmp = tempfile.mkstemp(prefix=f".{channel}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(stream, **out)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a run folder is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_channel_results(
    run_dir: Path,
    channel: str,
    value: np.ndarray,
    labels: np.ndarray | None,
    results: Mapping[str, Any],
) -> Path:
    """:func:`save_channel_run` from per-detector results (offline ``ChannelResult``).

    Args:
        run_dir: The run folder.
        channel: Channel id.
        value: Raw telemetry value ``(T,)``.
        labels: Expert labels ``(T,)`` or None.
        results: Detector -> object with ``scores``, ``threshold`` and ``decisions``.
    """
    arrays: dict[str, Any] = {}
    for detector, result in results.items():
        arrays[f"{detector}_score"] = result.scores
        arrays[f"{detector}_threshold"] = result.threshold
        arrays[f"{detector}_decision"] = result.decisions
    return save_channel_run(run_dir, channel, value=value, labels=labels, **arrays)


def _series(channel: str, key: str, array: Any, length: int, dtype: Any) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 1 or array.size != length:
        raise DataError(
            f"channel {channel}: {key} must be 1-D with {length} steps (as value); "
            f"got shape {array.shape}"
        )
    return array.astype(dtype)


def _threshold(channel: str, key: str, array: Any) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.size != 1:
        raise DataError(f"channel {channel}: {key} must be a scalar; got shape {array.shape}")
    return array.reshape(())


def load_channel(path: Path) -> ChannelRun:
    """Read one ``scores/<channel>.npz``.

    Raises:
        DataError: The file is missing, not an npz, or lacks ``value``.
    """
    path = Path(path)
    channel = path.stem
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError as err:
        raise DataError(f"channel {channel}: expected scores at {path}; not found") from err
    except (OSError, ValueError) as err:
        raise DataError(f"channel {channel}: {path} is not a readable npz file ({err})") from err
    if "value" not in arrays:
        raise DataError(f"channel {channel}: {path} has no 'value' array; got {sorted(arrays)}")
    run = ChannelRun(channel, arrays["value"], arrays.get("labels"))
    for key, array in arrays.items():
        match = _ARRAY_KEY.match(key)
        if match is None:
            continue
        detector, kind = match.groups()
        if kind == "score":
            run.scores[detector] = array
        elif kind == "threshold":
            run.thresholds[detector] = float(array)
        else:
            run.decisions[detector] = array.astype(bool)
    for detector in run.scores:
        run.thresholds.setdefault(detector, math.nan)
        if detector not in run.decisions:
            run.decisions[detector] = run.scores[detector] > np.float32(run.thresholds[detector])
    return run


def write_events(run_dir: Path, events: Iterable[RunEvent | Mapping[str, Any]]) -> None:
    """Write ``events.csv`` and ``events.json`` (sorted by channel, start).

    Args:
        run_dir: The run folder (created if missing).
        events: :class:`RunEvent` or mappings with the :data:`EVENT_COLUMNS` keys
            (``detectors`` a sequence or a ``+``-joined string).
    """
    records = sorted((_as_event(e) for e in events), key=lambda e: (e.channel, e.start, e.end))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / EVENTS_CSV).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(EVENT_COLUMNS)
        for e in records:
            writer.writerow(
                [e.channel, e.subsystem, e.start, e.end, f"{e.peak_score:.6g}",
                 _DETECTOR_SEP.join(e.detectors)]
            )  # fmt: skip
    body = json.dumps([e.record() for e in records], indent=2)
    (run_dir / EVENTS_JSON).write_text(body + "\n")


def read_events(run_dir: Path) -> list[RunEvent]:
    """Read a run's events from ``events.json`` (or ``events.csv``); [] when there are none.

    Raises:
        DataError: The file exists but is malformed.
    """
    run_dir = Path(run_dir)
    json_path, csv_path = run_dir / EVENTS_JSON, run_dir / EVENTS_CSV
    if json_path.exists():
        try:
            rows = json.loads(json_path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{json_path} is not valid JSON ({err})") from err
        if not isinstance(rows, list):
            raise DataError(f"{json_path}: expected a list of events; got {type(rows).__name__}")
        source = json_path
    elif csv_path.exists():
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        source = csv_path
    else:
        return []
    events = []
    for number, row in enumerate(rows, start=1):
        try:
            events.append(_as_event(row))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"{source}: event {number} is malformed ({err}); expected keys {EVENT_COLUMNS}"
            ) from err
    return events


def _as_event(event: RunEvent | Mapping[str, Any]) -> RunEvent:
    if isinstance(event, RunEvent):
        return event
    detectors = event.get("detectors") or ()
    if isinstance(detectors, str):
        detectors = [d for d in detectors.split(_DETECTOR_SEP) if d]
    return RunEvent(
        channel=str(event["channel"]),
        subsystem=str(event["subsystem"]),
        start=int(event["start"]),
        end=int(event["end"]),
        peak_score=float(event["peak_score"]),
        detectors=tuple(str(d) for d in detectors),
    )


class Run:
    """A run folder: metrics (eager, small), channel arrays (lazy, cached), events.

    Attributes:
        path: The folder.
        metrics: metrics.json (``{"detectors": {}}`` when the run has none).
        events: The detected events.
        channels: Channels with a ``scores/<channel>.npz``, sorted.
    """

    def __init__(self, path: Path, metrics: dict, events: list[RunEvent], channels: list[str]):
        self.path = Path(path)
        self.metrics = metrics
        self.events = events
        self.channels = channels
        self._cache: dict[str, ChannelRun] = {}

    @property
    def spacecraft(self) -> str:
        """Whose telemetry the run scored (metrics.json's ``spacecraft``; SMAP before it
        was recorded)."""
        return str(self.metrics.get("spacecraft", "SMAP"))

    @property
    def detectors(self) -> list[str]:
        """Detectors named in metrics.json, in display order."""
        return ordered_detectors(self.metrics.get("detectors", {}))

    def channel(self, name: str) -> ChannelRun:
        """One channel's arrays (read on first use).

        Raises:
            DataError: The run has no arrays for ``name``.
        """
        if name not in self._cache:
            if name not in self.channels:
                raise DataError(
                    f"run {self.path}: no scores for channel {name}; "
                    f"it has {', '.join(self.channels) or 'none'}"
                )
            self._cache[name] = load_channel(channel_file(self.path, name))
        return self._cache[name]

    def channel_metrics(self, detector: str, channel: str) -> dict | None:
        """metrics.json's figures for one detector on one channel, or None."""
        section = self.metrics.get("detectors", {}).get(detector, {})
        return section.get("channels", {}).get(channel)

    def events_of(self, channel: str) -> list[RunEvent]:
        """The events detected on one channel, by start."""
        return [e for e in self.events if e.channel == channel]


def load_run(run_dir: Path) -> Run:
    """Open a run folder.

    Raises:
        DataError: The folder is missing, holds none of metrics.json / scores / events, or
            metrics.json is malformed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run folder {run_dir} does not exist (expected the --output of evaluate)")
    metrics = _read_metrics(run_dir / METRICS_FILE)
    scores = run_dir / SCORES_DIR
    channels = sorted(p.stem for p in scores.glob("*.npz")) if scores.is_dir() else []
    events = read_events(run_dir)
    has_events = (run_dir / EVENTS_JSON).exists() or (run_dir / EVENTS_CSV).exists()
    if metrics is None and not channels and not has_events:
        raise DataError(
            f"run folder {run_dir} holds no {METRICS_FILE}, {SCORES_DIR}/<channel>.npz or "
            f"{EVENTS_CSV}; expected the --output folder of `satwatch evaluate` or `detect`"
        )
    return Run(run_dir, metrics or {"detectors": {}}, events, channels)


def _read_metrics(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err})") from err
    detectors = metrics.get("detectors") if isinstance(metrics, dict) else None
    if not isinstance(detectors, dict) or not all(
        isinstance(s, dict) and "overall" in s and "channels" in s for s in detectors.values()
    ):
        raise DataError(
            f'{path}: expected {{"detectors": {{<name>: {{"overall": ..., "channels": ...}}}}}}; '
            f"got keys {sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__}"
        )
    return metrics


def channel_metrics_from_arrays(chan: ChannelRun, detectors: Sequence[str]) -> dict[str, dict]:
    """Metrics of a channel computed from its arrays (for runs without metrics.json).

    Labelled events are the runs of ``labels`` (adjacent labelled events merge).
    """
    if chan.labels is None:
        return {}
    return {
        d: channel_metrics(chan.decisions[d], chan.labels).as_dict()
        for d in detectors
        if d in chan.decisions
    }


__all__ = [
    "EVENT_COLUMNS",
    "run_detectors",
    "ChannelRun",
    "Run",
    "RunEvent",
    "channel_file",
    "channel_metrics_from_arrays",
    "load_channel",
    "load_run",
    "ordered_detectors",
    "read_events",
    "save_channel_results",
    "save_channel_run",
    "write_events",
]
