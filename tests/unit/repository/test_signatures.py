"""Tensors read from model files: ONNX graphs and TorchScript forward()."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from satwatch.exceptions import ModelError
from satwatch.onnx_defaults import add_zero_defaults
from satwatch.repository.signatures import onnx_signature, torchscript_signature

from .conftest import make_detector_onnx, make_tranad_torchscript


def test_onnx_signature_reads_names_types_and_dynamic_axes(tmp_path: Path) -> None:
    signature = onnx_signature(make_detector_onnx(tmp_path / "m.onnx", hidden=7))
    assert [s.name for s in signature.inputs] == ["input_data", "encoder_state", "decoder_state"]
    assert signature.input("input_data").dims == (-1, 25)
    assert signature.input("encoder_state").dims == (1, 7)
    assert signature.output("anomaly_detected").data_type == mc.TYPE_BOOL
    assert signature.output("anomaly_score").describe() == "anomaly_score FP32 [-1]"


def test_onnx_signature_leaves_out_initializers(tmp_path: Path) -> None:
    signature = onnx_signature(make_detector_onnx(tmp_path / "m.onnx"))
    assert signature.input("threshold") is None


def test_onnx_signature_keeps_the_inputs_that_have_a_default(tmp_path: Path) -> None:
    path = make_detector_onnx(tmp_path / "m.onnx", hidden=7)
    add_zero_defaults(path, ["encoder_state", "decoder_state"])
    signature = onnx_signature(path)
    assert [s.name for s in signature.inputs] == ["input_data", "encoder_state", "decoder_state"]
    assert signature.input("encoder_state").dims == (1, 7)


def test_onnx_signature_of_a_missing_or_broken_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file"):
        onnx_signature(tmp_path / "absent.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        onnx_signature(broken)


def test_torchscript_signature_reads_arguments_and_output_count(tmp_path: Path) -> None:
    signature = torchscript_signature(make_tranad_torchscript(tmp_path / "m.pt"))
    assert [a.name for a in signature.arguments] == ["input_data", "context"]
    assert not signature.argument("input_data").optional
    assert signature.argument("context").optional
    assert signature.num_outputs == 4


def test_torchscript_signature_of_a_non_torchscript_file_raises(tmp_path: Path) -> None:
    bad = tmp_path / "m.pt"
    bad.write_text("hello")
    with pytest.raises(ModelError, match="not a loadable TorchScript"):
        torchscript_signature(bad)
