"""The embedded Triton serving the sample repository, asked with the official tritonclient."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from satwatch.server import sample_repository as sample

pytestmark = pytest.mark.integration

MODELS = ("sample_affine", "sample_pipeline", "sample_python", "sample_state", "sample_torch")
X = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2], [-3, 0.25, 8, 1]], dtype=np.float32)


def _client(protocol: str, server):
    if protocol == "http":
        return httpclient.InferenceServerClient(url=server.http_address)
    return grpcclient.InferenceServerClient(url=server.grpc_address)


def _infer(protocol: str, server, model: str, **inputs: np.ndarray):
    module = httpclient if protocol == "http" else grpcclient
    tensors = []
    for name, array in inputs.items():
        tensor = module.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    client = _client(protocol, server)
    try:
        return client.infer(model, tensors)
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_is_live_and_ready_and_every_sample_model_too(triton_server, protocol):
    client = _client(protocol, triton_server)
    assert client.is_server_live()
    assert client.is_server_ready()
    for model in MODELS:
        assert client.is_model_ready(model), model


def test_repository_index_lists_every_model_ready_and_needs_the_admin_key(triton_server):
    client = httpclient.InferenceServerClient(url=triton_server.http_address)
    index = client.get_model_repository_index(headers=triton_server.admin_headers)
    assert {(row["name"], row["state"]) for row in index} == {(m, "READY") for m in MODELS}
    with pytest.raises(InferenceServerException, match="admin-key"):
        client.get_model_repository_index()
    for model in MODELS:
        assert model in triton_server.serve_output  # the launcher's table


def test_onnx_config_is_auto_completed_from_the_model_file_and_the_cpu_variant_is_used(
    triton_server,
):
    http = httpclient.InferenceServerClient(url=triton_server.http_address)
    grpc = grpcclient.InferenceServerClient(url=triton_server.grpc_address)
    for config in (
        http.get_model_config("sample_affine"),
        grpc.get_model_config("sample_affine", as_json=True)["config"],
    ):
        assert config["max_batch_size"] == 8
        assert [
            (t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config["input"]
        ] == [("input_data", "TYPE_FP32", [4])]
        assert [(t["name"], [int(d) for d in t["dims"]]) for t in config["output"]] == [
            ("output", [3])
        ]
        assert config["instance_group"][0]["kind"] == "KIND_CPU"  # configs/cpu.pbtxt


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_metadata_names_the_tensors(triton_server, protocol):
    client = _client(protocol, triton_server)
    metadata = client.get_model_metadata("sample_state")
    if protocol == "grpc":
        names = [t.name for t in metadata.inputs]
        assert metadata.platform == "onnxruntime_onnx"
    else:
        names = [t["name"] for t in metadata["inputs"]]
        assert metadata["platform"] == "onnxruntime_onnx"
    assert names == ["input_data", "state_in"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("sample_affine", sample.affine_expected(X)),
        ("sample_state", sample.state_expected(X)[0]),
        ("sample_torch", 3 * X),
        ("sample_python", X - 1),
        ("sample_pipeline", sample.pipeline_expected(X)),
    ],
)
def test_inference_returns_the_exact_numbers(triton_server, protocol, model, expected):
    result = _infer(protocol, triton_server, model, input_data=X)
    np.testing.assert_array_equal(result.as_numpy("output"), expected)


def test_optional_state_absent_means_zeros_and_present_continues_the_stream(triton_server):
    first, second = X[:2], X[2:]
    absent = _infer("grpc", triton_server, "sample_state", input_data=first)
    np.testing.assert_array_equal(absent.as_numpy("output"), first)
    state = absent.as_numpy("state_out")
    present = _infer("grpc", triton_server, "sample_state", input_data=second, state_in=state)
    whole_output, whole_state = sample.state_expected(X)
    np.testing.assert_array_equal(present.as_numpy("output"), second + state)
    np.testing.assert_array_equal(present.as_numpy("state_out"), whole_state)
    assert whole_output.shape == X.shape


def test_torchscript_optional_input_is_none_when_absent(triton_server):
    offset = np.array([1, 2, 3, 4], dtype=np.float32)
    without = _infer("http", triton_server, "sample_torch", input_data=X)
    with_offset = _infer("http", triton_server, "sample_torch", input_data=X, offset=offset)
    np.testing.assert_array_equal(without.as_numpy("output"), 3 * X)
    np.testing.assert_array_equal(with_offset.as_numpy("output"), 3 * X + offset)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_request_gets_a_clear_error_and_the_next_request_succeeds(triton_server, protocol):
    wide = np.ones((2, 5), dtype=np.float32)  # the config allows [-1, -1]; the model wants 4
    with pytest.raises(InferenceServerException) as error:
        _infer(protocol, triton_server, "sample_state", input_data=wide)
    assert "input 'input_data': expected shape [-1, 4], got [2, 5]" in str(error.value)
    good = _infer(protocol, triton_server, "sample_state", input_data=X)
    np.testing.assert_array_equal(good.as_numpy("output"), X)


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(triton_server):
    rows = [np.full((1 + i % 3, 4), i, dtype=np.float32) for i in range(32)]

    def ask(x: np.ndarray) -> np.ndarray:
        return _infer("grpc", triton_server, "sample_affine", input_data=x).as_numpy("output")

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, rows))
    for x, answer in zip(rows, answers, strict=True):
        np.testing.assert_array_equal(answer, sample.affine_expected(x))
    client = httpclient.InferenceServerClient(url=triton_server.http_address)
    (stats,) = client.get_inference_statistics("sample_affine")["model_stats"]
    sizes = [int(entry["batch_size"]) for entry in stats["batch_stats"]]
    # One request has at most 3 rows: a larger batch joined requests; fewer runs than requests.
    assert max(sizes) > 3, sizes
    assert int(stats["execution_count"]) < len(rows)
