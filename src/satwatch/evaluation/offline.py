"""Offline evaluation: score the test split in-process with the trained artifacts.

The stages, each reusable on its own (the served pipeline must reproduce these numbers):
raw test telemetry -> :func:`normalised_test` (the card's statistics) -> :func:`test_scores`
(the detector's ``score``, as the exported graph computes it) -> ``scores > threshold``
(the card's threshold, baked into the served graph) -> events -> metrics.

With ``repository`` given, the scores come from the exported files the server serves (each
detector's ``served_scorer``: ``onnx/SMAP_<chan>/<latest>/model.onnx`` through ONNX Runtime,
``pytorch/tranad_sat1_core/<latest>/model.pt`` through TorchScript, one thread each, as served)
instead of PyTorch eager: ONNX Runtime and eager differ by ~1e-5 relative, which can flip a
decision at the threshold, so this reproduces the served evaluation's numbers exactly
(scores bit-identical on the 27 seed channels).

Usage::

    report = evaluate_offline(["omni", "tranad"], ["E-1", "A-1"])
    report["detectors"]["omni"]["overall"]["event_f1"]
    exact = evaluate_offline(["omni"], ["E-1"], repository=Path("triton-repository"))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from satwatch.data import Channel, load_dataset
from satwatch.data.dataset import normalise_spacecraft
from satwatch.detectors import registry
from satwatch.detectors.artifacts import artifact_dir, load_trained
from satwatch.detectors.normalization import Normalisation
from satwatch.evaluation.events import events_to_decisions
from satwatch.evaluation.metrics import METRIC_KEYS, ChannelMetrics, channel_metrics, summarize
from satwatch.exceptions import ModelError
from satwatch.paths import artifacts_dir, data_dir
from satwatch.pipeline.calibration import ChannelThresholds, select_thresholds
from satwatch.pipeline.postprocess import PostSettings, postprocess
from satwatch.repository.stages import latest_version, served_postprocessing

LOGGER = logging.getLogger(__name__)

FUSED = "fused"


@dataclass
class ChannelResult:
    """One detector on one channel: scores, threshold, decisions and the metric counts."""

    channel: str
    scores: np.ndarray
    threshold: float
    decisions: np.ndarray
    metrics: ChannelMetrics


def normalised_test(card: dict, channel: Channel) -> np.ndarray:
    """The channel's test series normalised with the card's training statistics."""
    stats = card["normalisation"].get(channel.name)
    if stats is None:
        raise ModelError(
            f"model {card['name']}: expected normalisation for channel {channel.name}, "
            f"got only {sorted(card['normalisation'])}"
        )
    return Normalisation.from_dict(stats).apply(channel.test)


def test_scores(model: torch.nn.Module, card: dict, channel: Channel) -> np.ndarray:
    """Per-step anomaly scores of a channel's whole test series."""
    score = registry.detector(card["detector"]).module().score
    return score(model, normalised_test(card, channel))


def decide(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Per-step decisions exactly as the served graph makes them (float32 ``>``)."""
    return np.asarray(scores, dtype=np.float32) > np.float32(threshold)


def evaluate_channel(
    model: torch.nn.Module,
    card: dict,
    channel: Channel,
    scorer: Callable[[torch.nn.Module, np.ndarray], np.ndarray] | None = None,
) -> ChannelResult:
    """Score, threshold and measure one channel.

    Args:
        model: trained detector.
        card: its card (normalisation, threshold).
        channel: the channel with its test split and labels.
        scorer: overrides the detector's ``score`` (e.g. the windowed OmniAnomaly scoring).
    """
    if scorer is None:
        scores = test_scores(model, card, channel)
    else:
        scores = scorer(model, normalised_test(card, channel))
    threshold = float(card["threshold"])
    decisions = decide(scores, threshold)
    metrics = channel_metrics(decisions, channel.labels, channel.events)
    return ChannelResult(channel.name, scores, threshold, decisions, metrics)


Scorer = Callable[[torch.nn.Module, np.ndarray], np.ndarray]


def exported_scorer(
    repository: Path, detector: str, channel: str, spacecraft: str = "SMAP"
) -> Scorer:
    """A scorer running the repository's exported model file in this process, as served.

    The trained module passed to the scorer is ignored; the card still gives normalisation
    and threshold (the same values the export baked in).
    """
    declared = registry.detector(detector)
    served = declared.served_name(channel, spacecraft)
    model_dir = Path(repository) / declared.backend / declared.file_model(served)
    path = latest_version(model_dir) / declared.model_file
    if not path.is_file():
        raise ModelError(f"exported {declared.title} not found: {path}")
    score = declared.scorer_of_file()(path)
    return lambda _model, series: score(series)


def _models_for(detector: str, channels: list[str], root: Path, spacecraft: str):
    """Yield ``(channel, model, card)``; a model shared by the channels is loaded once."""
    declared = registry.detector(detector)
    shared = None
    for name in channels:
        folder = artifact_dir(root, detector, declared.served_name(name, spacecraft))
        if declared.per_channel:
            yield name, *load_trained(folder)
            continue
        if shared is None:
            shared = load_trained(folder)
        yield name, *shared


def evaluate_detector(
    detector: str,
    channels: list[str],
    data: Path | None = None,
    artifacts: Path | None = None,
    spacecraft: str = "SMAP",
    on_channel: Callable[[str, str], None] | None = None,
    scorer: Scorer | None = None,
    repository: Path | None = None,
) -> tuple[dict, dict[str, ChannelResult]]:
    """Evaluate one detector over channels; return (metrics.json section, per-channel results).

    ``repository``: score with its exported model files (see the module doc), not eager.
    """
    declared = registry.detector(detector)  # an unknown kind is a clear error
    dataset = load_dataset(data_dir(data), spacecraft=spacecraft)
    root = artifacts_dir(artifacts)
    results: dict[str, ChannelResult] = {}
    exported: Scorer | None = None
    for name, model, card in _models_for(detector, channels, root, spacecraft):
        chosen = scorer
        if chosen is None and repository is not None:
            # A shared model's one file serves every channel: load it once.
            if exported is None or declared.per_channel:
                exported = exported_scorer(repository, detector, name, spacecraft)
            chosen = exported
        results[name] = evaluate_channel(model, card, dataset.channel(name), chosen)
        if on_channel is not None:
            on_channel(detector, name)
    return summarize({n: r.metrics for n, r in results.items()}), results


def fused_decisions(
    scores: list[np.ndarray],
    channel: str,
    settings: PostSettings,
    table: dict[str, ChannelThresholds],
    values: np.ndarray | None = None,
) -> np.ndarray:
    """The steps inside the events the served postprocessing reports over a whole series.

    The same stage the ``postprocessing`` model runs, in one call with ``end_of_stream``
    (a stream of chunks carrying its state gives the same events), judged as the served
    evaluation judges it: every step of a reported event counts as flagged. ``values``, the
    series' telemetry value, turns on the stuck-value rule as ``custom_logic`` serves it.
    """
    dynamic = settings.threshold_policy == "dynamic"
    thresholds = select_thresholds(table, len(scores), channel, None, dynamic)
    result = postprocess(scores, thresholds, settings, None, end_of_stream=True, values=values)
    spans = [(int(start), int(end)) for start, end, _ in result.events]
    return events_to_decisions(spans, len(scores[0]))


def evaluate_fused(
    results: dict[str, dict[str, ChannelResult]],
    repository: Path,
    data: Path | None = None,
    spacecraft: str = "SMAP",
) -> dict:
    """The ``fused`` section of ``metrics.json`` from every registered detector's results."""
    settings, table = served_postprocessing(repository)
    dataset = load_dataset(data_dir(data), spacecraft=spacecraft)
    per_channel = {}
    kinds = registry.kinds()
    for name in results[kinds[0]]:
        scores = [results[detector][name].scores for detector in kinds]
        channel = dataset.channel(name)
        decisions = fused_decisions(scores, name, settings, table, channel.test[:, 0])
        per_channel[name] = channel_metrics(decisions, channel.labels, channel.events)
    return summarize(per_channel)


def evaluate_offline(
    detectors: list[str],
    channels: list[str],
    data: Path | None = None,
    artifacts: Path | None = None,
    on_channel: Callable[[str, str], None] | None = None,
    repository: Path | None = None,
    spacecraft: str = "SMAP",
) -> dict:
    """Evaluate several detectors: ``{"spacecraft", "detectors": {"omni": {"overall",
    "channels"}, ...}}``.

    ``repository``: score with its exported model files, as the server does; with every
    registered detector, the report then also has ``fused``, the served postprocessing's events over
    those scores (:func:`fused_decisions`), so it has the served evaluation's shape.
    ``spacecraft``: whose channels and models (``SMAP_<chan>``, ``MSL_<chan>``...).
    """
    report, results = {}, {}
    for detector in detectors:
        report[detector], results[detector] = evaluate_detector(
            detector,
            channels,
            data,
            artifacts,
            spacecraft,
            on_channel=on_channel,
            repository=repository,
        )
    if repository is not None and set(registry.kinds()) <= set(results):
        report[FUSED] = evaluate_fused(results, repository, data, spacecraft)
    return {"spacecraft": normalise_spacecraft(spacecraft), "detectors": report}


__all__ = [
    "METRIC_KEYS",
    "ChannelResult",
    "decide",
    "evaluate_channel",
    "evaluate_detector",
    "evaluate_fused",
    "evaluate_offline",
    "exported_scorer",
    "fused_decisions",
    "normalised_test",
    "test_scores",
]
