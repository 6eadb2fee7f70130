"""The calibration file ``thresholds.json``: every channel's thresholds and training statistics.

``satwatch build`` writes it into the ``postprocessing`` model's version folder
(``python/postprocessing/<version>/``); the served model and offline evaluation read it. One
record per channel::

    {"E-1": {"ratio": [[threshold, baseline], ...],
             "scale": [[median + std, median], ...],
             "floors": [floor for 1 score, floor for 2 scores, ...],
             "weights": [fusion weight of each score, ...],
             "frozen_limit": run}}

``scale``, ``floors``, ``weights`` and ``frozen_limit`` (the ``dynamic`` policy's statistics)
may be absent (``weights`` absent: every score weighs 1; ``frozen_limit`` absent: no limit,
as for a channel whose training holds values), and an older file
may hold plain ``{channel: [[threshold, baseline], ...]}`` rows.

Example::

    save_thresholds(version_dir / THRESHOLDS_FILE, {"E-1": entry})
    table = load_thresholds(version_dir / THRESHOLDS_FILE)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from satwatch.exceptions import DataError
from satwatch.pipeline.calibration import ChannelThresholds, Threshold

LOGGER = logging.getLogger(__name__)

THRESHOLDS_FILE = "thresholds.json"
"""Per-channel thresholds and training statistics in ``python/postprocessing/<version>/``."""


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
            if thresholds.weights:
                record["weights"] = list(thresholds.weights)
            if math.isfinite(thresholds.frozen_limit):  # JSON has no infinity
                record["frozen_limit"] = thresholds.frozen_limit
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
            weights: tuple[float, ...] = ()
            limit = float("inf")
            if isinstance(record, dict) and "scale" in record:
                scales = tuple(Threshold(float(t), float(b)) for t, b in record["scale"])
                floors = tuple(float(f) for f in record["floors"])
                weights = tuple(float(w) for w in record.get("weights", ()))
                limit = float(record.get("frozen_limit", limit))
            table[channel] = ChannelThresholds(ratio, scales, floors, weights, limit)
        return table
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise DataError(f"{path}: expected per-channel thresholds JSON: {error}") from error
