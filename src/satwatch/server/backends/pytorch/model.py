"""satwatch's Python-based ``pytorch`` backend for Triton's Python backend stub.

Triton resolves ``backend: "pytorch"`` to ``<backend-dir>/pytorch/model.py`` when no native
``libtriton_pytorch.so`` is there. This file loads ``<version>/model.pt`` (or the config's
``default_model_filename``) with ``torch.jit.load`` and runs it on the CPU in inference mode.
Inputs are passed positionally in the config's order; an optional input left out is passed
as ``None``. The module may return one tensor, a tuple/list (in the config's output order)
or a dict keyed by output name. Threads come from the config's ``parameters``
(``INTRA_OP_THREAD_COUNT``, ``INTER_OP_THREAD_COUNT``, the keys of Triton's native libtorch
backend, so one config serves both; the lower-case spellings are accepted too).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from satwatch.pipeline import metrics
from satwatch.server import backend_common as common

DEFAULT_FILENAME = "model.pt"


class TritonPythonModel:
    """One TorchScript module served on the CPU."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        """Keep the config as written: a TorchScript file names no tensors, so it must."""
        config = auto_complete_model_config.as_dict()
        for field in ("input", "output"):
            if not config.get(field):
                raise ValueError(
                    f"model {config['name']!r}: expected the {field}s declared in config.pbtxt "
                    f"(a TorchScript file carries no tensor names), got none"
                )
        return auto_complete_model_config

    def initialize(self, args):
        """Load the TorchScript module and set the thread counts."""
        # A start counted per model: a count above the instances means a stub was restarted.
        self.metrics = metrics.ModelMetrics(pb_utils, args["model_name"], (metrics.MODEL_STARTS,))
        self.metrics.increment(metrics.MODEL_STARTS)
        config = common.load_config(args)
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.inputs = common.input_specs(config)
        self.outputs = common.output_specs(config)
        intra = common.parameter(config, "INTRA_OP_THREAD_COUNT", 0) or common.parameter(
            config, "intra_op_thread_count", 0
        )
        inter = common.parameter(config, "INTER_OP_THREAD_COUNT", 0) or common.parameter(
            config, "inter_op_thread_count", 0
        )
        if intra > 0:
            torch.set_num_threads(intra)
        if inter > 0:
            # Only settable once per process, before any inter-op work.
            with contextlib.suppress(RuntimeError):
                torch.set_num_interop_threads(inter)
        path = common.model_file(
            args["model_repository"], args["model_version"], config, DEFAULT_FILENAME
        )
        self.module = torch.jit.load(str(path), map_location="cpu")
        self.module.eval()

    def _run(self, inputs: common.Inputs) -> dict[str, np.ndarray]:
        # Copies: the request buffers are read-only, which torch.from_numpy warns about.
        args = [None if array is None else torch.tensor(array) for array in inputs.values()]
        with torch.inference_mode():
            produced = self.module(*args)
        names = [spec.name for spec in self.outputs]
        if isinstance(produced, torch.Tensor):
            produced = (produced,)
        if isinstance(produced, dict):
            return {name: tensor.numpy() for name, tensor in produced.items()}
        if len(produced) != len(names):
            raise RuntimeError(
                f"expected {len(names)} outputs {names} from the module, got {len(produced)}"
            )
        return {name: tensor.numpy() for name, tensor in zip(names, produced, strict=True)}

    def execute(self, requests):
        """Answer every request: one module call for the batch, one error per bad request."""
        return common.answer(pb_utils, requests, self)

    def finalize(self):
        """Drop the module."""
        self.module = None
