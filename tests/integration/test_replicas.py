"""``satwatch serve --replicas``: stateless replicas behind nginx answer as one server does.

Two embedded servers of a small repository (two channels exported from the shared built
artifacts) behind Debian's nginx; ``satwatch detect`` through nginx must give exactly the
events of a single server, and a replay during which one replica is killed must lose none.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from typer.testing import CliRunner

from satwatch.cli import app
from satwatch.client.connection import Connection
from satwatch.client.sources import from_dataset
from satwatch.client.stream import prepare_target, stream_channels
from satwatch.data import load_dataset
from satwatch.repository.build import build_repository
from satwatch.server.balancer import NGINX_FALLBACK
from satwatch.server.embedded import ServerPorts

from .builders import Built, built_repository, webhook_server
from .conftest import ADMIN_KEY, SATWATCH, WIDE_OUTPUT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        shutil.which("nginx") is None and not NGINX_FALLBACK.is_file(),
        reason="nginx is not installed (.ci/run installs Debian's package)",
    ),
]

RUNNER = CliRunner()
CHANNELS = ["E-1", "A-1"]
CHUNK = 128  # many chunks per channel, so a replica dies in the middle of the replay


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data: Path) -> Built:
    return built_repository(tmp_path_factory, shared_data, webhook_server())


@pytest.fixture(scope="module")
def small(built: Built, shared_data: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("replicas") / "repository"
    report = build_repository(
        built.artifacts, root, shared_data, channels=CHANNELS, train_if_missing=False
    )
    assert report.problems == []
    return root


@pytest.fixture(scope="module")
def single(triton_factory, small: Path):
    served = triton_factory(small)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def replicas(small: Path, tmp_path_factory):
    """``satwatch serve --replicas 2`` in the foreground; yields (front ports, replica pids)."""
    workdir = tmp_path_factory.mktemp("front")
    front = ServerPorts.free()
    command = [
        *SATWATCH, "serve", "--replicas", "2", "--repository", str(small),
        "--http-port", str(front.http), "--grpc-port", str(front.grpc),
        "--metrics-port", str(front.metrics), "--admin-key", ADMIN_KEY,
        "--log-file", str(workdir / "triton.log"), "--timeout", "200",
    ]  # fmt: skip
    output = (workdir / "serve.out").open("w")
    process = subprocess.Popen(
        command, stdout=output, stderr=subprocess.STDOUT, env=WIDE_OUTPUT, start_new_session=True
    )
    text = ""
    deadline = time.monotonic() + 300
    while "serving;" not in text:
        text = (workdir / "serve.out").read_text()
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"satwatch serve --replicas did not start:\n{text}")
        time.sleep(0.5)
    pids = [int(p) for p in re.findall(r"^│ \d+\s+│ (\d+)\s+│", text, re.MULTILINE)]
    assert len(pids) == 2, text
    yield front, pids, workdir / "serve.out"
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(120)


def _detect(address: str, out: Path, artifacts: Path) -> list[dict]:
    args = ["detect", "--channels", ",".join(CHANNELS), "--url", address, "--output", str(out)]
    result = RUNNER.invoke(app, [*args, "--chunk", str(CHUNK), "--artifacts", str(artifacts)])
    assert result.exit_code == 0, result.output
    with (out / "events.csv").open() as handle:
        return [
            {k: v for k, v in row.items() if k != "stream_id"} for row in csv.DictReader(handle)
        ]


def test_both_replicas_answer_behind_one_address(replicas) -> None:
    front, _, _ = replicas
    client = httpclient.InferenceServerClient(f"127.0.0.1:{front.http}")
    assert client.is_server_ready()
    assert client.is_model_ready("custom_logic")


def test_detect_through_nginx_gives_the_events_of_a_single_server(
    replicas, single, built: Built, tmp_path: Path
) -> None:
    front, _, _ = replicas
    alone = _detect(single.grpc_address, tmp_path / "single", built.artifacts)
    behind = _detect(f"127.0.0.1:{front.grpc}", tmp_path / "replicas", built.artifacts)
    assert alone, "the single server found no event: the comparison would prove nothing"
    assert behind == alone


def test_killing_a_replica_during_a_replay_loses_no_event(
    replicas, single, shared_data: Path, built: Built, tmp_path: Path
) -> None:
    front, pids, serve_out = replicas
    dataset = load_dataset(shared_data)
    expected = _detect(single.grpc_address, tmp_path / "single", built.artifacts)
    answered = []

    def on_chunk(channel: str, steps: int, total: int | None) -> None:
        answered.append(channel)
        if len(answered) == 20:  # mid-replay: take the first replica down, hard
            os.killpg(pids[0], signal.SIGKILL)

    with Connection("grpc", f"127.0.0.1:{front.grpc}") as connection:
        target = prepare_target(connection, "custom_logic", CHANNELS)
        telemetry = [from_dataset(dataset, name, CHUNK) for name in CHANNELS]
        runs = stream_channels(connection, target, telemetry, on_chunk=on_chunk)
    assert len(answered) > 20
    assert all(run.error is None for run in runs.values()), {c: r.error for c, r in runs.items()}
    got = sorted((c, e.start, e.end) for c, run in runs.items() for e in run.events)
    want = sorted((r["channel"], int(r["start"]), int(r["end"])) for r in expected)
    assert got == want
    deadline = time.monotonic() + 10
    while "exited; 1 serving" not in serve_out.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "exited; 1 serving" in serve_out.read_text()
