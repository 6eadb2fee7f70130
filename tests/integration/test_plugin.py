"""A detector added as a plug-in: this module alone, nothing else in satwatch edited.

The detector is the simplest one there is: how far the telemetry value lies from the middle
of its training range, in half-ranges (above 1: outside anything training saw). This module
is its whole implementation (the detector contract of :mod:`satwatch.detectors.registry`:
``Params``, ``build_model``, ``fit``, ``score``, an ONNX exporter and a scorer of the
exported file); the fixture registers it. The build then trains, exports, calibrates and
catalogs it, ``custom_logic`` and postprocessing serve it as one more score, the client
streams it and the offline evaluation fuses it: served fused = offline fused, exactly.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import tritonclient.http as httpclient
from onnx import TensorProto, helper

from satwatch.client.connection import Connection
from satwatch.client.evaluate import evaluate_served
from satwatch.data import load_dataset
from satwatch.detectors import registry
from satwatch.detectors.artifacts import load_trained
from satwatch.detectors.normalization import Normalisation
from satwatch.evaluation.offline import evaluate_offline
from satwatch.export.onnx import session
from satwatch.pipeline.calibration_file import load_thresholds
from satwatch.pipeline.catalog import read_catalog
from satwatch.pipeline.postprocess import PostSettings
from satwatch.repository.build import build_repository
from satwatch.repository.config import load_config, parameter_dict

from .builders import TINY, built_repository, webhook_server

pytestmark = pytest.mark.integration

CHANNELS = ["E-1", "A-1"]

# --- the detector -------------------------------------------------------------------------


@dataclass
class Params:
    """No hyperparameters to speak of; ``epochs`` is what training progress counts."""

    epochs: int = 1

    @classmethod
    def quick(cls) -> Params:
        return cls()

    @classmethod
    def full(cls) -> Params:
        return cls()


class TrainingRange(torch.nn.Module):
    """The middle and half-width of the telemetry value's training range (buffers)."""

    def __init__(self, params: Params, n_features: int = 25) -> None:
        super().__init__()
        self.params = params
        self.register_buffer("middle", torch.zeros(()))
        self.register_buffer("half_width", torch.ones(()))


def build_model(params: Params, n_features: int = 25) -> TrainingRange:
    return TrainingRange(params, n_features)


def fit(train: list[np.ndarray], params: Params, seed: int, on_epoch=None) -> TrainingRange:  # noqa: ANN001
    values = np.concatenate([series[:, 0] for series in train])
    model = build_model(params)
    low, high = float(values.min()), float(values.max())
    model.middle.fill_((low + high) / 2)
    model.half_width.fill_(max((high - low) / 2, 1e-6))
    if on_epoch is not None:
        on_epoch(1, 0.0)
    return model


def score(model: TrainingRange, series: np.ndarray) -> np.ndarray:
    value = np.asarray(series, np.float32)[:, 0]
    middle, half = np.float32(model.middle.item()), np.float32(model.half_width.item())
    return np.abs(value - middle) / half


def export(folder: Path, path: Path) -> Path:
    """The served graph: ``input_data`` -> reconstruction, anomaly_score, anomaly_detected."""
    model, card = load_trained(folder)
    constants = {
        "middle": model.middle.item(),
        "half_width": model.half_width.item(),
        "threshold": card["threshold"],
    }
    nodes = [
        helper.make_node("Constant", [], ["starts"], value_ints=[0]),
        helper.make_node("Constant", [], ["ends"], value_ints=[1]),
        helper.make_node("Constant", [], ["axes"], value_ints=[1]),
        helper.make_node("Slice", ["input_data", "starts", "ends", "axes"], ["value"]),
        helper.make_node("Squeeze", ["value", "axes"], ["column"]),
        helper.make_node("Sub", ["column", "middle"], ["offset"]),
        helper.make_node("Abs", ["offset"], ["distance"]),
        helper.make_node("Div", ["distance", "half_width"], ["anomaly_score"]),
        helper.make_node("Greater", ["anomaly_score", "threshold"], ["anomaly_detected"]),
        # The "reconstruction" of every step: the middle of the range, in every feature.
        helper.make_node("Mul", ["input_data", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "middle"], ["reconstruction"]),
    ]
    initializers = [
        helper.make_tensor(name, TensorProto.FLOAT, [], [value])
        for name, value in constants.items()
    ]
    initializers.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
    graph = helper.make_graph(
        nodes,
        "training_range",
        [helper.make_tensor_value_info("input_data", TensorProto.FLOAT, ["steps", 25])],
        [
            helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["steps", 25]),
            helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["steps"]),
            helper.make_tensor_value_info("anomaly_detected", TensorProto.BOOL, ["steps"]),
        ],
        initializers,
    )
    graph_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, path)
    return path


def served_scorer(path: Path):  # noqa: ANN201
    sess = session(path)
    return lambda series: sess.run(["anomaly_score"], {"input_data": series.astype(np.float32)})[0]


RANGE = registry.Detector(
    kind="range",
    title="training range",
    implementation=__name__,
    backend="onnx",
    model_file="model.onnx",
    name_pattern="range_{spacecraft}_{channel}",
    exporter=f"{__name__}:export",
    served_scorer=f"{__name__}:served_scorer",
)

# --- the tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_range(tmp_path_factory, shared_data):  # noqa: ANN001, ANN201
    """Two channels built with the plug-in registered (for this module's tests only); the
    other detectors' artifacts are the shared build's (copied), so only it trains here."""
    shared = built_repository(tmp_path_factory, shared_data, webhook_server())  # without it
    root = tmp_path_factory.mktemp("plugin")
    for name in ("omni/SMAP_E-1", "omni/SMAP_A-1", "tranad/tranad_sat1"):
        shutil.copytree(shared.artifacts / name, root / "artifacts" / name)
    registry.register(RANGE)
    try:
        report = build_repository(
            root / "artifacts", root / "repository", shared_data, channels=CHANNELS, overrides=TINY
        )
        yield root, report
    finally:
        registry.unregister(RANGE.kind)


@pytest.fixture(scope="module")
def served(with_range, triton_factory):  # noqa: ANN001, ANN201
    root, _ = with_range
    served = triton_factory(root / "repository")
    yield served
    served.stop()


def test_the_build_trains_exports_calibrates_and_catalogs_the_plugin(with_range) -> None:
    root, report = with_range
    assert report.problems == []
    # The built-in detectors' artifacts were copied, except the training-free one's and the
    # predictor's.
    assert report.trained == [
        "nearest_SMAP_E-1",
        "nearest_SMAP_A-1",
        "predictor_SMAP_E-1",
        "predictor_SMAP_A-1",
        "range_SMAP_E-1",
        "range_SMAP_A-1",
    ]
    assert (root / "repository" / "onnx" / "range_SMAP_E-1" / "1" / "model.onnx").is_file()
    catalog = read_catalog(root / "repository" / "python" / "custom_logic" / "1" / "catalog.db")
    assert [m.model for m in catalog["A-1"].models][-1] == "range_SMAP_A-1"
    assert catalog["A-1"].models[-1].states == ()
    post = load_config(root / "repository" / "python" / "postprocessing" / "config.pbtxt")
    scores = [i.name for i in post.input if i.name.startswith("score")]
    assert scores == [f"score{i + 1}" for i in range(len(registry.kinds()))]
    custom = load_config(root / "repository" / "python" / "custom_logic" / "config.pbtxt")
    assert {"range_score", "range_detected"} <= {o.name for o in custom.output}
    # Each channel's entry weighs its scores as the served settings weigh their kinds.
    dynamic = PostSettings.from_parameters(parameter_dict(post)).dynamic
    post_version = root / "repository" / "python" / "postprocessing" / "1"
    table = load_thresholds(post_version / "thresholds.json")
    for channel in ("E-1", "A-1"):
        assert table[channel].weights == tuple(dynamic.weight_of(k) for k in registry.kinds())
    assert dynamic.weight_of("tranad") < 1 == dynamic.weight_of("range")  # the template's


def test_custom_logic_serves_the_plugin_as_one_more_detector(served, shared_data) -> None:
    channel = load_dataset(shared_data).channel("E-1")
    raw = channel.test[:512].astype(np.float32)
    raw[300:320, 0] = 3.0  # far outside E-1's training range
    client = httpclient.InferenceServerClient(served.http_address)
    inputs = []
    for name, array in (("channel_id", np.array([b"E-1"], object)), ("raw_input", raw)):
        dtype = "BYTES" if array.dtype == object else "FP32"
        tensor = httpclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("custom_logic", inputs)
    model, card = load_trained(served.repository.parent / "artifacts" / "range" / "range_SMAP_E-1")
    expected = score(model, Normalisation.from_dict(card["normalisation"]["E-1"]).apply(raw))
    np.testing.assert_allclose(result.as_numpy("range_score"), expected, rtol=1e-6)
    assert result.as_numpy("range_detected")[300:320].all()
    assert np.isfinite(result.as_numpy("omni_score")).all()


def test_served_fused_over_every_detector_equals_offline(served, with_range) -> None:
    root, _ = with_range
    with Connection("http", served.http_address) as connection:
        result = evaluate_served(connection, CHANNELS, chunk=256)
    offline = evaluate_offline(
        list(registry.kinds()), CHANNELS, artifacts=root / "artifacts", repository=served.repository
    )
    assert "range" in registry.kinds()
    assert set(result.report["detectors"]) == {*registry.kinds(), "fused"}
    for detector in (*registry.kinds(), "fused"):
        assert result.report["detectors"][detector] == offline["detectors"][detector], detector
