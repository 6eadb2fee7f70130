"""ONNX export of OmniAnomaly: the served interface, parity with PyTorch, chunked == whole."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

from satwatch.data import load_dataset
from satwatch.detectors import omnianomaly as om
from satwatch.detectors.normalization import Normalisation
from satwatch.export.onnx import export_omni, run_onnx, session

TINY = dataclasses.replace(
    om.Params.quick(), hidden=16, dense=16, flows=4, epochs=1, stride=20, batch_size=32
)


@pytest.fixture(scope="module")
def telemetry(synth_data, one_torch_thread) -> tuple[np.ndarray, np.ndarray]:
    chan = load_dataset(synth_data).channel("E-1")
    stats = Normalisation.fit(chan.train)
    return stats.apply(chan.train), stats.apply(chan.test[:3000])


@pytest.fixture(scope="module")
def exported(telemetry, tmp_path_factory) -> tuple[om.OmniAnomaly, float, Path]:
    model = om.fit([telemetry[0]], TINY, seed=0)
    # A threshold inside the test scores' range, so decisions are mixed, and midway between
    # two distinct scores (steady telemetry repeats scores exactly), so 1e-5 cannot flip one.
    values = np.unique(om.score(model, telemetry[1]))
    upper = values[values.size * 9 // 10 :]
    gap = int(np.argmax(np.diff(upper)))
    threshold = float((upper[gap] + upper[gap + 1]) / 2)
    path = export_omni(model, threshold, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return model, threshold, path


def test_graph_has_the_served_names_types_and_static_state_shapes(exported) -> None:
    _, threshold, path = exported
    graph = onnx.load(str(path)).graph

    def shape(value) -> list:
        return [
            d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim
        ]

    inputs = {v.name: (v.type.tensor_type.elem_type, shape(v)) for v in graph.input}
    outputs = {v.name: (v.type.tensor_type.elem_type, shape(v)) for v in graph.output}
    f32, boolean = onnx.TensorProto.FLOAT, onnx.TensorProto.BOOL
    assert inputs == {
        "input_data": (f32, [-1, 25]),
        "encoder_state": (f32, [1, 16]),
        "decoder_state": (f32, [1, 16]),
    }
    assert outputs == {
        "reconstruction": (f32, [-1, 25]),
        "anomaly_score": (f32, [-1]),
        "anomaly_detected": (boolean, [-1]),
        "encoder_state_out": (f32, [1, 16]),
        "decoder_state_out": (f32, [1, 16]),
    }
    scalars = [onnx.numpy_helper.to_array(t) for t in graph.initializer if not t.dims]
    assert any(np.isclose(v, threshold) for v in scalars)
    assert sum(node.op_type == "GRU" for node in graph.node) == 2


@pytest.mark.parametrize("kind", ["random", "telemetry"])
def test_onnx_runtime_matches_pytorch_eager(exported, telemetry, kind) -> None:
    model, threshold, path = exported
    series = (
        np.random.default_rng(7).normal(0.5, 0.5, size=(700, 25)).astype(np.float32)
        if kind == "random"
        else telemetry[1]
    )
    eager = om.score(model, series)
    scores, detected, recon = run_onnx(path, series)
    assert scores.shape == (series.shape[0],) and recon.shape == series.shape
    assert np.abs(scores - eager).max() < 1e-4
    np.testing.assert_array_equal(detected, eager > np.float32(threshold))
    if kind == "telemetry":
        assert 0 < detected.sum() < detected.size


@pytest.mark.parametrize("chunk", [1, 37, 100])
def test_chunks_passing_the_state_on_score_exactly_like_the_whole_series(
    exported, telemetry, chunk
) -> None:
    _, _, path = exported
    series = telemetry[1][:400]
    sess = session(path)
    whole = run_onnx(sess, series)
    chunked = run_onnx(sess, series, chunk=chunk)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(chunked[1], whole[1])


def test_zero_states_are_the_start_of_the_series(exported, telemetry) -> None:
    _, _, path = exported
    sess = session(path)
    series = telemetry[1][:150]
    zeros = np.zeros((1, 16), np.float32)
    feeds = {"input_data": series, "encoder_state": zeros, "decoder_state": zeros}
    direct = sess.run(["anomaly_score"], feeds)[0]
    np.testing.assert_array_equal(direct, run_onnx(sess, series)[0])
    # A non-zero state changes the first scores: the state really is carried into the graph.
    feeds["encoder_state"] = np.ones((1, 16), np.float32)
    assert not np.allclose(sess.run(["anomaly_score"], feeds)[0][:3], direct[:3])
