"""Offline evaluation: trained artifacts -> scores -> decisions -> events -> metrics."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from satwatch.commands import evaluation as evaluation_cli
from satwatch.data import load_dataset
from satwatch.detectors import omnianomaly as om
from satwatch.detectors.artifacts import load_trained
from satwatch.detectors.training import plan_jobs, train_job
from satwatch.evaluation.metrics import channel_metrics, write_report
from satwatch.evaluation.offline import (
    evaluate_detector,
    evaluate_offline,
    normalised_test,
)
from satwatch.exceptions import ModelError

TINY = {"hidden": 16, "dense": 16, "flows": 4, "epochs": 1, "stride": 25, "batch_size": 32}
KEYS = {"point_f1", "pa_f1", "event_precision", "event_recall", "event_f1"}


@pytest.fixture(scope="module")
def artifacts(synth_data, tmp_path_factory, one_torch_thread) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    for job in plan_jobs("omni", ["D-3", "T-2"], "quick", 0, synth_data, root, overrides=TINY):
        assert train_job(job).error is None
    return root


def test_decisions_are_scores_above_the_card_threshold_and_metrics_follow(
    synth_data, artifacts
) -> None:
    report, results = evaluate_detector("omni", ["D-3"], synth_data, artifacts)
    chan = load_dataset(synth_data).channel("D-3")
    model, card = load_trained(artifacts / "omni" / "SMAP_D-3")
    expected_scores = om.score(model, normalised_test(card, chan))
    result = results["D-3"]
    np.testing.assert_array_equal(result.scores, expected_scores)
    np.testing.assert_array_equal(result.decisions, expected_scores > np.float32(card["threshold"]))
    by_hand = channel_metrics(result.decisions, chan.labels, chan.events).as_dict()
    assert report["channels"]["D-3"] == by_hand
    assert set(report["overall"]) >= KEYS


def test_report_has_the_metrics_json_shape_and_sums_counts_over_channels(
    synth_data, artifacts, tmp_path
) -> None:
    report = evaluate_offline(["omni"], ["D-3", "T-2"], synth_data, artifacts)
    omni = report["detectors"]["omni"]
    assert set(omni) == {"overall", "channels"} and set(omni["channels"]) == {"D-3", "T-2"}
    for key in ("event_tp", "event_fp", "event_fn"):
        assert omni["overall"][key] == sum(c[key] for c in omni["channels"].values())
    json_path, csv_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text()) == report
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["detector"], r["channel"]) for r in rows] == [
        ("omni", "D-3"),
        ("omni", "T-2"),
        ("omni", "overall"),
    ]
    assert float(rows[-1]["event_f1"]) == pytest.approx(omni["overall"]["event_f1"], abs=1e-6)


def test_missing_artifacts_name_the_model_folder(synth_data, tmp_path) -> None:
    with pytest.raises(ModelError, match="SMAP_E-1"):
        evaluate_detector("omni", ["E-1"], synth_data, tmp_path)


def test_evaluate_command_offline_end_to_end_and_served_mode_needs_a_server(
    synth_data, artifacts, tmp_path
) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    evaluation_cli.register(app)
    common = ["evaluate", "--detectors", "omni", "--channels", "D-3", "--data", str(synth_data)]
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, [*common, "--offline", "--artifacts", str(artifacts), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "offline evaluation" in result.output and (out / "metrics.csv").is_file()
    # Served mode streams through a server: none listens on this free port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"127.0.0.1:{sock.getsockname()[1]}"
    served = CliRunner().invoke(app, [*common, "--url", url])
    assert served.exit_code == 1 and "satwatch serve" in served.output
