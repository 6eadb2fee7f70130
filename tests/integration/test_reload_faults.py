"""A model file corrupted or removed, then a reload: the old version keeps serving.

Observed on Triton 2.51 (explicit model control): a reload whose new files cannot be loaded
answers an error naming the model and the reason, and the version already loaded stays
READY and keeps answering as before; once the file is restored, the next reload loads it.
satwatch's side: ``load_on_server`` passes Triton's reason on and says the loaded versions
still serve, and ``deploy_onnx`` refuses a broken file before it is written or the server is
asked, so a broken file never replaces a working one on disk either (where the next start or
a supervisor's reload would meet it).

The server runs supervised, as ``satwatch serve`` does by default: the short-lived stubs a
reload starts must not look to the supervisor like a crashed model (it would unload the model,
and a reload of the broken file would then leave nothing serving).

The module serves its own copy of the sample repository (``build_sample_repository``), and
the ``client`` fixture puts back what a test broke, so the order of the tests does not matter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from satwatch.exceptions import ModelError, ServerError
from satwatch.repository.deploy import deploy_onnx, load_on_server
from satwatch.server.sample_repository import build_sample_repository

from .conftest import ServedRepository

pytestmark = pytest.mark.integration

X = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2], [-3, 0.25, 8, 1]], dtype=np.float32)
GARBAGE = b"\x08\x07not an onnx model\xff\xfe" * 64
# What Triton's error says about each fault: the backend's own message, passed through.
# sample_affine leaves its tensors to auto-complete, so a fault meets onnx.load there;
# sample_state declares them, so it meets ONNX Runtime opening the session (which names the
# file).
REASONS = {
    (
        "sample_affine",
        "corrupted",
    ): "DecodeError: Error parsing message with type 'onnx.ModelProto'",
    ("sample_state", "corrupted"): "INVALID_PROTOBUF : Load model from {file} failed",
    ("sample_affine", "removed"): "model file not found: expected {file}, got no such file",
    ("sample_state", "removed"): "model file not found: expected {file}, got no such file",
}
MODELS = ["sample_affine", "sample_state"]
SETTLE = 2.0
"""Seconds a model must go on answering after a reload: several of the supervisor's checks."""


@pytest.fixture(scope="module")
def served(
    triton_factory: Callable[..., ServedRepository], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedRepository]:
    """This module's own copy of the sample repository, served with explicit model control."""
    repository = build_sample_repository(tmp_path_factory.mktemp("reload") / "repository")
    # Supervised, as `satwatch serve` runs: a failed reload must not look like a dead stub.
    served = triton_factory(repository)
    yield served
    served.stop()


@pytest.fixture
def client(served: ServedRepository) -> Iterator[httpclient.InferenceServerClient]:
    """An HTTP client; afterwards every model file is as built and every model serves it."""
    files = {model: _model_file(served, model) for model in MODELS}
    good = {model: path.read_bytes() for model, path in files.items()}
    client = httpclient.InferenceServerClient(url=served.http_address)
    yield client
    # So one failing test leaves the next a served model to break, not an unloaded one.
    for model, path in files.items():
        if not path.is_file() or path.read_bytes() != good[model]:
            path.write_bytes(good[model])
        if not client.is_model_ready(model, "1"):
            client.load_model(model, headers=served.admin_headers)
    client.close()  # an open connection would hold the server's shutdown for 30 s


def _model_file(served: ServedRepository, model: str) -> Path:
    return served.repository / "onnx" / model / "1" / "model.onnx"


def _infer(client: httpclient.InferenceServerClient, model: str) -> np.ndarray:
    tensor = httpclient.InferInput("input_data", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    return client.infer(model, [tensor]).as_numpy("output")


def _break(model_file: Path, fault: str) -> None:
    if fault == "corrupted":
        model_file.write_bytes(GARBAGE)
    else:
        model_file.unlink()


def _keeps_serving(
    client: httpclient.InferenceServerClient, model: str, expected: np.ndarray
) -> None:
    """Version 1 stays READY and answers ``expected`` for ``SETTLE`` seconds."""
    deadline = time.monotonic() + SETTLE
    while True:
        assert client.is_model_ready(model, "1"), f"{model} version 1 stopped being ready"
        np.testing.assert_array_equal(_infer(client, model), expected)
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _loads_logged(served: ServedRepository, model: str) -> int:
    return served.log_file.read_text().count(f"successfully loaded '{model}'")


def _wait_for_loads(served: ServedRepository, model: str, count: int) -> int:
    deadline = time.monotonic() + 10
    while _loads_logged(served, model) < count and time.monotonic() < deadline:
        time.sleep(0.1)  # the server writes its log asynchronously
    return _loads_logged(served, model)


@pytest.mark.parametrize("fault", ["corrupted", "removed"])
@pytest.mark.parametrize("model", MODELS)
def test_a_broken_model_file_fails_the_reload_and_the_old_version_keeps_serving(
    served: ServedRepository, client: httpclient.InferenceServerClient, model: str, fault: str
) -> None:
    model_file = _model_file(served, model)
    good = model_file.read_bytes()
    before = _infer(client, model)
    _break(model_file, fault)
    try:
        with pytest.raises(InferenceServerException) as error:
            client.load_model(model, headers=served.admin_headers)
        message = error.value.message()
        assert f"load failed for model '{model}': version 1 is at UNAVAILABLE state" in message
        assert REASONS[model, fault].format(file=model_file) in message
        _keeps_serving(client, model, before)
    finally:
        model_file.write_bytes(good)
    # Restored: the next reload really loads the file again (the log counts it) and serves.
    loads = _loads_logged(served, model)
    client.load_model(model, headers=served.admin_headers)
    _keeps_serving(client, model, before)
    assert _wait_for_loads(served, model, loads + 1) == loads + 1  # and no second load


def test_load_on_server_names_the_problem_and_says_the_old_version_serves(
    served: ServedRepository, client: httpclient.InferenceServerClient
) -> None:
    model_file = _model_file(served, "sample_affine")
    good = model_file.read_bytes()
    before = _infer(client, "sample_affine")
    model_file.write_bytes(GARBAGE)
    try:
        with pytest.raises(ServerError) as error:
            load_on_server(served.http_url, "sample_affine", 1, admin_key=served.admin_key)
    finally:
        model_file.write_bytes(good)
    message = str(error.value)
    assert "loading sample_affine failed" in message
    assert REASONS["sample_affine", "corrupted"] in message
    assert message.endswith("the versions already loaded keep serving")
    assert "\nAt:" not in message  # the backend's traceback is left to the server log
    _keeps_serving(client, "sample_affine", before)


def test_deploy_refuses_a_broken_file_before_writing_or_asking_the_server(
    served: ServedRepository, client: httpclient.InferenceServerClient, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(GARBAGE)
    model_dir = served.repository / "onnx" / "sample_affine"
    config_before = (model_dir / "config.pbtxt").read_text()
    loads = _loads_logged(served, "sample_affine")
    with pytest.raises(ModelError, match=rf"{broken}: not an ONNX model"):
        deploy_onnx(
            broken,
            "sample_affine",
            repository=served.repository,
            url=served.http_url,
            admin_key=served.admin_key,
        )
    assert sorted(p.name for p in model_dir.iterdir() if p.is_dir()) == ["1", "configs"]
    assert (model_dir / "config.pbtxt").read_text() == config_before
    assert _loads_logged(served, "sample_affine") == loads  # the server was never asked
    assert client.get_model_metadata("sample_affine")["versions"] == ["1"]
    assert client.is_model_ready("sample_affine", "1")
