"""Triton Python model ``tranad_sat1``: TranAD's served name, in front of its TorchScript core.

Triton's native PyTorch backend refuses a config with an optional input (server issue 6523),
so the TorchScript model is served as ``tranad_sat1_core`` with ``input_data`` and ``context``
both required. This model keeps the interface clients use: ``input_data`` FP32 [-1, F] and
the optional ``context`` FP32 [9, F] (``context_out`` of the previous chunk). A request
without ``context`` starts a series: the context is its first step repeated, the padding
offline scoring uses, so a plain request scores as the whole series does. It then calls the
core (BLS) and returns its outputs as they are: ``reconstruction``, ``anomaly_score``,
``anomaly_detected``, ``context_out``.

The core's name is the config's ``core_model`` parameter (``<this model>_core`` without it);
``satwatch build`` writes one front per TranAD it serves. Metrics: starts.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from satwatch.pipeline import metrics, serving

CONTEXT = "context"


def start_context(input_data, rows):
    """The context of a series' first chunk: its first step, ``rows`` times."""
    return np.repeat(input_data[:1], rows, axis=0)


class TritonPythonModel:
    """Fill a missing ``context``, then score with the TorchScript core."""

    def initialize(self, args):
        """Read the core's name, the context shape and the outputs from the config."""
        self.metrics = metrics.ModelMetrics(pb_utils, args["model_name"], (metrics.MODEL_STARTS,))
        self.metrics.increment(metrics.MODEL_STARTS)
        config = json.loads(args["model_config"])
        self.core = serving.parameters(config).get("core_model") or f"{args['model_name']}_core"
        context = next(i for i in config["input"] if i["name"] == CONTEXT)
        self.context_rows = int(context["dims"][0])
        self.outputs = [o["name"] for o in config["output"]]

    def _context(self, request, input_data):
        context = serving.optional_input(pb_utils, request, CONTEXT)
        # Triton has checked both shapes against this model's config.
        return start_context(input_data, self.context_rows) if context is None else context

    async def _answer(self, request):
        input_data = serving.required_input(pb_utils, request, "input_data")
        feeds = {"input_data": input_data, CONTEXT: self._context(request, input_data)}
        call = pb_utils.InferenceRequest(
            model_name=self.core,
            inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in feeds.items()],
            requested_output_names=self.outputs,
        )
        response = await call.async_exec()
        if response.has_error():
            error = response.error()
            code = serving.step_error_code(pb_utils, error, passed_on=tuple(feeds))
            raise serving.StepError(f"{self.core}: {error.message()}", code)
        return pb_utils.InferenceResponse(
            [pb_utils.get_output_tensor_by_name(response, name) for name in self.outputs]
        )

    async def execute(self, requests):
        """One response per request, the requests of a batch served concurrently."""
        return await serving.answer_each(pb_utils, requests, self._answer)
