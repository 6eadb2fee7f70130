"""What a client reaching the ports can do without the admin key, over HTTP and gRPC.

``satwatch serve`` restricts Triton's model-control (load, unload, repository index) and
shared-memory APIs to requests carrying the admin key; inference, health and metadata stay
open. The requests refused here name models and regions that do not exist, so that a broken
restriction fails the test without unloading anything in the shared server.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from satwatch.server import sample_repository as sample

from .conftest import ADMIN_KEY, ServedRepository

pytestmark = pytest.mark.integration

PROTOCOLS = ("http", "grpc")
KEY_HEADERS = {"http": "admin-key", "grpc": "triton-grpc-protocol-admin-key"}
"""The header Triton wants the key under (gRPC's restricted protocols prefix it)."""
MODELS = ("sample_affine", "sample_pipeline", "sample_python", "sample_state", "sample_torch")
X = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2]], dtype=np.float32)


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def client(triton_server: ServedRepository, protocol: str) -> Iterator:
    """A client of ``protocol``, closed after the test."""
    if protocol == "http":
        made = httpclient.InferenceServerClient(triton_server.http_address)
    else:
        made = grpcclient.InferenceServerClient(triton_server.grpc_address)
    yield made
    made.close()


def _key(protocol: str, key: str = ADMIN_KEY) -> dict[str, str]:
    return {KEY_HEADERS[protocol]: key}


RESTRICTED = {
    "load": lambda c, h: c.load_model("no_such_model", headers=h),
    "unload": lambda c, h: c.unload_model("no_such_model", headers=h),
    "repository index": lambda c, h: c.get_model_repository_index(headers=h),
    "shared-memory status": lambda c, h: c.get_system_shared_memory_status(headers=h),
    "shared-memory register": lambda c, h: c.register_system_shared_memory(
        "no_such_region", "/no_such_region", 64, headers=h
    ),
    "shared-memory unregister": lambda c, h: c.unregister_system_shared_memory(
        "no_such_region", headers=h
    ),
}


@pytest.mark.parametrize("call", list(RESTRICTED))
def test_control_and_shared_memory_apis_are_refused_without_the_key(client, protocol, call):
    with pytest.raises(
        InferenceServerException, match=f"expecting header '{KEY_HEADERS[protocol]}'"
    ):
        RESTRICTED[call](client, None)


@pytest.mark.parametrize("call", ["load", "repository index", "shared-memory status"])
def test_a_wrong_key_is_refused_too(client, protocol, call):
    with pytest.raises(InferenceServerException, match=KEY_HEADERS[protocol]):
        RESTRICTED[call](client, _key(protocol, "not-the-key"))


def test_the_key_opens_the_repository_index_and_shared_memory_status(client, protocol):
    index = client.get_model_repository_index(headers=_key(protocol))
    rows = index if protocol == "http" else index.models
    states = {
        (row["name"], row["state"]) if protocol == "http" else (row.name, row.state) for row in rows
    }
    assert states == {(model, "READY") for model in MODELS}
    status = client.get_system_shared_memory_status(headers=_key(protocol))
    regions = status if protocol == "http" else status.regions
    assert len(regions) == 0  # nothing registered, and the answer is not a refusal


def test_the_key_reloads_a_model_that_then_still_serves(client, protocol):
    # A model no ensemble uses: Triton reloads an ensemble after its composing model and
    # answers the load before that, so sample_pipeline would be briefly unavailable.
    client.load_model("sample_affine", headers=_key(protocol))
    assert client.is_model_ready("sample_affine")
    np.testing.assert_array_equal(
        _infer(client, protocol, "sample_affine"), sample.affine_expected(X)
    )


def test_inference_health_and_metadata_stay_open_without_the_key(client, protocol):
    assert client.is_server_live() and client.is_server_ready()
    for model in MODELS:
        assert client.is_model_ready(model), model
    metadata = client.get_model_metadata("sample_python")
    name = metadata["name"] if protocol == "http" else metadata.name
    assert name == "sample_python"
    np.testing.assert_array_equal(_infer(client, protocol, "sample_python"), X - 1)
    np.testing.assert_array_equal(_infer(client, protocol, "sample_pipeline"), 3 * X - 1)


def _infer(client, protocol: str, model: str) -> np.ndarray:
    module = httpclient if protocol == "http" else grpcclient
    tensor = module.InferInput("input_data", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    return client.infer(model, [tensor]).as_numpy("output")
