"""``satwatch soak`` against the served seed repository: a short version of the soak.

Four clients (two through ``custom_logic``, two through ``multi_detector``) stream real test
telemetry for 30 s in buckets of 10 s. Only counts and the presence of figures are checked:
latency and memory depend on the machine, so no timed assertion.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from satwatch.cli import app
from satwatch.client.soak import SoakReport, find_server, make_buckets, run_soak
from satwatch.data import SEED_CHANNELS
from satwatch.detectors import registry

from .builders import Built, built_repository, served_repository, webhook_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RUNNER = CliRunner()
MODELS = ("custom_logic", "multi_detector")
DURATION = 30.0
BUCKET = 10.0
STUB_MODELS = {
    *(d.served_name(channel) for d in registry.detectors() for channel in SEED_CHANNELS),
    *(
        d.file_model(d.served_name(channel))  # the model behind a front
        for d in registry.detectors()
        for channel in SEED_CHANNELS
    ),
    "preprocessing",
    "postprocessing",
    "custom_logic",
}
"""Every model the embedded server runs in a Python backend stub (the ensembles have none)."""


@pytest.fixture(scope="session")
def built(tmp_path_factory, shared_data: Path) -> Built:
    return built_repository(tmp_path_factory, shared_data, webhook_server())


@pytest.fixture(scope="session")
def served(triton_factory, built: Built):
    return served_repository(triton_factory, built)


@pytest.fixture(scope="module")
def report(served, shared_data: Path) -> SoakReport:
    """A 30 s soak; the server is found by the port it listens on (no pid given)."""
    return run_soak(
        served.grpc_address,
        clients=4,
        duration=DURATION,
        models=MODELS,
        bucket=BUCKET,
        data=shared_data,
        admin_key=served.admin_key,
    )


def test_soak_answers_every_request_of_both_models(report: SoakReport) -> None:
    assert report.failures == 0, report.errors
    assert report.errors == [] and report.unfinished == 0 and not report.interrupted
    assert report.requests > 0
    assert set(report.requests_by_model) == set(MODELS)
    assert all(report.requests_by_model[m] > 0 for m in MODELS)
    assert report.steps > 0


def test_every_bucket_has_a_p99(report: SoakReport) -> None:
    assert [(b.start, b.end) for b in report.buckets] == [(0, 10), (10, 20), (20, 30)]
    for bucket in report.buckets:
        assert bucket.requests > 0 and bucket.failures == 0
        assert bucket.p99_ms is not None and bucket.p50_ms is not None
        assert bucket.p99_ms >= bucket.p50_ms > 0
    assert sum(b.requests for b in report.buckets) == report.requests


def test_memory_of_the_server_and_of_each_stub_at_start_and_end(report, served) -> None:
    assert report.server is not None
    assert report.server.pid_start == report.server.pid_end == served.pid
    assert report.server.rss_start > 0 and report.server.rss_end > 0
    assert {name.split(" #")[0] for name in report.stubs} == STUB_MODELS
    for stub in report.stubs.values():
        assert stub.rss_start > 0 and stub.rss_end > 0, stub


def test_a_server_not_on_this_machine_is_found_by_the_pid_file_else_not_at_all(served) -> None:
    # A documentation address (TEST-NET-1): not local, so no port lookup.
    assert find_server("192.0.2.1:8001", pid_file=served.pid_file).pid == served.pid
    assert find_server("192.0.2.1:8001", pid_file=served.pid_file.with_name("none")) is None
    assert find_server(served.grpc_address, pid=served.pid).pid == served.pid


def test_soak_command_writes_soak_json(served, shared_data: Path, tmp_path: Path) -> None:
    result = RUNNER.invoke(
        app,
        [
            "soak",
            "--grpc-url",
            served.grpc_address,
            "--clients",
            "2",
            "--duration",
            "3",
            "--bucket",
            "1",
            "--channels",
            "A-1",
            "--pid-file",
            str(served.pid_file),
            "--data",
            str(shared_data),
            "--output",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "memory (RSS, MiB)" in result.output and "tritonserver" in result.output
    written = json.loads((tmp_path / "soak.json").read_text())
    assert written["failures"] == 0 and written["requests"] > 0
    assert len(written["buckets"]) == 3
    assert written["server"]["pid_start"] == served.pid
    assert "custom_logic" in written["stubs"]


def test_buckets_cover_the_duration_and_an_empty_one_has_no_p99() -> None:
    buckets = make_buckets([], duration=25.0, bucket=10.0)
    assert [(b.start, b.end) for b in buckets] == [(0, 10), (10, 20), (20, 25)]
    assert all(b.requests == 0 and b.p99_ms is None for b in buckets)
