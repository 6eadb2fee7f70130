"""TensorRT conversion: the profile and config are computed anywhere; the build fails clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from satwatch.exceptions import ModelError
from satwatch.repository.signatures import onnx_signature
from satwatch.repository.tensorrt import (
    BuildOptions,
    calibration_batches,
    convert,
    gpu_problem,
    plan_config,
    profile_shapes,
    tensorrt_problem,
)

from .conftest import PROJECT_REPOSITORY, make_detector_onnx

SCRIPT = PROJECT_REPOSITORY / "scripts" / "convert_tensorrt.py"
NOTHING_HERE = tensorrt_problem() is not None and gpu_problem() is not None


def test_profile_spans_the_time_axis_and_fixes_the_states(tmp_path: Path) -> None:
    signature = onnx_signature(make_detector_onnx(tmp_path / "m.onnx", hidden=6))
    shapes = profile_shapes(signature, BuildOptions(min_steps=1, opt_steps=100, max_steps=2000))
    assert shapes["input_data"] == ((1, 25), (100, 25), (2000, 25))
    assert shapes["encoder_state"] == ((1, 6), (1, 6), (1, 6))


def test_plan_config_is_a_tensorrt_plan_with_optional_states(tmp_path: Path) -> None:
    signature = onnx_signature(make_detector_onnx(tmp_path / "m.onnx"))
    config = plan_config(signature, "SMAP_E-1_trt", PROJECT_REPOSITORY)
    assert config.platform == "tensorrt_plan"
    assert {t.name: t.optional for t in config.input}["encoder_state"]
    assert not {t.name: t.optional for t in config.input}["input_data"]


def test_inconsistent_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="--calib"):
        BuildOptions(int8=True).check()
    with pytest.raises(ModelError, match="min <= opt <= max"):
        BuildOptions(min_steps=10, opt_steps=5).check()


def test_calibration_batches_are_float32_chunks_of_opt_steps() -> None:
    batches = calibration_batches(np.arange(250 * 25, dtype=np.float64).reshape(250, 25), 100)
    assert [b.shape for b in batches] == [(100, 25), (100, 25)]
    assert batches[1].dtype == np.float32
    assert batches[1][0, 0] == 2500.0


@pytest.mark.skipif(not NOTHING_HERE, reason="TensorRT or a GPU is present here")
def test_convert_without_tensorrt_or_gpu_says_which_is_missing(tmp_path: Path) -> None:
    onnx_file = make_detector_onnx(tmp_path / "m.onnx")
    with pytest.raises(ModelError) as error:
        convert(onnx_file, tmp_path / "SMAP_E-1_trt" / "1" / "model.plan")
    assert "TensorRT is not installed" in str(error.value)
    assert "no NVIDIA GPU" in str(error.value)
    assert not (tmp_path / "SMAP_E-1_trt").exists()


@pytest.mark.skipif(not NOTHING_HERE, reason="TensorRT or a GPU is present here")
def test_convert_script_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    onnx_file = make_detector_onnx(tmp_path / "m.onnx")
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--onnx",
            str(onnx_file),
            "--output",
            str(tmp_path / "p.plan"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        timeout=60,
    )
    assert result.returncode == 1
    assert "TensorRT is not installed" in result.stderr
    assert "Traceback" not in result.stderr
