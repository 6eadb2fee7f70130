"""The detection-quality study: every detector alone and fused, with each event's fate.

One channel set at a time (the validation channels to choose on, then the seed channels to
report once), scored exactly as served:

1. a repository built for the set (``satwatch build``'s own function: training what is
   missing, export, calibration) gives each detector's test scores from its exported files
   (:func:`~satwatch.evaluation.offline.evaluate_detector` with ``repository``);
2. ``fused`` is the served postprocessing over every detector's scores, with the channel's
   shipped thresholds (:func:`~satwatch.evaluation.offline.fused_decisions`);
3. each detector alone goes through the same function with only its own training statistics
   (:func:`alone_thresholds`), so its row says what it would find if it were served alone;
   the ``frozen`` row is postprocessing's stuck-value rule alone (:mod:`satwatch.pipeline.stuck`),
   which ``fused`` includes;
4. every labelled event is listed with the rows that overlap it (or missed), and every
   ``fused`` false alarm with the rows that also flag it.

Example::

    table = study_channels(["A-6", "B-1"], data, artifacts, repository, title="validation")
    table.rows["fused"]["overall"]["event_f1"]
    [e for e in table.events if not e.fused]        # what the served detector misses
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from satwatch.data import Channel, load_dataset
from satwatch.detectors import registry
from satwatch.detectors.artifacts import artifact_dir, load_trained
from satwatch.detectors.normalization import Normalisation
from satwatch.detectors.training import calibration_scores
from satwatch.evaluation.events import decisions_to_events
from satwatch.evaluation.metrics import (
    TABLE_COLUMNS,
    ChannelMetrics,
    channel_metrics,
    summarize,
    table_cells,
)
from satwatch.evaluation.offline import (
    FUSED,
    evaluate_detector,
    fused_decisions,
)
from satwatch.pipeline.calibration import ChannelThresholds, training_statistics
from satwatch.pipeline.postprocess import PostSettings
from satwatch.repository.stages import served_postprocessing

FROZEN = "frozen"
"""The study row of postprocessing's stuck-value rule alone."""

STUDY_FILE = "study.json"
STUDY_MARKDOWN = "study.md"


@dataclass(frozen=True)
class EventFate:
    """A labelled event, or a false alarm of ``fused``, and the rows whose events overlap it.

    Attributes:
        channel: Channel id.
        start: First test step (inclusive).
        end: Last test step (inclusive).
        kind: The label's class (``point`` / ``contextual``); ``false alarm`` otherwise.
        found_by: The rows (detector kinds, then ``fused``) reporting an event over it.
    """

    channel: str
    start: int
    end: int
    kind: str
    found_by: tuple[str, ...]

    @property
    def fused(self) -> bool:
        """True when the served (fused) detector reports it."""
        return FUSED in self.found_by


@dataclass
class StudyTable:
    """One channel set's results.

    Attributes:
        title: ``validation`` or ``seed`` (or the caller's name for the set).
        channels: The channels, in order.
        rows: Row name (each detector kind, then ``fused``) -> ``summarize()`` output.
        events: Every labelled event with its fate.
        false_alarms: Every ``fused`` event overlapping no label.
    """

    title: str
    channels: list[str]
    rows: dict[str, dict] = field(default_factory=dict)
    events: list[EventFate] = field(default_factory=list)
    false_alarms: list[EventFate] = field(default_factory=list)


def alone_thresholds(
    entry: ChannelThresholds, index: int, train_scores: np.ndarray, settings: PostSettings
) -> ChannelThresholds:
    """The entry a channel's thresholds would have if detector ``index`` were served alone."""
    return training_statistics([train_scores], [entry.ratio[index]], settings.dynamic)


def frozen_alone(
    entry: ChannelThresholds, values: np.ndarray, channel: str, settings: PostSettings
) -> np.ndarray:
    """The events of postprocessing's stuck-value rule alone: the served function given a
    score that never rises, with the channel's frozen limit."""
    silent = np.zeros(values.size, np.float32)
    alone = alone_thresholds(entry, 0, silent, settings)
    alone = replace(alone, frozen_limit=entry.frozen_limit)
    return fused_decisions([silent], channel, settings, {channel: alone}, values)


def training_calibration(
    detector: registry.Detector,
    channel: Channel,
    artifacts: Path,
    spacecraft: str = "SMAP",
    loaded: dict[Path, tuple] | None = None,
) -> np.ndarray:
    """The detector's scores of the channel's training split, as the build calibrates it.

    ``loaded``: the shared models already loaded, by folder, so that a model every channel
    shares (TranAD's) is read once.
    """
    folder = artifact_dir(artifacts, detector.kind, detector.served_name(channel.name, spacecraft))
    if detector.per_channel or loaded is None:
        model, card = load_trained(folder)
    else:
        if folder not in loaded:
            loaded[folder] = load_trained(folder)
        model, card = loaded[folder]
    stats = Normalisation.from_dict(card["normalisation"][channel.name])
    return calibration_scores(detector.module(), model, stats.apply(channel.train))


def _fates(
    spans: Sequence[tuple[int, int, str]], decisions: dict[str, np.ndarray], channel: str
) -> list[EventFate]:
    return [
        EventFate(
            channel,
            start,
            end,
            kind,
            tuple(r for r, d in decisions.items() if d[start : end + 1].any()),
        )
        for start, end, kind in spans
    ]


def study_channels(
    channels: Sequence[str],
    data: Path,
    artifacts: Path,
    repository: Path,
    title: str,
    spacecraft: str = "SMAP",
    on_step: Callable[[str], None] | None = None,
) -> StudyTable:
    """Score ``channels`` with the repository built for them; see the module doc.

    Raises:
        ModelError: A detector's artifact or exported file is missing.
        RepositoryError, DataError: The repository's postprocessing or thresholds are unusable.
    """
    dataset = load_dataset(data, spacecraft=spacecraft)
    settings, table = served_postprocessing(repository)
    detectors = registry.detectors()
    results = {}
    for detector in detectors:
        _, results[detector.kind] = evaluate_detector(
            detector.kind, list(channels), data, artifacts, spacecraft, repository=repository
        )
        if on_step is not None:
            on_step(f"scored {detector.kind}")
    per_row: dict[str, dict[str, ChannelMetrics]] = {d.kind: {} for d in detectors}
    per_row[FROZEN], per_row[FUSED] = {}, {}
    study = StudyTable(title, list(channels))
    shared: dict[Path, tuple] = {}
    for name in channels:
        channel = dataset.channel(name)
        tests = [results[d.kind][name].scores for d in detectors]
        decisions = {}
        for index, detector in enumerate(detectors):
            train = training_calibration(detector, channel, artifacts, spacecraft, shared)
            alone = {name: alone_thresholds(table[name], index, train, settings)}
            decisions[detector.kind] = fused_decisions([tests[index]], name, settings, alone)
        values = channel.test[:, 0]
        decisions[FROZEN] = frozen_alone(table[name], values, name, settings)
        decisions[FUSED] = fused_decisions(tests, name, settings, table, values)
        for row, decided in decisions.items():
            per_row[row][name] = channel_metrics(decided, channel.labels, channel.events)
        labelled = [(e.start, e.end, e.kind) for e in channel.events]
        study.events += _fates(labelled, decisions, name)
        alarms = [
            (start, end, "false alarm")
            for start, end in decisions_to_events(decisions[FUSED])
            if not channel.labels[start : end + 1].any()
        ]
        study.false_alarms += _fates(alarms, decisions, name)
        if on_step is not None:
            on_step(f"{title} {name}")
    study.rows = {row: summarize(metrics) for row, metrics in per_row.items()}
    return study


# --- files ---------------------------------------------------------------------------------


def fate_text(fate: EventFate) -> str:
    """``fused; omni+nearest``, ``missed`` or, for a false alarm, the rows flagging it."""
    alone = "+".join(r for r in fate.found_by if r != FUSED) or "no detector alone"
    if fate.kind == "false alarm":
        return alone
    if not fate.found_by:
        return "missed"
    return f"{'fused' if fate.fused else 'not fused'}; {alone}"


def _markdown(table: StudyTable) -> list[str]:
    lines = [f"## {table.title} ({len(table.channels)} channels)", ""]
    lines.append("| row | " + " | ".join(title for _, title in TABLE_COLUMNS) + " |")
    lines.append("|---|" + "---:|" * len(TABLE_COLUMNS))
    for row, section in table.rows.items():
        lines.append(f"| {row} | " + " | ".join(table_cells(section["overall"])) + " |")
    lines += ["", "| channel | event | class | found by |", "|---|---|---|---|"]
    for fate in table.events + table.false_alarms:
        lines.append(
            f"| {fate.channel} | {fate.start}-{fate.end} | {fate.kind} | {fate_text(fate)} |"
        )
    return [*lines, ""]


def write_study(tables: Sequence[StudyTable], folder: Path) -> tuple[Path, Path]:
    """Write ``study.json`` (every table, row and event) and ``study.md``; return both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = folder / STUDY_FILE, folder / STUDY_MARKDOWN
    json_path.write_text(json.dumps([asdict(t) for t in tables], indent=2) + "\n")
    lines = ["# Detection-quality study", ""]
    for table in tables:
        lines += _markdown(table)
    markdown_path.write_text("\n".join(lines))
    return json_path, markdown_path
