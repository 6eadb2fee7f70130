"""One clear line per failure: no server, a model not READY, an unknown channel."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from satwatch.client import errors
from satwatch.client.connection import Connection, normalise_url
from satwatch.data import SEED_CHANNELS
from satwatch.exceptions import ClientError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_no_server_says_how_to_start_one(protocol: str) -> None:
    url = f"127.0.0.1:{_free_port()}"
    with Connection(protocol, url, timeout=5) as connection, pytest.raises(ClientError) as error:
        connection.check_ready(["custom_logic"])
    message = str(error.value)
    assert message == (
        f"no Triton server answers at {url} ({protocol}): start it with `satwatch serve` "
        "(or pass --url/--protocol of the running one)"
    )


def test_an_unknown_channel_is_named_with_the_seed_channels() -> None:
    server = InferenceServerException("unknown channel 'Q-9': the catalog holds A-1, E-1", "400")
    message = str(errors.translate(server, "custom_logic", "127.0.0.1:8001", "grpc"))
    assert message.startswith("unknown channel 'Q-9': the server serves A-1, E-1; ")
    assert message.endswith(", ".join(SEED_CHANNELS))
    assert "\n" not in message


def test_a_model_not_ready_names_its_state_and_reason() -> None:
    message = str(errors.model_not_ready("SMAP_A-1", "2", "h:1", "UNAVAILABLE", "unloaded"))
    assert message == (
        "model 'SMAP_A-1' version 2 is UNAVAILABLE (unloaded) on h:1: load it again or "
        "restart `satwatch serve`"
    )
    assert "--admin-key" in str(errors.model_not_ready("SMAP_A-1", "", "h:1", None))
    assert "satwatch build" in str(errors.model_not_ready("SMAP_Z-1", "", "h:1", "ABSENT"))


def test_other_server_errors_keep_their_first_line_behind_the_model() -> None:
    server = InferenceServerException("bad shape\nAt: traceback", "400")
    assert str(errors.translate(server, "preprocessing", "h:1", "http")) == (
        "model 'preprocessing' on h:1: bad shape"
    )


def test_failed_steps_of_custom_logic_name_the_step_model() -> None:
    server = InferenceServerException("step 'SMAP_A-1' failed: Model 'SMAP_A-1' is not ready.")
    assert errors.failed_step(server) == "SMAP_A-1"
    assert errors.failed_step(InferenceServerException("other")) is None


def test_urls_are_normalised_per_protocol() -> None:
    assert normalise_url(None, "grpc") == "127.0.0.1:8001"
    assert normalise_url("http://localhost:8000/", "http") == "localhost:8000"
    with pytest.raises(ClientError, match="protocol: expected one of grpc, http, got 'udp'"):
        normalise_url("x", "udp")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError("refused"), True),
        (
            InferenceServerException(
                "failed to connect to all addresses", status="StatusCode.UNAVAILABLE"
            ),
            True,
        ),
        (InferenceServerException("502 Bad Gateway"), True),
        (InferenceServerException("unexpected shape for input 'input_data'"), False),
        (
            InferenceServerException("unknown channel 'Q-9'", status="StatusCode.INVALID_ARGUMENT"),
            False,
        ),
    ],
)
def test_only_requests_nothing_answered_are_sent_again(error, transient: bool) -> None:
    assert errors.is_transient(error) is transient


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_request_nothing_answers_is_tried_again_then_named(protocol: str, caplog) -> None:
    url = f"127.0.0.1:{_free_port()}"
    connection = Connection(protocol, url, timeout=5, retries=2, retry_wait=0.05)
    inputs = {"input_data": np.zeros((4, 25), np.float32)}
    logs = caplog.at_level("INFO", logger="satwatch.client.connection")
    with logs, connection, pytest.raises(ClientError, match="no Triton server answers"):
        connection.infer("SMAP_E-1", inputs, ["anomaly_score"])
    assert sum("sending it again" in r.getMessage() for r in caplog.records) == 2
