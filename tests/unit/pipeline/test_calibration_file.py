"""``thresholds.json``: round trips with and without training statistics, older rows, errors."""

from __future__ import annotations

import json

import pytest

from satwatch.exceptions import DataError
from satwatch.pipeline.calibration import ChannelThresholds, Threshold
from satwatch.pipeline.calibration_file import load_thresholds, save_thresholds


def test_ratio_thresholds_round_trip_without_statistics(tmp_path) -> None:
    table = {"E-1": [Threshold(2.0, 0.25), Threshold(-1.0, -4.0)]}
    loaded = load_thresholds(save_thresholds(tmp_path / "t.json", table))
    assert {c: list(t) for c, t in loaded.items()} == table
    assert loaded["E-1"].scales == ()  # no training statistics: ratio policy only


def test_channel_entries_round_trip_with_statistics(tmp_path) -> None:
    entry = ChannelThresholds(
        (Threshold(4.0, 2.0), Threshold(6.0, 1.5)),
        (Threshold(2.5, 2.0), Threshold(2.0, 1.5)),
        (0.75, 1.25),
    )
    assert load_thresholds(save_thresholds(tmp_path / "t.json", {"A-1": entry})) == {"A-1": entry}
    weighted = ChannelThresholds(entry.ratio, entry.scales, entry.floors, (1.0, 0.5))
    path = save_thresholds(tmp_path / "w.json", {"A-1": weighted, "A-2": entry})
    assert load_thresholds(path) == {"A-1": weighted, "A-2": entry}
    assert "weights" not in json.loads(path.read_text(encoding="utf-8"))["A-2"]  # all 1


def test_older_rows_and_broken_files(tmp_path) -> None:
    older = tmp_path / "older.json"
    older.write_text(json.dumps({"E-1": [[2.0, 0.5]]}), encoding="utf-8")
    assert load_thresholds(older) == {"E-1": ChannelThresholds((Threshold(2.0, 0.5),))}
    broken = tmp_path / "broken.json"
    broken.write_text('{"E-1": {"rows": []}}', encoding="utf-8")
    with pytest.raises(DataError, match="expected per-channel thresholds JSON"):
        load_thresholds(broken)
    with pytest.raises(DataError, match="expected per-channel thresholds JSON"):
        load_thresholds(tmp_path / "missing.json")
