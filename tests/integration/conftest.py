"""Integration fixtures: the real embedded Triton, started with ``satwatch serve``.

Other integration tests reuse these:

* ``triton_factory(repository, **options) -> ServedRepository`` starts ``satwatch serve
  --detach`` over any repository folder on free ports and stops it at the end of the session
  (or earlier with ``served.stop()``: a module fixture stops its server when the module ends,
  so idle servers do not share the cores with the tests that follow);
* ``triton_for_test`` is the same, for one test: what it starts stops when the test ends;
* ``sample_repository`` is the tiny repository of :mod:`satwatch.server.sample_repository`;
* ``triton_server`` is that repository served once per session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from satwatch.server.embedded import ServerPorts
from satwatch.server.sample_repository import build_sample_repository

ADMIN_KEY = "integration-admin-key"
SATWATCH = [sys.executable, "-m", "satwatch"]
WIDE_OUTPUT = {**os.environ, "COLUMNS": "240"}
"""Environment for ``satwatch`` subprocesses: rich tables unfolded, one row per line."""


@dataclass
class ServedRepository:
    """A repository served by the embedded Triton.

    Attributes:
        repository: The repository root served.
        http_url: ``http://127.0.0.1:<port>``.
        http_address: ``127.0.0.1:<port>`` as ``tritonclient.http`` takes it.
        grpc_address: ``127.0.0.1:<port>`` as ``tritonclient.grpc`` takes it.
        metrics_url: ``http://127.0.0.1:<port>/metrics``.
        admin_key: Value of the ``admin-key`` header for the repository APIs.
        pid: The ``tritonserver`` process id (also its process group id).
        serve_output: What ``satwatch serve`` printed (the model table).
        pid_file: The pid file ``satwatch stop`` reads.
        log_file: The server log.
    """

    repository: Path
    http_url: str
    http_address: str
    grpc_address: str
    metrics_url: str
    admin_key: str
    pid: int
    serve_output: str
    pid_file: Path
    log_file: Path
    stopped: bool = field(default=False)

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers for the restricted (model-repository, shared-memory) APIs."""
        return {"admin-key": self.admin_key}

    def stop(self) -> subprocess.CompletedProcess:
        """Stop the server with ``satwatch stop``; idempotent."""
        if self.stopped:
            return subprocess.CompletedProcess([], 0, "", "")
        self.stopped = True
        return subprocess.run(
            [*SATWATCH, "stop", "--pid-file", str(self.pid_file)],
            capture_output=True,
            text=True,
            timeout=90,
        )


def serve_command(
    repository: Path, ports: ServerPorts, workdir: Path, *extra: str, detach: bool = True
) -> list[str]:
    """The ``satwatch serve`` command line the fixtures run."""
    command = [
        *SATWATCH,
        "serve",
        "--repository",
        str(repository),
        "--http-port",
        str(ports.http),
        "--grpc-port",
        str(ports.grpc),
        "--metrics-port",
        str(ports.metrics),
        "--admin-key",
        ADMIN_KEY,
        "--pid-file",
        str(workdir / "triton.pid"),
        "--log-file",
        str(workdir / "triton.log"),
        "--timeout",
        "150",
        *extra,
    ]
    return [*command, "--detach"] if detach else command


@pytest.fixture(scope="session")
def triton_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServedRepository]]:
    """Start ``satwatch serve`` over a repository on free ports; all stop at session end."""
    started: list[ServedRepository] = []

    def start(repository: Path, *extra: str) -> ServedRepository:
        workdir = tmp_path_factory.mktemp("triton")
        ports = ServerPorts.free()
        command = serve_command(repository, ports, workdir, *extra)
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=200, env=WIDE_OUTPUT
        )
        if result.returncode != 0:
            log = (workdir / "triton.log").read_text() if (workdir / "triton.log").exists() else ""
            pytest.fail(f"satwatch serve failed:\n{result.stdout}\n{result.stderr}\n{log[-3000:]}")
        served = ServedRepository(
            repository=Path(repository),
            http_url=f"http://127.0.0.1:{ports.http}",
            http_address=f"127.0.0.1:{ports.http}",
            grpc_address=f"127.0.0.1:{ports.grpc}",
            metrics_url=f"http://127.0.0.1:{ports.metrics}/metrics",
            admin_key=ADMIN_KEY,
            pid=int((workdir / "triton.pid").read_text()),
            serve_output=result.stdout,
            pid_file=workdir / "triton.pid",
            log_file=workdir / "triton.log",
        )
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def triton_for_test(
    triton_factory: Callable[..., ServedRepository],
) -> Iterator[Callable[..., ServedRepository]]:
    """``triton_factory`` for one test: the servers it starts stop when the test ends."""
    started: list[ServedRepository] = []

    def start(repository: Path, *extra: str) -> ServedRepository:
        served = triton_factory(repository, *extra)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture(scope="session")
def sample_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sample repository (ONNX, TorchScript, Python, ensemble), built once."""
    return build_sample_repository(tmp_path_factory.mktemp("sample") / "repository")


@pytest.fixture(scope="session")
def triton_server(
    triton_factory: Callable[..., ServedRepository], sample_repository: Path
) -> ServedRepository:
    """The sample repository served for the whole session."""
    return triton_factory(sample_repository)
