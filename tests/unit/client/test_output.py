"""Run folders written from streamed channels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from satwatch.client.output import (
    card_threshold,
    fused_threshold,
    threshold_from_decisions,
    write_stream_runs,
)
from satwatch.client.stream import StreamRun
from satwatch.evaluation.run import RunEvent, load_run


def test_a_threshold_is_recovered_that_reproduces_the_served_decisions() -> None:
    scores = np.array([0.5, 2.0, 1.25, 3.0, 1.5], np.float32)
    decisions = scores > np.float32(1.4)
    threshold = threshold_from_decisions(scores, decisions)
    assert threshold == 1.25
    np.testing.assert_array_equal(scores > np.float32(threshold), decisions)
    everything = threshold_from_decisions(scores, np.ones(5, bool))
    assert (scores > np.float32(everything)).all()
    assert threshold_from_decisions(scores, np.zeros(5, bool)) == 3.0


def test_card_thresholds_are_read_from_the_artifacts(tmp_path: Path) -> None:
    card = tmp_path / "omni" / "SMAP_E-1" / "card.json"
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"threshold": 2.5}))
    assert card_threshold(tmp_path, "omni", "E-1") == 2.5
    assert card_threshold(tmp_path, "tranad", "E-1") is None
    assert card_threshold(None, "omni", "E-1") is None


def test_streamed_channels_become_a_run_folder_report_reads(tmp_path: Path) -> None:
    fused = np.array([0.2, 1.5, 1.7, 0.1], np.float32)
    run = StreamRun(
        "E-1",
        "EPS",
        steps=4,
        value=np.array([0.1, 0.9, 0.8, 0.0], np.float32),
        arrays={"fused_score": fused, "fused_decision": fused > 1},
        events=[RunEvent("E-1", "EPS", 1, 2, 1.7, ("fused",))],
        labels=np.array([False, True, True, False]),
    )
    write_stream_runs(tmp_path, {"E-1": run})
    loaded = load_run(tmp_path)
    channel = loaded.channel("E-1")
    assert channel.thresholds == {"fused": 1.0}
    np.testing.assert_array_equal(channel.decisions["fused"], [False, True, True, False])
    assert loaded.events == run.events
    header = (tmp_path / "events.csv").read_text().splitlines()[0]
    assert header == "channel,subsystem,start,end,peak_score,detectors"


def test_a_moving_fused_threshold_is_written_as_nan_and_decisions_kept(tmp_path: Path) -> None:
    # The dynamic policy flags 1.2 at one step but not 1.5 at another: no fixed line does that.
    fused = np.array([0.2, 1.2, 1.5, 0.1], np.float32)
    decisions = np.array([False, True, False, False])
    assert np.isnan(fused_threshold(fused, decisions))
    assert fused_threshold(fused, fused > 1) == 1.0
    run = StreamRun(
        "E-1",
        "EPS",
        steps=4,
        value=np.zeros(4, np.float32),
        arrays={"fused_score": fused, "fused_decision": decisions},
    )
    write_stream_runs(tmp_path, {"E-1": run})
    channel = load_run(tmp_path).channel("E-1")
    assert np.isnan(channel.thresholds["fused"])
    np.testing.assert_array_equal(channel.decisions["fused"], decisions)
