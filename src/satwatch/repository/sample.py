"""A small repository shaped like the real one, with stand-in models, for tests and trials.

The stand-ins have the contracts' tensors and nothing more: ``SMAP_E-1`` is an ONNX graph
(score = mean over features, states passed through), ``tranad_sat1_core`` a scripted module
with the served ``forward`` signature behind the project's ``tranad_sat1`` front,
``preprocessing`` the identity, ``postprocessing`` the max of the scores with a step counter
as its state. The two ensembles are the project's
checked-in configs, so serving this repository checks those configs in the real server.

Example::

    root = build_sample_repository(Path("/tmp/sample"))
    validate_repository(root)   # []
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

from satwatch.onnx_defaults import add_zero_defaults
from satwatch.paths import PROJECT_ROOT
from satwatch.repository.config import write_model_configs
from satwatch.repository.ensembles import STEP_FOLDERS
from satwatch.repository.seed import seed_model_configs, tranad_core_config

LOGGER = logging.getLogger(__name__)

PROJECT_REPOSITORY = PROJECT_ROOT / "triton-repository"
HIDDEN = 4
"""State size of the stand-in ONNX detector."""

PREPROCESSING_PY = '''\
"""Stand-in preprocessing: normalized = raw_input."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "raw_input").as_numpy()
            normalized = pb_utils.Tensor("normalized", raw.astype(np.float32))
            responses.append(pb_utils.InferenceResponse([normalized]))
        return responses
'''

POSTPROCESSING_PY = '''\
"""Stand-in postprocessing: final_result = max of the scores; post_state counts steps."""

import numpy as np
import triton_python_backend_utils as pb_utils


def _get(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            fused = _get(request, "score1")
            other = _get(request, "score2")
            if other is not None:
                fused = np.maximum(fused, other)
            state = _get(request, "post_state")
            seen = 0.0 if state is None else float(state[0])
            outputs = [
                pb_utils.Tensor("final_result", fused.astype(np.float32)),
                pb_utils.Tensor("decision", fused > 1.0),
                pb_utils.Tensor("events", np.zeros((0, 3), np.float32)),
                pb_utils.Tensor("post_state_out", np.array([seen + len(fused)], np.float32)),
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
'''


def make_detector_onnx(
    path: Path, hidden: int = HIDDEN, dynamic_state: bool = False, state_defaults: bool = True
) -> Path:
    """Write an ONNX graph with the OmniAnomaly served signature (score = feature mean).

    ``state_defaults``: give the (static) states zero defaults, as the exporters do.
    """
    import onnx
    from onnx import TensorProto, helper

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
    # IR 8 / opset 17: what the project's exporter writes and ONNX Runtime 1.18+ reads.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    if state_defaults and not dynamic_state:
        add_zero_defaults(path, ["encoder_state", "decoder_state"])
    return path


def make_tranad_torchscript(path: Path) -> Path:
    """Write a scripted module with TranAD's served signature (score = feature mean)."""
    import torch

    class TinyTranAD(torch.nn.Module):
        def forward(
            self,
            input_data: torch.Tensor,
            context: torch.Tensor | None = None,
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            steps = 9  # TRANAD_CONTEXT; TorchScript cannot close over a global
            past = context if context is not None else input_data[:1].repeat(steps, 1)
            score = input_data.mean(dim=1)
            return input_data, score, score > 0.5, torch.cat([past, input_data])[-steps:]

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what Triton runs
        torch.jit.script(TinyTranAD()).save(str(path))
    return path


def build_sample_repository(root: Path) -> Path:
    """Write the sample repository at ``root`` (configs copied from the project) and return it."""
    root = Path(root)
    shutil.copytree(PROJECT_REPOSITORY / "configs", root / "configs")
    configs = seed_model_configs(encoder_hidden=HIDDEN, decoder_hidden=HIDDEN, repository=root)
    for name, config in configs.items():
        write_model_configs(root / STEP_FOLDERS[name] / name, config)
    make_detector_onnx(root / "onnx" / "SMAP_E-1" / "1" / "model.onnx")
    # TranAD is served through its Python front, the project's own, onto the stand-in core.
    write_model_configs(root / "pytorch" / "tranad_sat1_core", tranad_core_config(repository=root))
    make_tranad_torchscript(root / "pytorch" / "tranad_sat1_core" / "1" / "model.pt")
    front = PROJECT_REPOSITORY / "python" / "tranad_sat1" / "1" / "model.py"
    (root / "python" / "tranad_sat1" / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(front, root / "python" / "tranad_sat1" / "1" / "model.py")
    for name, source in (
        ("preprocessing", PREPROCESSING_PY),
        ("postprocessing", POSTPROCESSING_PY),
    ):
        model_py = root / "python" / name / "1" / "model.py"
        model_py.parent.mkdir(parents=True, exist_ok=True)
        model_py.write_text(source)
    for name in ("multi_detector", "anomaly_pipeline"):
        shutil.copytree(PROJECT_REPOSITORY / "ensemble" / name, root / "ensemble" / name)
    LOGGER.info("wrote the sample repository at %s", root)
    return root
