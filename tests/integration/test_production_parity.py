"""The exported models run as NVIDIA's native backends would run them, with the same answers.

Triton's native onnxruntime backend hands ONNX Runtime only the inputs a request carries; the
embedded backend used to feed zero states itself and hid that a plain ``input_data`` request
would fail in production. Here every exported ONNX model of the built repository runs in ONNX
Runtime with only the inputs a request carries, without state and then with the state the
first answer returned, and must equal the embedded server's answers to the same requests.

Triton's native PyTorch backend refuses optional inputs, so TranAD's TorchScript is served as
``tranad_sat1_core`` with ``context`` required, behind the Python front ``tranad_sat1``: a
plain request to the front, the core given the start context, and the TorchScript file run
in this process all answer alike, and the built repository passes ``validate --production``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from satwatch.data import load_dataset
from satwatch.export.torchscript import OUTPUT_NAMES as TRANAD_OUTPUTS
from satwatch.export.torchscript import load_exported
from satwatch.onnx_defaults import missing_defaults
from satwatch.repository.production import production_findings
from satwatch.repository.stages import latest_version
from satwatch.server.sample_repository import build_sample_repository

from .builders import Built, built_repository, served_repository, webhook_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

OUTPUTS = ("reconstruction", "anomaly_score", "anomaly_detected")


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data: Path) -> Built:
    return built_repository(tmp_path_factory, shared_data, webhook_server())


@pytest.fixture(scope="module")
def grpc(triton_factory, built: Built):
    served = served_repository(triton_factory, built)
    with grpcclient.InferenceServerClient(served.grpc_address) as client:
        yield client


@pytest.fixture(scope="module")
def chunks(shared_data: Path) -> list[np.ndarray]:
    """Two consecutive chunks of E-1's test telemetry (normalisation does not matter here),
    with a small wave on the value so that every window moves: a detector of shapes scores a
    flat stretch the same with or without the steps before it."""
    test = load_dataset(shared_data).channel("E-1").test[:512].astype(np.float32)
    test[:, 0] += 0.1 * np.sin(np.arange(512, dtype=np.float32) / 7.0)
    return [test[:256].copy(), test[256:].copy()]


def _onnx_models(built: Built) -> list[Path]:
    return sorted(latest_version(d) / "model.onnx" for d in (built.repository / "onnx").iterdir())


def _served(client, model: str, feeds: dict[str, np.ndarray], names: list[str]) -> list:
    inputs = []
    for name, value in feeds.items():
        tensor = grpcclient.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    wanted = [grpcclient.InferRequestedOutput(name) for name in names]
    result = client.infer(model, inputs, outputs=wanted)
    return [result.as_numpy(name) for name in names]


def test_every_state_input_has_a_zero_default_in_the_graph(built: Built) -> None:
    for path in _onnx_models(built):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        # ONNX Runtime lists an input with a default as an overridable initializer.
        assert [i.name for i in session.get_inputs()] == ["input_data"], path
        states = [
            o.name.removesuffix("_out") for o in session.get_outputs() if o.name.endswith("_out")
        ]
        assert states, path
        assert missing_defaults(path, states) == [], path


def test_native_style_runs_equal_the_served_answers_with_and_without_state(
    built: Built, grpc, chunks
) -> None:
    for path in _onnx_models(built):
        model = path.parent.parent.name
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        states = [n.removesuffix("_out") for n in names if n.endswith("_out")]
        # Only input_data, as the seed's own clients send it: a fresh stream.
        local = session.run(names, {"input_data": chunks[0]})
        served = _served(grpc, model, {"input_data": chunks[0]}, names)
        for name, mine, theirs in zip(names, local, served, strict=True):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{model} {name}")
        # The next chunk with the state the first answer returned.
        carried = dict(zip(states, local[len(OUTPUTS) :], strict=True))
        feeds = {"input_data": chunks[1], **carried}
        local_next = session.run(names, feeds)
        served_next = _served(grpc, model, feeds, names)
        for name, mine, theirs in zip(names, local_next, served_next, strict=True):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{model} {name} (with state)")
        # And the state matters: the carried stream differs from a fresh one somewhere.
        fresh = session.run(["anomaly_score"], {"input_data": chunks[1]})[0]
        assert not np.array_equal(fresh, local_next[names.index("anomaly_score")]), model


def test_a_state_without_default_is_named_when_a_request_leaves_it_out(
    triton_for_test, tmp_path: Path
) -> None:
    # A graph exported elsewhere, without the build's defaults: the native backend would fail
    # a plain request, and the embedded one must too, naming the input (400, not 500).
    repository = build_sample_repository(tmp_path / "repository")
    path = repository / "onnx" / "sample_state" / "1" / "model.onnx"
    model = onnx.load(str(path))
    kept = [t for t in model.graph.initializer if t.name != "state_in"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.save(model, str(path))
    served = triton_for_test(repository)
    rows = np.ones((3, 4), np.float32)
    with grpcclient.InferenceServerClient(served.grpc_address) as client:
        with pytest.raises(InferenceServerException) as refused:
            _served(client, "sample_state", {"input_data": rows}, ["output"])
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "'state_in' left out" in refused.value.message()
        # With the state it answers, and the other models are unaffected.
        state = np.zeros((1, 4), np.float32)
        (output,) = _served(
            client, "sample_state", {"input_data": rows, "state_in": state}, ["output"]
        )
        np.testing.assert_array_equal(output, rows)


def test_the_built_repository_passes_the_native_backends_rules(built: Built) -> None:
    errors = [str(f) for f in production_findings(built.repository) if f.severity == "error"]
    assert errors == []


def _torchscript(built: Built, chunk: np.ndarray, context: np.ndarray | None) -> list:
    import torch

    path = latest_version(built.repository / "pytorch" / "tranad_sat1_core") / "model.pt"
    module = load_exported(path)
    torch.set_num_threads(1)  # as served
    with torch.inference_mode():
        given = None if context is None else torch.from_numpy(context)
        return [t.numpy() for t in module(torch.from_numpy(chunk), given)]


def test_tranad_front_core_and_file_answer_alike_with_and_without_context(
    built: Built, grpc, chunks
) -> None:
    names = list(TRANAD_OUTPUTS)
    # A plain request: the front starts the series with its first step, as offline scoring.
    plain = _served(grpc, "tranad_sat1", {"input_data": chunks[0]}, names)
    start = np.repeat(chunks[0][:1], 9, axis=0)
    core = _served(grpc, "tranad_sat1_core", {"input_data": chunks[0], "context": start}, names)
    offline = _torchscript(built, chunks[0], None)
    for name, front, behind, local in zip(names, plain, core, offline, strict=True):
        np.testing.assert_array_equal(front, behind, err_msg=name)
        np.testing.assert_allclose(front, local, atol=1e-6, err_msg=name)
    # The next chunk with the context the first answer returned, through the front.
    context = plain[names.index("context_out")]
    carried = _served(grpc, "tranad_sat1", {"input_data": chunks[1], "context": context}, names)
    whole = _torchscript(built, np.concatenate(chunks), None)
    score = names.index("anomaly_score")
    np.testing.assert_allclose(carried[score], whole[score][len(chunks[0]) :], atol=1e-6)


def test_the_tranad_core_requires_its_context_and_names_it(grpc, chunks) -> None:
    with pytest.raises(InferenceServerException) as refused:
        _served(grpc, "tranad_sat1_core", {"input_data": chunks[0]}, ["anomaly_score"])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "context" in refused.value.message()


def _successes(client, model: str) -> int:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats["inference_stats"]["success"].get("count", 0))


def test_custom_logic_calls_the_front_only_for_a_chunk_without_context(grpc, chunks) -> None:
    before = {m: _successes(grpc, m) for m in ("tranad_sat1", "tranad_sat1_core")}
    state: dict[str, np.ndarray] = {}
    for chunk in chunks:
        inputs = []
        for name, value in {"raw_input": chunk, **state}.items():
            tensor = grpcclient.InferInput(name, list(value.shape), "FP32")
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        channel = grpcclient.InferInput("channel_id", [1], "BYTES")
        channel.set_data_from_numpy(np.array([b"E-1"], dtype=object))
        result = grpc.infer("custom_logic", [*inputs, channel])
        outputs = [o.name for o in result.get_response().outputs]
        state = {n.removesuffix("_out"): result.as_numpy(n) for n in outputs if n.endswith("_out")}
    after = {m: _successes(grpc, m) for m in before}
    # The first chunk went through the front (which called the core), the second straight on.
    assert after["tranad_sat1"] - before["tranad_sat1"] == 1
    assert after["tranad_sat1_core"] - before["tranad_sat1_core"] == 2
