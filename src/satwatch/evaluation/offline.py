"""Offline evaluation: score the test split in-process with the trained artifacts.

The stages, each reusable on its own (the served pipeline must reproduce these numbers):
raw test telemetry -> :func:`normalised_test` (the card's statistics) -> :func:`test_scores`
(the detector's ``score``, as the exported graph computes it) -> ``scores > threshold``
(the card's threshold, baked into the served graph) -> events -> metrics.

Usage::

    report = evaluate_offline(["omni", "tranad"], ["E-1", "A-1"])
    report["detectors"]["omni"]["overall"]["event_f1"]
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from satwatch.data import Channel, load_dataset
from satwatch.detectors.artifacts import (
    artifact_dir,
    detector_module,
    load_trained,
    model_name,
)
from satwatch.detectors.normalization import Normalisation
from satwatch.evaluation.metrics import METRIC_KEYS, ChannelMetrics, channel_metrics, summarize
from satwatch.exceptions import ModelError
from satwatch.paths import artifacts_dir, data_dir

LOGGER = logging.getLogger(__name__)

DETECTORS = ("omni", "tranad")
CSV_KEYS = (
    "point_precision",
    "point_recall",
    "point_f1",
    "pa_f1",
    "event_precision",
    "event_recall",
    "event_f1",
    "event_tp",
    "event_fp",
    "event_fn",
)


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
    return detector_module(card["detector"]).score(model, normalised_test(card, channel))


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


def _models_for(detector: str, channels: list[str], root: Path, spacecraft: str):
    """Yield ``(channel, model, card)``; TranAD's one model is loaded once."""
    shared = None
    for name in channels:
        folder = artifact_dir(root, detector, model_name(detector, name, spacecraft))
        if detector == "tranad":
            if shared is None:
                shared = load_trained(folder)
            yield name, *shared
        else:
            yield name, *load_trained(folder)


def evaluate_detector(
    detector: str,
    channels: list[str],
    data: Path | None = None,
    artifacts: Path | None = None,
    spacecraft: str = "SMAP",
    on_channel: Callable[[str, str], None] | None = None,
    scorer: Callable[[torch.nn.Module, np.ndarray], np.ndarray] | None = None,
) -> tuple[dict, dict[str, ChannelResult]]:
    """Evaluate one detector over channels; return (metrics.json section, per-channel results)."""
    if detector not in DETECTORS:
        raise ModelError(f"unknown detector {detector!r}; expected one of {DETECTORS}")
    dataset = load_dataset(data_dir(data), spacecraft=spacecraft)
    root = artifacts_dir(artifacts)
    results: dict[str, ChannelResult] = {}
    for name, model, card in _models_for(detector, channels, root, spacecraft):
        results[name] = evaluate_channel(model, card, dataset.channel(name), scorer)
        if on_channel is not None:
            on_channel(detector, name)
    return summarize({n: r.metrics for n, r in results.items()}), results


def evaluate_offline(
    detectors: list[str],
    channels: list[str],
    data: Path | None = None,
    artifacts: Path | None = None,
    on_channel: Callable[[str, str], None] | None = None,
) -> dict:
    """Evaluate several detectors: ``{"detectors": {"omni": {"overall", "channels"}, ...}}``."""
    report = {}
    for detector in detectors:
        report[detector], _ = evaluate_detector(
            detector, channels, data, artifacts, on_channel=on_channel
        )
    return {"detectors": report}


def write_report(report: dict, output: Path) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.csv`` (one row per detector x channel, plus overall)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    json_path = output / "metrics.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    csv_path = output / "metrics.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["detector", "channel", *CSV_KEYS])
        for detector, section in report["detectors"].items():
            rows = [*section["channels"].items(), ("overall", section["overall"])]
            for channel, values in rows:
                writer.writerow([detector, channel, *(_fmt(values[k]) for k in CSV_KEYS)])
    return json_path, csv_path


def _fmt(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6f}"


__all__ = [
    "METRIC_KEYS",
    "ChannelResult",
    "decide",
    "evaluate_channel",
    "evaluate_detector",
    "evaluate_offline",
    "normalised_test",
    "test_scores",
    "write_report",
]
