"""``satwatch detect`` and the served evaluation against the real embedded Triton.

Reuses the built seed repository (27 channels, tiny detectors) of :mod:`builders`, served
once per session.
Chunked streams are compared with one request over the same series: with chunk sizes that
are multiples of 16 the scores are bit-identical (the runtimes' matrix kernels cut every
chunk into the same row blocks as the whole series), so the comparisons are exact.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from typer.testing import CliRunner

from satwatch.cli import app
from satwatch.client.connection import Connection
from satwatch.client.evaluate import evaluate_served
from satwatch.client.sources import Telemetry, split
from satwatch.client.stream import REPLAY_CHUNK, prepare_target, stream_channels
from satwatch.data import SEED_CHANNELS, load_dataset
from satwatch.detectors import registry
from satwatch.evaluation.events import decisions_to_events, events_to_decisions
from satwatch.evaluation.metrics import channel_metrics
from satwatch.evaluation.offline import evaluate_offline
from satwatch.evaluation.run import EVENT_COLUMNS, load_run
from satwatch.pipeline.eventlog import EventLog

from .builders import Built, built_repository, served_repository, webhook_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RUNNER = CliRunner()
CHUNK = 320  # a multiple of 16 with a boundary inside the injected fault (steps 300..359)
REACTION = 10  # steps the fused decision may lag the injected fault's ends (smoothing)


@pytest.fixture(scope="session")
def built(tmp_path_factory, shared_data: Path) -> Built:
    return built_repository(tmp_path_factory, shared_data, webhook_server())


@pytest.fixture(scope="session")
def served(triton_factory, built: Built):
    return served_repository(triton_factory, built)


@pytest.fixture(scope="session")
def fault(shared_data: Path) -> np.ndarray:
    """E-1 test steps 4800..6399 with a gross fault at 300..359 every detector flags."""
    raw = load_dataset(shared_data).channel("E-1").test[4800:6400].astype(np.float32).copy()
    raw[300:360, 0] = 3.0
    return raw


@pytest.fixture(scope="session")
def grpc(served) -> Iterator[Connection]:
    with Connection("grpc", served.grpc_address, admin_key=served.admin_key) as connection:
        yield connection


def _stream(connection: Connection, model: str, raw: np.ndarray, chunk: int):
    target = prepare_target(connection, model, ["E-1"])
    run = stream_channels(connection, target, [Telemetry("E-1", split(raw, chunk), len(raw))])
    assert run["E-1"].error is None, run["E-1"].error
    return run["E-1"]


@pytest.mark.parametrize("model", ["steps", "custom_logic", "SMAP_E-1", "tranad_sat1"])
def test_chunked_stream_equals_one_request_over_the_whole_series(grpc, fault, model) -> None:
    chunked = _stream(grpc, model, fault, CHUNK)
    whole = _stream(grpc, model, fault, len(fault))
    assert chunked.requests == 5 and whole.requests == 1
    assert set(chunked.arrays) == set(whole.arrays)
    for name, array in whole.arrays.items():
        # Bit-identical, not merely close: the state carried is the whole series' state.
        np.testing.assert_array_equal(chunked.arrays[name], array, err_msg=name)
    assert chunked.events == whole.events
    if model in ("SMAP_E-1", "tranad_sat1"):
        # One detector: its events are the runs of its decisions over the whole series.
        (decisions,) = (a for n, a in chunked.arrays.items() if n.endswith("_decision"))
        assert [(e.start, e.end) for e in chunked.events] == decisions_to_events(decisions)


@pytest.mark.parametrize("model", ["custom_logic", "multi_detector", "steps"])
def test_an_event_across_a_chunk_boundary_comes_out_once(grpc, built, fault, model) -> None:
    run = _stream(grpc, model, fault, CHUNK)
    spanning = [e for e in run.events if e.start <= CHUNK - 1 and e.end >= CHUNK]
    assert len(spanning) == 1, run.events
    # The fused decision (dynamic policy: EWMA-smoothed training z-scores) reacts to the step
    # fault a few steps late and may let go a step early: within REACTION steps of its ends.
    assert spanning[0].start <= 300 + REACTION and spanning[0].end >= 359 - REACTION
    assert len({e.start for e in run.events}) == len(run.events)
    if model in ("steps", "custom_logic"):
        # custom_logic returns each detector's own answer too: both flag the gross fault.
        assert {"omni", "tranad"} <= set(spanning[0].detectors)
    if model == "custom_logic":
        # The server's event log holds the same events, each one row.
        log = EventLog(built.repository / "python" / "custom_logic" / "events.db")
        logged = [(e.start, e.end) for e in log.events("E-1") if e.stream_id == run.stream_id]
        assert logged == [(e.start, e.end) for e in run.events]


@pytest.mark.parametrize("model", ["custom_logic", "steps", "multi_detector"])
def test_a_fault_in_the_last_incomplete_batch_is_reported(grpc, built, shared_data, model) -> None:
    # 1,609 steps: the last batch of 10 (steps 1600..1608) never completes; the fault runs
    # into it. It starts 20 steps earlier because the fused score is smoothed: two detectors
    # alone (multi_detector) need more than the 8 faulty steps the last batch holds to cross
    # the threshold. Were the last batch dropped, the event would end at 1599 or not at all.
    # E-1's first test steps hold no labelled anomaly (its events begin at 5000) that would
    # raise the dynamic threshold before the fault.
    raw = load_dataset(shared_data).channel("E-1").test[:1609].astype(np.float32).copy()
    raw[1581:, 0] = 3.0
    run = _stream(grpc, model, raw, CHUNK)  # 5 chunks of 320, then one of 9 steps
    assert run.requests == 6
    # Events are widened by the served margin on both sides, so the fault's may start earlier.
    last = [e for e in run.events if e.end >= 1581]
    assert len(last) == 1 and last[0].end == 1608, run.events
    if model == "custom_logic":
        log = EventLog(built.repository / "python" / "custom_logic" / "events.db")
        logged = [(e.start, e.end) for e in log.events("E-1") if e.stream_id == run.stream_id]
        assert logged == [(e.start, e.end) for e in run.events]


def test_served_evaluation_equals_the_offline_one_for_each_detector(served, built) -> None:
    with Connection("http", served.http_address) as connection:
        result = evaluate_served(connection, ["E-1", "A-1"], chunk=256)
    offline = evaluate_offline(
        list(registry.kinds()),
        ["E-1", "A-1"],
        artifacts=built.artifacts,
        repository=built.repository,
    )
    # Exactly equal, not approximately: scored in process with the files the server serves,
    # and fused by the same postprocessing stage over the whole series.
    for detector in (*registry.kinds(), "fused"):
        assert result.report["detectors"][detector] == offline["detectors"][detector], detector
    fused = result.report["detectors"]["fused"]
    assert set(fused["channels"]) == {"E-1", "A-1"}
    assert fused["overall"]["steps"] == result.steps == 8516 + 8640
    # The fused detector is judged on its reported events (confirmed decisions, merged).
    for name, run in result.runs.items():
        spans = events_to_decisions(run.events, run.steps)
        judged = channel_metrics(spans, run.labels, run.label_events).as_dict()
        assert fused["channels"][name] == judged, name


def test_evaluate_command_streams_through_the_server(served, built, tmp_path) -> None:
    out = tmp_path / "served"
    args = ["evaluate", "--channels", "E-1", "--url", served.grpc_address, "--output", str(out)]
    result = RUNNER.invoke(app, [*args, "--artifacts", str(built.artifacts)])
    assert result.exit_code == 0, result.output
    assert "served evaluation" in result.output
    run = load_run(out)
    assert run.detectors == [*registry.kinds(), "fused"]
    channel = run.channel("E-1")
    assert set(channel.scores) == {*registry.kinds(), "fused"}
    card = json.loads((built.artifacts / "omni" / "SMAP_E-1" / "card.json").read_text())
    assert channel.thresholds["omni"] == np.float32(card["threshold"])


def _requests_answered(served, model: str) -> int:
    with httpclient.InferenceServerClient(served.http_address) as http:
        return http.get_inference_statistics(model)["model_stats"][0]["inference_count"]


def test_detect_output_writes_the_run_folder(served, built, tmp_path, shared_data) -> None:
    out = tmp_path / "run"
    args = ["detect", "--channels", "E-1,A-1", "--url", served.grpc_address, "--output", str(out)]
    before = _requests_answered(served, "custom_logic")
    result = RUNNER.invoke(app, [*args, "--artifacts", str(built.artifacts)])
    assert result.exit_code == 0, result.output
    # A replay of the test split goes REPLAY_CHUNK steps a request unless --chunk says otherwise.
    dataset = load_dataset(shared_data)
    sizes = [dataset.channel(name).test.shape[0] for name in ("E-1", "A-1")]
    expected = sum(-(-size // REPLAY_CHUNK) for size in sizes)
    assert _requests_answered(served, "custom_logic") - before == expected
    with (out / "events.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == EVENT_COLUMNS if rows else True
    assert (out / "events.csv").read_text().splitlines()[0] == ",".join(EVENT_COLUMNS)
    run = load_run(out)
    assert run.channels == ["A-1", "E-1"]
    for row in rows:
        assert f"anomaly {row['channel']}" in result.output
        assert f"steps {row['start']}-{row['end']}" in result.output
    assert run.channel("E-1").value.size == 8516
    assert run.channel("E-1").labels is not None


def test_detect_via_custom_logic_names_the_detectors_that_agreed_as_steps_does(
    served, built, fault, tmp_path
) -> None:
    rows = tmp_path / "fault.npy"
    np.save(rows, fault)
    runs, events = {}, {}
    for model in ("custom_logic", "steps"):
        out = tmp_path / model
        args = ["detect", "--channel", "E-1", "--input", str(rows), "--chunk", str(CHUNK)]
        args += ["--model", model, "--url", served.grpc_address, "--output", str(out)]
        result = RUNNER.invoke(app, [*args, "--artifacts", str(built.artifacts)])
        assert result.exit_code == 0, result.output
        with (out / "events.csv").open() as handle:
            events[model] = [(r["start"], r["end"], r["detectors"]) for r in csv.DictReader(handle)]
        runs[model] = load_run(out).channel("E-1")
    assert events["custom_logic"] == events["steps"]
    named = [d for _, _, d in events["custom_logic"] if d != "fused"]
    assert named and all(set(d.split("+")) <= set(registry.kinds()) for d in named), events
    fault_event = [e for e in events["custom_logic"] if int(e[0]) <= 359 and int(e[1]) >= 300]
    # A gross fault: every detector flags it.
    assert [d for _, _, d in fault_event] == ["+".join(registry.kinds())]
    # The run folder holds each detector's arrays, as the step-by-step pipeline's.
    assert set(runs["custom_logic"].scores) == {*registry.kinds(), "fused"}
    for detector in (*registry.kinds(), "fused"):
        np.testing.assert_array_equal(
            runs["custom_logic"].scores[detector], runs["steps"].scores[detector]
        )
        np.testing.assert_array_equal(
            runs["custom_logic"].decisions[detector], runs["steps"].decisions[detector]
        )


def test_detect_streams_rows_from_standard_input(served, fault) -> None:
    rows = "\n".join(",".join(f"{v:.9g}" for v in row) for row in fault[:200])
    args = ["detect", "--channel", "E-1", "--input", "-", "--chunk", "64", "-m", "SMAP_E-1"]
    result = RUNNER.invoke(app, [*args, "--url", served.grpc_address], input=rows + "\n")
    assert result.exit_code == 0, result.output
    assert "200 steps in" in result.output


def _error_line(args: list[str]) -> str:
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error = result.output[result.output.index("error:") :]
    return " ".join(error.split())


def test_detect_without_a_server_says_how_to_start_it(free_port: int) -> None:
    for protocol in ("grpc", "http"):
        url = f"127.0.0.1:{free_port}"
        line = _error_line(["detect", "--channel", "E-1", "--url", url, "--protocol", protocol])
        assert line == (
            f"error: no Triton server answers at {url} ({protocol}): start it with `satwatch "
            "serve` (or pass --url/--protocol of the running one)"
        )


def test_detect_on_an_unknown_channel_names_it_and_the_seed_channels(served, tmp_path) -> None:
    rows = tmp_path / "rows.npy"
    np.save(rows, np.zeros((64, 25), np.float32))
    args = ["detect", "--channel", "Q-9", "--input", str(rows), "--url", served.grpc_address]
    line = _error_line(args)
    served_channels = ", ".join(sorted(SEED_CHANNELS))
    assert line.startswith(f"error: unknown channel 'Q-9': the server serves {served_channels};")
    assert line.endswith(", ".join(SEED_CHANNELS))
    line = _error_line(["detect", "--channel", "Q-9", "--url", served.grpc_address])
    assert "unknown SMAP channel 'Q-9'" in line


def test_detect_names_a_model_that_is_not_ready(served) -> None:
    admin = served.admin_headers
    http = httpclient.InferenceServerClient(served.http_address)
    http.unload_model("SMAP_A-1", headers=admin)
    try:
        _wait_for_state(http, admin, "SMAP_A-1", "UNAVAILABLE")
        for model in ("SMAP_A-1", "custom_logic"):
            args = ["detect", "--channel", "A-1", "--model", model, "--url", served.grpc_address]
            line = _error_line([*args, "--admin-key", served.admin_key])
            assert line.startswith("error: model 'SMAP_A-1' is UNAVAILABLE"), line
            assert "load it again or restart `satwatch serve`" in line
        line = _error_line(
            ["detect", "--channel", "A-1", "--url", served.grpc_address, "-m", "SMAP_A-1"]
        )
        assert "model 'SMAP_A-1' is not READY" in line and "--admin-key" in line
    finally:
        http.load_model("SMAP_A-1", headers=admin)
        http.close()
    assert Connection("grpc", served.grpc_address).client.is_model_ready("SMAP_A-1")


def _wait_for_state(http, headers: dict, model: str, state: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = [r for r in http.get_model_repository_index(headers=headers) if r["name"] == model]
        if rows and rows[0].get("state") == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"{model} did not become {state}: {rows}")


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
