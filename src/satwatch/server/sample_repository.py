"""A tiny model repository that exercises every CPU backend of the embedded server.

Used by the tests and by ``satwatch demo``. Every model computes something exact, so an
answer can be checked to the last bit (inputs of small integers or halves)::

    onnx/sample_affine      ONNX, dynamic batching (max_batch_size 8), config left for
                            auto-complete; production config.pbtxt is KIND_GPU with a
                            configs/cpu.pbtxt beside it.     output = input_data @ W + b
    onnx/sample_state       ONNX, max_batch_size 0, optional static-shape input state_in [1, 4]
                            output = input_data + state_in; state_out = state_in + column sums
    pytorch/sample_torch    TorchScript, optional input offset [4]: output = 3 * x (+ offset)
    python/sample_python    Python model: output = input_data - 1
    ensemble/sample_pipeline  sample_state -> sample_torch -> sample_python: output = 3 * x - 1

Example::

    root = build_sample_repository(Path("/tmp/repo"))
"""

from __future__ import annotations

import logging
import textwrap
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import torch
from google.protobuf import json_format, text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

LOGGER = logging.getLogger(__name__)

FEATURES = 4
AFFINE_WEIGHT = np.array([[1, 0, 2], [0, 1, -1], [1, 1, 0], [-1, 0, 1]], dtype=np.float32)
AFFINE_BIAS = np.array([0.5, -1, 2], dtype=np.float32)
ONNX_OPSET = 17


def affine_expected(x: np.ndarray) -> np.ndarray:
    """What ``sample_affine`` answers for ``x`` of shape (N, 4)."""
    return (x @ AFFINE_WEIGHT + AFFINE_BIAS).astype(np.float32)


def state_expected(x: np.ndarray, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What ``sample_state`` answers: ``(output, state_out)``."""
    state = np.zeros((1, FEATURES), np.float32) if state is None else state
    return (x + state).astype(np.float32), (state + x.sum(axis=0, keepdims=True)).astype(np.float32)


def pipeline_expected(x: np.ndarray) -> np.ndarray:
    """What the ``sample_pipeline`` ensemble answers."""
    return (3 * x - 1).astype(np.float32)


def write_config(folder: Path, config: dict, name: str = "config.pbtxt") -> Path:
    """Write a model config (a ``ModelConfig`` as a dict) as text protobuf."""
    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text_format.MessageToString(message))
    return path


def _tensor(name: str, dims: list[int], optional: bool = False, dtype: str = "TYPE_FP32") -> dict:
    entry = {"name": name, "data_type": dtype, "dims": dims}
    if optional:
        entry["optional"] = True
    return entry


def _affine_onnx(path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input_data", "weight"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["output"]),
        ],
        "sample_affine",
        [helper.make_tensor_value_info("input_data", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(AFFINE_WEIGHT, "weight"),
            numpy_helper.from_array(AFFINE_BIAS, "bias"),
        ],
    )
    _save_onnx(graph, path)


def _state_onnx(path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["input_data", "state_in"], ["output"]),
            helper.make_node("ReduceSum", ["input_data", "axes"], ["column_sums"], keepdims=1),
            helper.make_node("Add", ["state_in", "column_sums"], ["state_out"]),
        ],
        "sample_state",
        [
            helper.make_tensor_value_info("input_data", TensorProto.FLOAT, ["steps", FEATURES]),
            # Optional as the detectors' states are: its initializer is its default (zeros),
            # which ONNX Runtime uses when a request leaves it out.
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1, FEATURES]),
        ],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["steps", FEATURES]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [1, FEATURES]),
        ],
        [
            numpy_helper.from_array(np.array([0], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.zeros((1, FEATURES), np.float32), "state_in"),
        ],
    )
    _save_onnx(graph, path)


def _save_onnx(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


class _Triple(torch.nn.Module):
    def forward(self, x: torch.Tensor, offset: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045 - TorchScript needs Optional
        if offset is None:
            return x * 3
        return x * 3 + offset


PYTHON_MODEL = textwrap.dedent(
    '''\
    """Sample Python model: output = input_data - 1."""

    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "input_data").as_numpy()
                out = pb_utils.Tensor("output", x - 1)
                responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            return responses
    '''
)


def _cpu_instances() -> list[dict]:
    return [{"kind": "KIND_CPU", "count": 1}]


def build_sample_repository(root: Path) -> Path:
    """Write the sample repository under ``root`` and return ``root``."""
    root = Path(root)
    affine = root / "onnx" / "sample_affine"
    _affine_onnx(affine / "1" / "model.onnx")
    # The production config targets a GPU; the CPU variant is what the embedded server reads.
    affine_config = {
        "name": "sample_affine",
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "dynamic_batching": {"max_queue_delay_microseconds": 20000},
        "parameters": {"intra_op_thread_count": {"string_value": "1"}},
    }
    write_config(affine, {**affine_config, "instance_group": [{"kind": "KIND_GPU", "count": 1}]})
    write_config(affine, {**affine_config, "instance_group": _cpu_instances()}, "configs/cpu.pbtxt")

    state = root / "onnx" / "sample_state"
    _state_onnx(state / "1" / "model.onnx")
    write_config(
        state,
        {
            "name": "sample_state",
            "backend": "onnxruntime",
            # input_data's feature axis is left open on purpose: the backend checks it
            # against the ONNX file, so a wrong width reaches the backend's own check.
            "input": [_tensor("input_data", [-1, -1]), _tensor("state_in", [1, FEATURES], True)],
            "output": [_tensor("output", [-1, FEATURES]), _tensor("state_out", [1, FEATURES])],
            "instance_group": _cpu_instances(),
        },
    )

    torch_dir = root / "pytorch" / "sample_torch"
    (torch_dir / "1").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch 2.13 calls jit.script deprecated; TorchScript is what Triton's backend loads.
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(_Triple())
    scripted.save(str(torch_dir / "1" / "model.pt"))
    write_config(
        torch_dir,
        {
            "name": "sample_torch",
            "backend": "pytorch",
            "input": [_tensor("input_data", [-1, FEATURES]), _tensor("offset", [FEATURES], True)],
            "output": [_tensor("output", [-1, FEATURES])],
            "instance_group": _cpu_instances(),
        },
    )

    python_dir = root / "python" / "sample_python"
    (python_dir / "1").mkdir(parents=True, exist_ok=True)
    (python_dir / "1" / "model.py").write_text(PYTHON_MODEL)
    write_config(
        python_dir,
        {
            "name": "sample_python",
            "backend": "python",
            "input": [_tensor("input_data", [-1, FEATURES])],
            "output": [_tensor("output", [-1, FEATURES])],
            "instance_group": _cpu_instances(),
        },
    )

    _write_pipeline(root / "ensemble" / "sample_pipeline")
    LOGGER.info("sample repository written to %s", root)
    return root


def _write_pipeline(folder: Path) -> None:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    steps = [
        ("sample_state", "input_data", "output", "stage1"),
        ("sample_torch", "stage1", "output", "stage2"),
        ("sample_python", "stage2", "output", "output"),
    ]
    write_config(
        folder,
        {
            "name": "sample_pipeline",
            "platform": "ensemble",
            "input": [_tensor("input_data", [-1, FEATURES])],
            "output": [_tensor("output", [-1, FEATURES])],
            "ensemble_scheduling": {
                "step": [
                    {
                        "model_name": model,
                        "model_version": -1,
                        "input_map": {"input_data": source},
                        "output_map": {produced: target},
                    }
                    for model, source, produced, target in steps
                ]
            },
        },
    )


def add_broken_models(root: Path) -> Path:
    """Add two models that cannot load: a config that does not parse, and a missing file.

    ``onnx/broken_config`` has an unreadable ``config.pbtxt``; ``onnx/missing_file`` has a
    valid config but no ``1/model.onnx``.
    """
    broken = Path(root) / "onnx" / "broken_config"
    (broken / "1").mkdir(parents=True, exist_ok=True)
    (broken / "config.pbtxt").write_text('backend: "onnxruntime"\nmax_batch_size: [oops\n')
    missing = Path(root) / "onnx" / "missing_file"
    (missing / "1").mkdir(parents=True, exist_ok=True)
    write_config(
        missing,
        {
            "name": "missing_file",
            "backend": "onnxruntime",
            "input": [_tensor("input_data", [-1, FEATURES])],
            "output": [_tensor("output", [-1, 3])],
            "instance_group": _cpu_instances(),
        },
    )
    return Path(root)
