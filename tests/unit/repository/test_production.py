"""``satwatch validate --production``: the native backends' rules, each violation named."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest
from tritonclient.grpc import model_config_pb2 as mc
from typer.testing import CliRunner

from satwatch.cli import app
from satwatch.repository.config import load_config, write_model_configs
from satwatch.repository.production import production_findings
from satwatch.server.sample_repository import build_sample_repository

RUNNER = CliRunner()


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return build_sample_repository(tmp_path / "repository")


def _messages(root: Path, severity: str = "error") -> list[str]:
    return [
        f"{f.problem.path.parent.name}: {f.problem.message}"
        for f in production_findings(root)
        if f.severity == severity
    ]


def _edit(model_dir: Path, change) -> None:  # noqa: ANN001 - a function of the config
    config = load_config(model_dir / "config.pbtxt")
    change(config)
    write_model_configs(model_dir, config)


def test_optional_inputs_are_refused_for_pytorch_and_need_a_default_for_onnx(sample) -> None:
    errors = _messages(sample)
    assert any(re.match(r"sample_torch: input 'offset' is optional.*6523", m) for m in errors)
    # sample_state's state_in has its zero default in the graph: no finding for it...
    assert not any("state_in" in m for m in errors)
    # ... until the graph loses it.
    path = sample / "onnx" / "sample_state" / "1" / "model.onnx"
    model = onnx.load(str(path))
    kept = [t for t in model.graph.initializer if t.name != "state_in"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.save(model, str(path))
    assert any(
        m.startswith("sample_state: version 1: optional input 'state_in' has no default")
        for m in _messages(sample)
    )


def test_gpu_backends_must_run_on_the_gpu(sample) -> None:
    errors = _messages(sample)
    assert any(
        m.startswith("sample_state: instance groups KIND_CPU: expected KIND_GPU") for m in errors
    )
    assert not any(m.startswith("sample_python: instance groups") for m in errors)

    def to_gpu(config: mc.ModelConfig) -> None:
        for group in config.instance_group:
            group.kind = mc.ModelInstanceGroup.KIND_GPU

    _edit(sample / "onnx" / "sample_state", to_gpu)
    assert not any(m.startswith("sample_state: instance groups") for m in _messages(sample))


def test_dynamic_batching_without_batching_is_a_warning(sample) -> None:
    assert not any("dynamic_batching" in m for m in _messages(sample, "warning"))
    _edit(sample / "onnx" / "sample_state", lambda c: c.dynamic_batching.SetInParent())
    warnings = _messages(sample, "warning")
    assert warnings == [
        "sample_state: dynamic_batching does nothing with max_batch_size 0 (requests never batched)"
    ]


def test_a_backend_the_container_lacks_is_named(sample) -> None:
    _edit(sample / "python" / "sample_python", lambda c: setattr(c, "backend", "jax"))
    assert "sample_python: backend 'jax': expected one of" in " ".join(_messages(sample))


def test_a_tensorrt_plan_must_declare_its_onnx_models_tensors(sample) -> None:
    source = sample / "onnx" / "sample_state"
    plan = sample / "tensorrt" / "sample_state_trt"
    plan.mkdir(parents=True)
    config = load_config(source / "config.pbtxt")
    config.name, config.backend = "sample_state_trt", "tensorrt"
    config.input[0].dims[:] = [-1, 5]
    write_model_configs(plan, config, cpu=False)
    assert any(
        m.startswith("sample_state_trt: declares other inputs/outputs than the ONNX model")
        for m in _messages(sample)
    )


def test_the_command_exits_1_naming_each_error_and_prints_the_warnings(sample) -> None:
    _edit(sample / "onnx" / "sample_state", lambda c: c.dynamic_batching.SetInParent())
    result = RUNNER.invoke(app, ["validate", "--repository", str(sample), "--production"])
    assert result.exit_code == 1
    assert "'offset' is optional" in result.output
    assert "warning:" in result.output and "dynamic_batching does nothing" in result.output
