"""Any spacecraft, any feature count: a 7-feature spacecraft of its own, end to end.

A synthetic set names its spacecraft ``SAT2`` and has rows of 7 columns (a value and six
commands). The build takes both from the data (models ``SAT2_<chan>``, ``nearest_SAT2_<chan>``,
TranAD ``tranad_sat2`` behind ``tranad_sat2_core``, every width 7), Triton serves it,
``satwatch detect`` streams it through ``custom_logic`` as ``steps`` does, the served
evaluation equals the offline one exactly, and a row of SMAP's width is refused naming both.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
from typer.testing import CliRunner

from satwatch.cli import app
from satwatch.client.connection import Connection
from satwatch.client.evaluate import evaluate_served
from satwatch.data import load_dataset
from satwatch.data.synth import synthesize
from satwatch.detectors import registry
from satwatch.evaluation.offline import evaluate_offline
from satwatch.evaluation.run import load_run
from satwatch.pipeline.catalog import read_catalog
from satwatch.repository.build import build_repository
from satwatch.repository.config import load_config
from satwatch.repository.stages import ServedStages

from .builders import TINY

pytestmark = pytest.mark.integration

SPACECRAFT = "SAT2"
FEATURES = 7
RUNNER = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory):  # noqa: ANN001, ANN201
    """Three short 7-feature channels of SAT2, built with tiny detectors."""
    root = tmp_path_factory.mktemp("sat2")
    summary = synthesize(
        root / "data",
        seed=3,
        channels=3,
        train_length=400,
        test_length=1000,
        features=FEATURES,
        spacecraft=SPACECRAFT,
    )
    report = build_repository(
        root / "artifacts",
        root / "repository",
        root / "data",
        channels="all",
        spacecraft=SPACECRAFT.lower(),  # any case: names are the data's, upper case
        overrides=TINY,
    )
    return root, summary.channels, report


@pytest.fixture(scope="module")
def served(built, triton_factory):  # noqa: ANN001, ANN201
    root, _, _ = built
    served = triton_factory(root / "repository")
    yield served
    served.stop()


def _dims(repository: Path, folder: str, name: str) -> dict[str, list[int]]:
    config = load_config(repository / folder / name / "config.pbtxt")
    return {t.name: list(t.dims) for t in [*config.input, *config.output]}


def test_the_build_names_models_after_the_spacecraft_and_takes_the_width(built) -> None:
    root, channels, report = built
    repository = root / "repository"
    assert report.problems == []
    tranad = registry.detector("tranad").served_name(spacecraft=SPACECRAFT)
    assert tranad == "tranad_sat2"
    catalog = read_catalog(repository / "python" / "custom_logic" / "1" / "catalog.db")
    assert sorted(catalog) == sorted(channels)
    for channel in channels:
        assert catalog[channel].spacecraft == SPACECRAFT
        assert [m.model for m in catalog[channel].models] == [
            d.served_name(channel, SPACECRAFT) for d in registry.detectors()
        ]
    first = channels[0]
    assert _dims(repository, "onnx", f"{SPACECRAFT}_{first}")["input_data"] == [-1, FEATURES]
    assert _dims(repository, "python", tranad)["context"] == [9, FEATURES]
    assert _dims(repository, "pytorch", f"{tranad}_core")["input_data"] == [-1, FEATURES]
    for model in ("custom_logic", "preprocessing"):
        assert _dims(repository, "python", model)["raw_input"] == [-1, FEATURES]


def test_served_evaluation_equals_the_offline_one(built, served) -> None:
    root, channels, _ = built
    data = root / "data"
    with Connection("http", served.http_address) as connection:
        result = evaluate_served(connection, channels, data, chunk=256, spacecraft=SPACECRAFT)
    offline = evaluate_offline(
        list(registry.kinds()),
        channels,
        data,
        root / "artifacts",
        repository=served.repository,
        spacecraft=SPACECRAFT,
    )
    assert set(result.report["detectors"]) == {*registry.kinds(), "fused"}
    for detector in (*registry.kinds(), "fused"):
        assert result.report["detectors"][detector] == offline["detectors"][detector], detector


def test_detect_through_custom_logic_gives_the_events_steps_gives(built, served, tmp_path) -> None:
    root, channels, _ = built
    events, runs = {}, {}
    for model in ("custom_logic", "steps"):
        out = tmp_path / model
        args = ["detect", "--channels", "all", "--spacecraft", SPACECRAFT, "--model", model]
        args += ["--data", str(root / "data"), "--url", served.grpc_address]
        result = RUNNER.invoke(app, [*args, "--output", str(out)])
        assert result.exit_code == 0, result.output
        with (out / "events.csv").open() as handle:
            events[model] = [(r["channel"], r["start"], r["end"]) for r in csv.DictReader(handle)]
        runs[model] = load_run(out)
    assert events["custom_logic"] == events["steps"]
    assert events["custom_logic"], "the injected anomalies give no event"
    test_length = load_dataset(root / "data", SPACECRAFT).channel(channels[0]).test.shape[0]
    for channel in channels:
        ours, theirs = runs["custom_logic"].channel(channel), runs["steps"].channel(channel)
        assert ours.value.size == test_length
        for detector in (*registry.kinds(), "fused"):
            np.testing.assert_array_equal(ours.scores[detector], theirs.scores[detector])


def _infer(served, model: str, raw: np.ndarray, channel: str):  # noqa: ANN001, ANN202
    inputs = []
    for name, array in (("channel_id", np.array([channel.encode()], object)), ("raw_input", raw)):
        dtype = "BYTES" if array.dtype == object else "FP32"
        tensor = httpclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    # Closed after each call: an open HTTP connection holds the server's exit for 30 s.
    with httpclient.InferenceServerClient(served.http_address) as client:
        return client.infer(model, inputs)


@pytest.mark.parametrize("model", ["custom_logic", "preprocessing"])
def test_a_row_of_another_width_is_refused_naming_the_width(built, served, model) -> None:
    _, channels, _ = built
    raw = np.zeros((4, 25), np.float32)
    with pytest.raises(InferenceServerException, match=rf"(?s)raw_input.*{FEATURES}.*25"):
        _infer(served, model, raw, channels[0])
    answered = _infer(served, model, np.zeros((4, FEATURES), np.float32), channels[0])
    assert answered.get_response() is not None


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_postprocessing_makes_a_frozen_value_an_event_whatever_the_scores(
    built, served, protocol
) -> None:
    _, channels, _ = built
    stages = ServedStages.load(served.repository)
    channel = next(c for c in channels if math.isfinite(stages.thresholds[c].frozen_limit))
    limit = int(stages.thresholds[channel].frozen_limit)
    telemetry = np.sin(np.arange(400) / 7).astype(np.float32)
    telemetry[100:300] = telemetry[100]  # 199 repeats, past the limit from step 101 + limit
    # Every detector at its training median: a fused z of 0 at every step.
    scores = [np.full(400, s.baseline, np.float32) for s in stages.thresholds[channel].scales]
    inputs = {f"score{i + 1}": score for i, score in enumerate(scores)}
    inputs |= {"channel_id": np.array([channel.encode()], object)}
    inputs |= {"end_of_stream": np.array([True])}
    address = served.http_address if protocol == "http" else served.grpc_address
    with Connection(protocol, address) as connection:
        frozen = connection.infer("postprocessing", {**inputs, "telemetry": telemetry}, ["events"])
        without = connection.infer("postprocessing", inputs, ["events"])
    offline = stages.postprocess(channel, scores, None, True, telemetry)
    np.testing.assert_array_equal(frozen["events"].reshape(-1, 3), offline.events)
    [(start, end, _)] = offline.events
    margin = stages.settings.event_margin
    assert (start, end) == (101 + limit - margin, 299 + margin)
    assert without["events"].size == 0


def test_the_study_reports_another_spacecraft_as_served(built, tmp_path) -> None:
    root, channels, _ = built
    out = tmp_path / "study"
    args = ["study", "--data", str(root / "data"), "--spacecraft", SPACECRAFT]
    args += ["--validation", "none", "--report", "all", "--artifacts", str(root / "artifacts")]
    args += ["--repository", str(root / "repository"), "--output", str(out)]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    [table] = json.loads((out / "study.json").read_text())
    assert (table["title"], table["channels"]) == (f"{SPACECRAFT} reported", channels)
    offline = evaluate_offline(
        list(registry.kinds()),
        channels,
        root / "data",
        root / "artifacts",
        repository=root / "repository",
        spacecraft=SPACECRAFT,
    )
    assert table["rows"]["fused"] == offline["detectors"]["fused"]


def test_a_study_of_no_channels_is_refused(built, tmp_path) -> None:
    root, _, _ = built
    args = ["study", "--data", str(root / "data"), "--spacecraft", SPACECRAFT]
    result = RUNNER.invoke(app, [*args, "--validation", "none", "--report", "none"])
    assert result.exit_code == 1
    assert "nothing to study" in result.output
