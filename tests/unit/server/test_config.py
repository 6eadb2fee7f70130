"""TritonServerConfig: the flags satwatch gives tritonserver, and the folders it serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from satwatch.exceptions import ServerError
from satwatch.server.config import TritonServerConfig, configs_complete, repository_folders


def _config(**kwargs) -> TritonServerConfig:
    return TritonServerConfig.for_repository(
        [Path("/r/onnx"), Path("/r/python")], Path("/b"), **kwargs
    )


def test_unknown_flag_is_rejected_at_construction():
    with pytest.raises(ServerError, match="unknown tritonserver flag 'http-prot'"):
        TritonServerConfig([Path("/r")], {"http-prot": 9000})


def test_unknown_flag_is_rejected_when_set():
    config = _config()
    with pytest.raises(ServerError, match="unknown tritonserver flag 'strict-readyness'"):
        config["strict-readyness"] = False


def test_model_repository_cannot_be_set_as_a_plain_flag():
    with pytest.raises(ServerError, match="model-repository"):
        _config()["model-repository"] = "/x"


def test_cpu_config_emits_one_repository_flag_per_folder_and_the_standard_flags():
    args = _config(admin_key="k3y", http_port=9000, grpc_port=9001, metrics_port=9002).to_args()
    assert args[:2] == ["--model-repository=/r/onnx", "--model-repository=/r/python"]
    for expected in (
        "--backend-directory=/b",
        "--model-config-name=cpu",
        "--exit-on-error=false",
        "--strict-readiness=false",
        "--model-control-mode=explicit",
        "--load-model=*",
        "--http-address=127.0.0.1",
        "--http-port=9000",
        "--grpc-port=9001",
        "--metrics-port=9002",
        "--log-verbose=0",
        "--http-restricted-api=model-repository,shared-memory:admin-key=k3y",
        "--grpc-restricted-protocol=model-repository,shared-memory:admin-key=k3y",
    ):
        assert expected in args


def test_gpu_config_reads_the_production_configs():
    args = _config(gpu=True).to_args()
    assert not any(arg.startswith("--model-config-name") for arg in args)


def test_no_admin_key_leaves_the_apis_open():
    args = _config(admin_key=None).to_args()
    assert not any("restricted" in arg for arg in args)


def test_redacted_args_hide_the_admin_key_only():
    redacted = _config(admin_key="k").redacted_args()
    assert "--http-restricted-api=model-repository,shared-memory:admin-key=***" in redacted
    assert "--backend-directory=/b" in redacted
    assert not any(arg.endswith("=k") for arg in redacted)


def test_bare_switch_is_emitted_without_value():
    config = _config()
    config["disable-auto-complete-config"] = None
    assert "--disable-auto-complete-config" in config.to_args()


def _repository(tmp_path: Path) -> Path:
    for folder in ("onnx/a", "tensorrt/a_trt", "python/p"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "ensemble").mkdir()  # empty: skipped
    (tmp_path / "ensemble" / "README.md").write_text("x")
    return tmp_path


def test_repository_folders_skip_tensorrt_without_gpu_and_empty_or_absent_folders(tmp_path, caplog):
    root = _repository(tmp_path)
    with caplog.at_level("INFO"):
        folders = repository_folders(root, gpu=False)
    assert [f.name for f in folders] == ["onnx", "python"]
    assert "TensorRT plans need an NVIDIA GPU" in caplog.text


def test_repository_folders_serve_tensorrt_with_gpu(tmp_path):
    folders = repository_folders(_repository(tmp_path), gpu=True)
    assert [f.name for f in folders] == ["onnx", "tensorrt", "python"]


def test_repository_without_models_is_an_error(tmp_path):
    with pytest.raises(ServerError, match="expected model folders"):
        repository_folders(tmp_path, gpu=False)


_COMPLETE = """
name: "m"
backend: "python"
input { name: "x" data_type: TYPE_FP32 dims: [-1] }
output { name: "y" data_type: TYPE_FP32 dims: [-1] }
"""


def _model(folder: Path, name: str, config: str | None, cpu: str | None = None) -> None:
    (folder / name).mkdir(parents=True)
    if config is not None:
        (folder / name / "config.pbtxt").write_text(config)
    if cpu is not None:
        (folder / name / "configs").mkdir()
        (folder / name / "configs" / "cpu.pbtxt").write_text(cpu)


def test_auto_complete_is_off_only_when_every_served_config_is_complete(tmp_path):
    onnx, python = tmp_path / "onnx", tmp_path / "python"
    _model(onnx, "a", _COMPLETE)
    _model(python, "b", 'backend: "python"', cpu=_COMPLETE)  # the CPU variant is what is read
    folders = [onnx, python]
    assert configs_complete(folders, "cpu")
    assert (
        "--disable-auto-complete-config"
        in TritonServerConfig.for_repository(folders, Path("/b")).to_args()
    )
    # Read without the CPU variant (a GPU machine), b's config leaves its tensors out.
    assert not configs_complete(folders, None)
    assert (
        "--disable-auto-complete-config"
        not in TritonServerConfig.for_repository(folders, Path("/b"), gpu=True).to_args()
    )


@pytest.mark.parametrize("config", [None, "not a config {", 'backend: "onnxruntime"'])
def test_a_missing_unreadable_or_partial_config_keeps_auto_complete(tmp_path, config):
    _model(tmp_path / "onnx", "a", _COMPLETE)
    _model(tmp_path / "onnx", "bare", config)
    assert not configs_complete([tmp_path / "onnx"], "cpu")
