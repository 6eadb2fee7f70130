"""The served ONNX file of a streaming detector: written from its module, scored in process.

For the detectors whose ``export_trained`` writes one ONNX graph with zero state defaults
(nearest window, next-value predictor):

* :func:`export_stream_graph` writes the module as the served graph: ``input_data`` and the
  states in; ``reconstruction``, ``anomaly_score``, ``anomaly_detected`` and each state's
  ``<state>_out`` out; the step axis dynamic; every state given a zero default;
* :func:`fresh_stream_scorer` scores a series from a fresh stream by sending ``input_data``
  alone, as a request without state is.

Example::

    export_stream_graph(model, (rows, *zero_states), path, ("history", "steps_seen"))
    score = fresh_stream_scorer(Path("onnx/nearest_SMAP_E-1/1/model.onnx"))
    scores = score(test)        # (T,)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from satwatch.exceptions import ModelError
from satwatch.onnx_defaults import add_zero_defaults

OPSET = 17
OUTPUTS = ("reconstruction", "anomaly_score", "anomaly_detected")
"""The served outputs before the states', in the order the module returns them."""


def export_stream_graph(
    module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, states: Sequence[str]
) -> Path:
    """Write ``module`` (called as ``module(rows, *states)``) as the served graph at ``path``.

    ``example`` is the rows and one tensor of each state's static shape; returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = {0: "steps"}
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter's notices about itself, and tracing's about Python branches
        # that the served shapes never take.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=["input_data", *states],
            output_names=[*OUTPUTS, *(f"{state}_out" for state in states)],
            dynamic_axes={name: steps for name in ("input_data", *OUTPUTS)},
            opset_version=OPSET,
            dynamo=False,
        )
    # Zero states by default: a request without them scores from a fresh stream.
    return add_zero_defaults(path, states)


def fresh_stream_scorer(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """``score(series)``: the graph in ONNX Runtime, one thread, from a fresh stream.

    Raises:
        ModelError: If the file is missing.
    """
    if not Path(path).is_file():
        raise ModelError(f"exported detector not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # not the warning that state defaults are initializers
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def score_series(series: np.ndarray) -> np.ndarray:
        # The states left out: the build gives them zero defaults, a fresh stream.
        feeds = {"input_data": np.ascontiguousarray(series, dtype=np.float32)}
        return session.run(["anomaly_score"], feeds)[0]

    return score_series
