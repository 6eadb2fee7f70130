"""A small but complete model repository for the repository tests.

It follows the contracts: ``onnx/SMAP_E-1`` (an ONNX graph made with ``onnx.helper``, state
inputs included), ``pytorch/tranad_sat1`` (a scripted tiny module with the served
signature), ``python/{preprocessing,postprocessing}`` and the project's two checked-in
ensemble configs, so a passing validation also says those configs fit the contracts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from satwatch.paths import PROJECT_ROOT
from satwatch.repository.config import write_model_configs
from satwatch.repository.seed import seed_model_configs

PROJECT_REPOSITORY = PROJECT_ROOT / "triton-repository"
ASSETS = Path(__file__).parent / "assets"
HIDDEN = 4


def make_detector_onnx(path: Path, hidden: int = HIDDEN, dynamic_state: bool = False) -> Path:
    """Write an ONNX graph with the OmniAnomaly served signature (no real model inside)."""
    state_dims = ["H", hidden] if dynamic_state else [1, hidden]
    inputs = [
        helper.make_tensor_value_info("input_data", TensorProto.FLOAT, ["T", 25]),
        helper.make_tensor_value_info("encoder_state", TensorProto.FLOAT, state_dims),
        helper.make_tensor_value_info("decoder_state", TensorProto.FLOAT, state_dims),
    ]
    outputs = [
        helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["T", 25]),
        helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["T"]),
        helper.make_tensor_value_info("anomaly_detected", TensorProto.BOOL, ["T"]),
        helper.make_tensor_value_info("encoder_state_out", TensorProto.FLOAT, state_dims),
        helper.make_tensor_value_info("decoder_state_out", TensorProto.FLOAT, state_dims),
    ]
    threshold = helper.make_tensor("threshold", TensorProto.FLOAT, [], [0.5])
    nodes = [
        helper.make_node("Identity", ["input_data"], ["reconstruction"]),
        helper.make_node("ReduceMean", ["input_data"], ["anomaly_score"], axes=[1], keepdims=0),
        helper.make_node("Greater", ["anomaly_score", "threshold"], ["anomaly_detected"]),
        helper.make_node("Identity", ["encoder_state"], ["encoder_state_out"]),
        helper.make_node("Identity", ["decoder_state"], ["decoder_state_out"]),
    ]
    graph = helper.make_graph(nodes, "detector", inputs, outputs, initializer=[threshold])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


class TinyTranAD(torch.nn.Module):
    """The TranAD served signature: optional context in, four tensors out."""

    def forward(
        self,
        input_data: torch.Tensor,
        context: torch.Tensor | None = None,  # noqa: UP007
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        past = context if context is not None else input_data[:1].repeat(9, 1)
        score = input_data.mean(dim=1)
        return input_data, score, score > 0.5, torch.cat([past, input_data])[-9:]


def make_tranad_torchscript(path: Path) -> Path:
    """Write the scripted tiny TranAD stand-in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyTranAD()).save(str(path))
    return path


def build_repository(root: Path) -> Path:
    """Write the small repository at ``root`` and return it."""
    shutil.copytree(PROJECT_REPOSITORY / "configs", root / "configs")
    configs = seed_model_configs(encoder_hidden=HIDDEN, decoder_hidden=HIDDEN, repository=root)
    folders = {
        "preprocessing": "python",
        "postprocessing": "python",
        "SMAP_E-1": "onnx",
        "tranad_sat1": "pytorch",
    }
    for name, config in configs.items():
        write_model_configs(root / folders[name] / name, config)
    make_detector_onnx(root / "onnx" / "SMAP_E-1" / "1" / "model.onnx")
    make_tranad_torchscript(root / "pytorch" / "tranad_sat1" / "1" / "model.pt")
    for name in ("preprocessing", "postprocessing"):
        model_py = root / "python" / name / "1" / "model.py"
        model_py.parent.mkdir(parents=True)
        model_py.write_text("class TritonPythonModel:\n    pass\n")
    for name in ("multi_detector", "anomaly_pipeline"):
        shutil.copytree(PROJECT_REPOSITORY / "ensemble" / name, root / "ensemble" / name)
    return root


@pytest.fixture(scope="session")
def repository_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small repository, built once per session (copy it before changing it)."""
    return build_repository(tmp_path_factory.mktemp("template") / "triton-repository")


@pytest.fixture
def small_repository(repository_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small repository that a test may break."""
    return Path(shutil.copytree(repository_template, tmp_path / "triton-repository"))
