"""satwatch's Python-based ``onnxruntime`` backend for Triton's Python backend stub.

Triton resolves ``backend: "onnxruntime"`` to ``<backend-dir>/onnxruntime/model.py`` when no
native ``libtriton_onnxruntime.so`` is there. This file loads ``<version>/model.onnx`` (or the
config's ``default_model_filename``) into ONNX Runtime on the CPU, with thread counts from the
config's ``parameters`` (``intra_op_thread_count``, ``inter_op_thread_count``).
"""

from __future__ import annotations

import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from satwatch.pipeline import metrics
from satwatch.server import backend_common as common

DEFAULT_FILENAME = "model.onnx"


def _dims(value_info) -> list[int]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else -1 for d in shape.dim]


def _entry(value_info, batched: bool) -> dict:
    """Config entry of an ``onnx.ValueInfoProto``."""
    from onnx import helper  # noqa: PLC0415 - only auto-complete needs onnx; keeps stubs light

    dims = _dims(value_info)
    dtype = helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)
    return {
        "name": value_info.name,
        "data_type": common.triton_type(dtype),
        # With max_batch_size > 0 the config's dims leave out the batch axis.
        "dims": dims[1:] if batched else dims,
    }


class TritonPythonModel:
    """One ONNX model served through ONNX Runtime's CPU provider."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        """Fill inputs and outputs from the ONNX graph when the config leaves them out."""
        config = auto_complete_model_config.as_dict()
        if config.get("input") and config.get("output"):
            return auto_complete_model_config
        import onnx  # noqa: PLC0415 - only auto-complete needs onnx; keeps stubs light

        path = common.locate_model_file(config, DEFAULT_FILENAME)
        graph = onnx.load(str(path), load_external_data=False).graph
        initializers = {tensor.name for tensor in graph.initializer}
        batched = config.get("max_batch_size", 0) > 0
        if not config.get("input"):
            # A graph input with an initializer is optional: the initializer is its default.
            for value in graph.input:
                entry = _entry(value, batched)
                if value.name in initializers:
                    entry["optional"] = True
                auto_complete_model_config.add_input(entry)
        if not config.get("output"):
            for value in graph.output:
                auto_complete_model_config.add_output(_entry(value, batched))
        return auto_complete_model_config

    def initialize(self, args):
        """Open the ONNX Runtime session and check the config against the model's tensors."""
        # A start counted per model: a count above the instances means a stub was restarted.
        self.metrics = metrics.ModelMetrics(pb_utils, args["model_name"], (metrics.MODEL_STARTS,))
        self.metrics.increment(metrics.MODEL_STARTS)
        config = common.load_config(args)
        self.name = args["model_name"]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        path = common.model_file(
            args["model_repository"], args["model_version"], config, DEFAULT_FILENAME
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = common.parameter(config, "intra_op_thread_count", 0)
        options.inter_op_num_threads = common.parameter(config, "inter_op_thread_count", 0)
        # Errors only: a state input's zero default is an initializer on purpose, and ONNX
        # Runtime would warn about each one at every load.
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        # As the native backend sees them: the required inputs, and those whose default is
        # an initializer (the detectors' zero states), which a request may leave out.
        nodes = [*self.session.get_inputs(), *self.session.get_overridable_initializers()]
        model_inputs = {node.name: node for node in nodes}
        self.required = {node.name for node in self.session.get_inputs()}
        self.file_name = path.name
        model_outputs = {node.name for node in self.session.get_outputs()}
        self.outputs = common.output_specs(config)
        for spec in self.outputs:
            if spec.name not in model_outputs:
                raise ValueError(
                    f"model {self.name!r}: config output {spec.name!r} is not in {path.name}; "
                    f"expected one of {sorted(model_outputs)}"
                )
        self.inputs = []
        for spec in common.input_specs(config):
            if spec.name not in model_inputs:
                raise ValueError(
                    f"model {self.name!r}: config input {spec.name!r} is not in {path.name}; "
                    f"expected one of {sorted(model_inputs)}"
                )
            node = model_inputs[spec.name]
            shape = [d if isinstance(d, int) and d >= 0 else -1 for d in node.shape]
            self.inputs.append(self._refine(spec, shape))
        self.output_names = [spec.name for spec in self.outputs]

    def _refine(self, spec: common.TensorSpec, shape: list[int]) -> common.TensorSpec:
        """Tighten the config's -1 dims with the model's static ones; reject contradictions."""
        model_dims = shape[1:] if self.max_batch_size > 0 else shape
        if len(model_dims) != len(spec.dims):
            raise ValueError(
                f"model {self.name!r}, input {spec.name!r}: config dims {list(spec.dims)}, "
                f"model dims {model_dims}"
            )
        dims = []
        for configured, actual in zip(spec.dims, model_dims, strict=True):
            if configured != -1 and actual != -1 and configured != actual:
                raise ValueError(
                    f"model {self.name!r}, input {spec.name!r}: config dims "
                    f"{list(spec.dims)}, model dims {model_dims}"
                )
            dims.append(actual if configured == -1 else configured)
        return common.TensorSpec(spec.name, spec.dtype, tuple(dims), spec.optional)

    def _run(self, inputs: common.Inputs) -> dict:
        # Only the inputs the request carries, as the native backend passes them: ONNX Runtime
        # gives a left-out state its default, and names a left-out input that has none.
        feed = {name: array for name, array in inputs.items() if array is not None}
        missing = sorted(self.required - feed.keys())
        if missing:
            raise common.RequestError(
                f"model {self.name!r}: input {', '.join(map(repr, missing))} left out, and "
                f"{self.file_name} gives it no default; send it, or rebuild the model with "
                "`satwatch build` (which gives every state input a zero default)"
            )
        values = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, values, strict=True))

    def execute(self, requests):
        """Answer every request: one ONNX Runtime run for the batch, one error per bad request."""
        return common.answer(pb_utils, requests, self)

    def finalize(self):
        """Release the session."""
        self.session = None
