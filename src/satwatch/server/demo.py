"""``satwatch demo`` for now: serve the tiny sample repository and query it.

Builds :mod:`satwatch.server.sample_repository` in a work folder, serves it with the embedded
Triton, asks every model over HTTP or gRPC with the official ``tritonclient``, compares each
answer with the exact expected numbers, and stops the server. A later issue replaces this with
the real telemetry pipeline; it stays in its own function so that swap is one line.

Example::

    result = run_demo(Path("build/demo"), ServerPorts.free())
    assert all(answer.ok for answer in result.answers)
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from satwatch.server import sample_repository as sample
from satwatch.server.embedded import RunningServer, ServerPorts, start_embedded_server
from satwatch.server.status import ModelStatus

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoAnswer:
    """One query of the demo: what was asked, what came back, whether it was exact."""

    model: str
    protocol: str
    output: np.ndarray
    expected: np.ndarray

    @property
    def ok(self) -> bool:
        """Whether the answer equals the expected numbers exactly."""
        return self.output.shape == self.expected.shape and bool(
            np.all(self.output == self.expected)
        )


@dataclass(frozen=True)
class DemoResult:
    """The demo's model table, start-up time and answers."""

    table: list[ModelStatus]
    startup_seconds: float
    answers: list[DemoAnswer]


def infer(
    protocol: str, url: str, model: str, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Send one request with ``tritonclient`` and return every output as numpy.

    Args:
        protocol: ``"http"`` or ``"grpc"``.
        url: ``host:port`` of that protocol's endpoint.
        model: Model name.
        inputs: Input name -> FP32 array.
    """
    client_module = httpclient if protocol == "http" else grpcclient
    client = client_module.InferenceServerClient(url=url)
    try:
        tensors = []
        for name, array in inputs.items():
            tensor = client_module.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        result = client.infer(model, tensors)
        response = result.get_response()
        names = (
            [o["name"] for o in response["outputs"]]
            if protocol == "http"
            else [o.name for o in response.outputs]
        )
        return {name: result.as_numpy(name) for name in names}
    finally:
        client.close()


def _queries(running: RunningServer) -> list[DemoAnswer]:
    x = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2]], dtype=np.float32)
    state = np.array([[10, 20, 30, 40]], dtype=np.float32)
    http = running.http_url.split("//", 1)[1]
    grpc = running.grpc_url
    answers = [
        DemoAnswer(
            "sample_affine",
            "http",
            infer("http", http, "sample_affine", {"input_data": x})["output"],
            sample.affine_expected(x),
        ),
        DemoAnswer(
            "sample_pipeline",
            "http",
            infer("http", http, "sample_pipeline", {"input_data": x})["output"],
            sample.pipeline_expected(x),
        ),
        DemoAnswer(
            "sample_torch",
            "grpc",
            infer("grpc", grpc, "sample_torch", {"input_data": x})["output"],
            3 * x,
        ),
    ]
    stateful = infer("grpc", grpc, "sample_state", {"input_data": x, "state_in": state})
    expected_output, expected_state = sample.state_expected(x, state)
    answers.append(DemoAnswer("sample_state", "grpc", stateful["output"], expected_output))
    answers.append(
        DemoAnswer("sample_state:state_out", "grpc", stateful["state_out"], expected_state)
    )
    return answers


def run_demo(
    workdir: Path,
    ports: ServerPorts,
    timeout: float = 120.0,
    on_ready: Callable[[RunningServer], None] | None = None,
) -> DemoResult:
    """Build the sample repository under ``workdir``, serve it, query it, stop it.

    Args:
        workdir: Folder for the repository and the server log.
        ports: The server's ports.
        timeout: Seconds to wait for readiness.
        on_ready: Called with the running server before the queries (to show the table).
    """
    root = sample.build_sample_repository(Path(workdir) / "repository")
    running = start_embedded_server(
        root,
        ports=ports,
        log_file=Path(workdir) / "triton.log",
        admin_key=secrets.token_urlsafe(16),
        timeout=timeout,
    )
    try:
        if on_ready is not None:
            on_ready(running)
        answers = _queries(running)
    finally:
        running.server.stop()
    return DemoResult(running.table, running.startup_seconds, answers)
