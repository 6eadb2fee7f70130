"""Write streamed channels as a run folder (the format ``satwatch report`` reads).

Per channel ``scores/<channel>.npz`` (value, labels when known, and per detector its score,
threshold and decision) and, for all channels, ``events.csv``/``events.json``
(:mod:`satwatch.evaluation.run`).

The served models do not report their thresholds. A detector's threshold is read from its
card in the artifacts when there is one (it is the value baked into the served graph);
otherwise it is recovered from the served decisions: the largest score not flagged, which
gives exactly the served decisions under ``score > threshold``.

Example::

    write_stream_runs(Path("runs/today"), runs, artifacts=artifacts_dir())
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from satwatch.client.stream import StreamRun
from satwatch.detectors import registry
from satwatch.evaluation.run import save_channel_run, write_events
from satwatch.exceptions import ModelError

LOGGER = logging.getLogger(__name__)

FUSED_THRESHOLD = 1.0
"""Under postprocessing's ``ratio`` policy ``final_result`` is a score / threshold ratio:
anomalous above 1. Under the ``dynamic`` policy the threshold moves with the stream, so no
single value stands for it."""


def card_threshold(
    artifacts: Path | None, detector: str, channel: str, spacecraft: str = "SMAP"
) -> float | None:
    """The threshold in a detector's card (None when there is no card)."""
    if artifacts is None:
        return None
    try:
        name = registry.detector(detector).served_name(channel, spacecraft)
    except ModelError:
        return None
    path = Path(artifacts) / detector / name / "card.json"
    try:
        return float(json.loads(path.read_text())["threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def threshold_from_decisions(scores: np.ndarray, decisions: np.ndarray) -> float:
    """A threshold that reproduces ``decisions`` as ``scores > threshold`` (float32)."""
    scores = np.asarray(scores, np.float32)
    decisions = np.asarray(decisions, bool)
    quiet = scores[~decisions]
    if quiet.size:
        return float(quiet.max())
    flagged = scores[decisions]
    return float(np.nextafter(flagged.min(), np.float32(-np.inf))) if flagged.size else 0.0


def fused_threshold(scores: np.ndarray, decisions: np.ndarray) -> float:
    """``FUSED_THRESHOLD`` when it reproduces the fused decisions, else NaN (a moving threshold:
    the report then draws none rather than a misleading line)."""
    fixed = np.asarray(scores, np.float32) > np.float32(FUSED_THRESHOLD)
    return FUSED_THRESHOLD if np.array_equal(fixed, np.asarray(decisions, bool)) else float("nan")


def detector_arrays(
    run: StreamRun, artifacts: Path | None = None, spacecraft: str = "SMAP"
) -> dict[str, np.ndarray | float]:
    """``<d>_score``, ``<d>_threshold``, ``<d>_decision`` for every detector of the run."""
    out: dict[str, np.ndarray | float] = {}
    for name, scores in run.arrays.items():
        if not name.endswith("_score"):
            continue
        detector = name.removesuffix("_score")
        decisions = run.arrays[f"{detector}_decision"]
        if detector == "fused":
            threshold = fused_threshold(scores, decisions)
        else:
            threshold = card_threshold(artifacts, detector, run.channel, spacecraft)
            if threshold is None:
                threshold = threshold_from_decisions(scores, decisions)
        out |= {name: scores, f"{detector}_threshold": threshold, f"{detector}_decision": decisions}
    return out


def write_stream_runs(
    output: Path,
    runs: Mapping[str, StreamRun],
    artifacts: Path | None = None,
    spacecraft: str = "SMAP",
) -> list[Path]:
    """Write every answered channel's arrays and all events; return the files written
    (the detectors' thresholds from the cards of ``spacecraft``'s models)."""
    output = Path(output)
    written = []
    for run in runs.values():
        if run.steps == 0:
            continue
        labels = None if run.labels is None else run.labels[: run.steps]
        written.append(
            save_channel_run(
                output,
                run.channel,
                value=run.value,
                labels=labels,
                **detector_arrays(run, artifacts, spacecraft),
            )
        )
    write_events(output, [e for run in runs.values() for e in run.events])
    written += [output / "events.csv", output / "events.json"]
    return written
