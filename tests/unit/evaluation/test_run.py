"""Run folders: channel arrays, events and metrics written and read back."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from satwatch.evaluation.metrics import channel_metrics, summarize
from satwatch.evaluation.run import (
    EVENT_COLUMNS,
    RunEvent,
    channel_file,
    load_run,
    read_events,
    save_channel_results,
    save_channel_run,
    write_events,
)
from satwatch.exceptions import DataError

EVENTS = [
    RunEvent("E-1", "EPS", 10, 14, 3.5, ("omni", "tranad")),
    RunEvent("A-1", "ACS", 3, 3, 1.25, ("tranad",)),
]


def _arrays(length: int = 20) -> dict[str, np.ndarray]:
    score = np.linspace(0.0, 2.0, length, dtype=np.float32)
    return {"value": np.sin(np.arange(length)), "omni_score": score, "omni_threshold": 1.0}


def test_channel_arrays_round_trip_and_missing_decisions_are_score_above_threshold(
    tmp_path,
) -> None:
    labels = np.zeros(20, dtype=bool)
    labels[15:18] = True
    fused = np.ones(20, dtype=bool)
    save_channel_run(
        tmp_path, "E-1", labels=labels, fused_score=np.full(20, 2.0), fused_threshold=1.0,
        fused_decision=fused, **_arrays(),
    )  # fmt: skip
    chan = load_run(tmp_path).channel("E-1")
    assert chan.value.dtype == np.float32 and chan.value.shape == (20,)
    np.testing.assert_array_equal(chan.labels, labels)
    assert chan.detectors == ["omni", "fused"]
    assert chan.thresholds == {"omni": 1.0, "fused": 1.0}
    np.testing.assert_array_equal(chan.decisions["omni"], chan.scores["omni"] > 1.0)
    assert chan.decisions["omni"].sum() == 10  # linspace(0, 2, 20): the last 10 exceed 1
    np.testing.assert_array_equal(chan.decisions["fused"], fused)


def test_results_with_scores_threshold_decisions_are_saved_per_detector(tmp_path) -> None:
    result = SimpleNamespace(
        scores=np.array([0.1, 3.0, 0.2]), threshold=1.0, decisions=np.array([0, 1, 1])
    )
    save_channel_results(tmp_path, "T-1", np.zeros(3), None, {"tranad": result})
    chan = load_run(tmp_path).channel("T-1")
    assert chan.labels is None and chan.thresholds == {"tranad": 1.0}
    # The given decisions are kept as they are, not recomputed from the scores.
    np.testing.assert_array_equal(chan.decisions["tranad"], [False, True, True])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"omni_score": np.zeros(5)}, "omni_score must be 1-D with 20 steps"),
        ({"labels": np.zeros(19, dtype=bool)}, "labels must be 1-D with 20 steps"),
        ({"omni_threshold": np.ones(2)}, "omni_threshold must be a scalar"),
        ({"omni_scores": np.zeros(20)}, "'omni_scores' is not <detector>_score"),
        ({"tranad_score": np.zeros(20)}, "needs tranad_score and tranad_threshold"),
    ],
)
def test_save_rejects_bad_arrays_naming_them(tmp_path, extra, message) -> None:
    arrays = {**_arrays(), **extra}
    with pytest.raises(DataError, match=message):
        save_channel_run(tmp_path, "E-1", **arrays)
    assert not channel_file(tmp_path, "E-1").exists()


def test_events_written_as_csv_and_json_read_back_from_either(tmp_path) -> None:
    write_events(tmp_path, [*EVENTS, EVENTS[0].record() | {"channel": "P-1", "subsystem": "PS"}])
    with (tmp_path / "events.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == EVENT_COLUMNS
    # Sorted by channel, then start; agreeing detectors joined with '+'.
    assert rows[1] == ["A-1", "ACS", "3", "3", "1.25", "tranad"]
    assert rows[2] == ["E-1", "EPS", "10", "14", "3.5", "omni+tranad"]
    records = json.loads((tmp_path / "events.json").read_text())
    assert records[1] == {
        "channel": "E-1", "subsystem": "EPS", "start": 10, "end": 14, "peak_score": 3.5,
        "detectors": ["omni", "tranad"],
    }  # fmt: skip
    from_json = read_events(tmp_path)
    (tmp_path / "events.json").unlink()
    assert read_events(tmp_path) == from_json
    assert from_json[0] == EVENTS[1] and from_json[2].channel == "P-1"


def test_load_run_reads_metrics_events_and_channels_lazily(tmp_path) -> None:
    labels = np.zeros(20, dtype=bool)
    labels[12:16] = True
    save_channel_run(tmp_path, "E-1", labels=labels, **_arrays())
    save_channel_run(tmp_path, "A-1", labels=labels, **_arrays())
    metrics = {"E-1": channel_metrics(np.linspace(0, 2, 20) > 1, labels)}
    (tmp_path / "metrics.json").write_text(json.dumps({"detectors": {"omni": summarize(metrics)}}))
    write_events(tmp_path, EVENTS)
    # Damage one channel after writing: the run still opens, only that channel fails.
    channel_file(tmp_path, "A-1").write_bytes(b"not an npz")
    run = load_run(tmp_path)
    assert run.channels == ["A-1", "E-1"]
    assert run.detectors == ["omni"]
    assert run.events_of("E-1") == [EVENTS[0]]
    assert run.channel_metrics("omni", "E-1")["event_tp"] == 1
    assert run.channel("E-1").scores["omni"].shape == (20,)
    with pytest.raises(DataError, match="A-1.npz is not a readable npz"):
        run.channel("A-1")
    with pytest.raises(DataError, match="no scores for channel T-1; it has A-1, E-1"):
        run.channel("T-1")


def test_load_run_errors_name_the_folder_and_what_was_expected(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_run(tmp_path / "missing")
    with pytest.raises(DataError, match="holds no metrics.json"):
        load_run(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(DataError, match="metrics.json is not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"omni": {}}))
    with pytest.raises(DataError, match='expected {"detectors"'):
        load_run(tmp_path)
    (tmp_path / "metrics.json").unlink()
    (tmp_path / "events.json").write_text(json.dumps([{"channel": "E-1", "start": 1}]))
    with pytest.raises(DataError, match="event 1 is malformed"):
        load_run(tmp_path)


def test_a_run_with_only_events_opens(tmp_path: Path) -> None:
    write_events(tmp_path, EVENTS)
    run = load_run(tmp_path)
    assert run.channels == [] and run.metrics == {"detectors": {}} and len(run.events) == 2
