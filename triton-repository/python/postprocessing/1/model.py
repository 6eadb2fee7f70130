"""Triton Python model ``postprocessing``: detector scores -> fused score, decisions, events.

Inputs ``score1`` FP32 [-1] and optional ``score2``, ``score3``... (one per detector, in the
order of the catalog: ``score1`` OmniAnomaly, ``score2`` TranAD),
``channel_id`` BYTES [1] (picks the thresholds; the config's ``default_channel``, E-1, when
absent), ``thresholds`` FP32 [-1] (one per score, or (threshold, baseline) pairs; overrides
the shipped ones), ``post_state`` FP32 [-1] (what the previous chunk returned) and
``end_of_stream`` BOOL [1] (true on a stream's last chunk: the dynamic policy confirms its
incomplete last batch too) and ``telemetry`` FP32 [-1] (each step's telemetry value: with the
dynamic policy a value frozen past the channel's limit is anomalous whatever the scores;
without it that rule is off).
Outputs ``final_result`` (smoothed fused score), ``decision``, ``events`` [-1, 3]
(start, end, peak) and ``post_state_out``. The threshold policy (``ratio`` or ``dynamic``),
fusion, smoothing and event rules come from the config ``parameters``; the stages are
``satwatch.pipeline.postprocess``. Thresholds and training statistics per channel are
``thresholds.json`` in this version folder (written by ``satwatch build``). The dynamic
policy always uses the channel's (``channel_id``, else ``default_channel``); given
``thresholds`` apply to the ``ratio`` policy.

Each request is its own stream (its own state), so requests are processed one by one; the
work per request is a few vector operations. Metrics (``satwatch.pipeline.metrics``): the
fused score's histogram per channel (``other`` for a channel without shipped thresholds), starts.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from satwatch.pipeline import metrics, serving
from satwatch.pipeline.calibration import select_thresholds
from satwatch.pipeline.calibration_file import THRESHOLDS_FILE, load_thresholds
from satwatch.pipeline.postprocess import PostSettings, postprocess
from satwatch.pipeline.poststate import PostState

OUTPUTS = ("final_result", "decision", "events", "post_state_out")


class TritonPythonModel:
    """Threshold-normalised fusion, causal smoothing and event extraction."""

    def initialize(self, args):
        """Read the settings, the shipped thresholds and the output dtypes."""
        self.metrics = metrics.ModelMetrics(pb_utils, args["model_name"], metrics.POSTPROCESSING)
        self.metrics.increment(metrics.MODEL_STARTS)
        config = json.loads(args["model_config"])
        params = serving.parameters(config)
        self.settings = PostSettings.from_parameters(params)
        self.default_channel = params.get("default_channel") or serving.DEFAULT_CHANNEL
        self.dtypes = {name: serving.output_dtype(pb_utils, config, name) for name in OUTPUTS}
        # score1, score2, ...: as many as the config declares (one per detector), in order.
        self.score_names = [i["name"] for i in config["input"] if i["name"].startswith("score")]
        self.thresholds = load_thresholds(serving.version_folder(args) / THRESHOLDS_FILE)
        for channel in (*self.thresholds, metrics.OTHER_CHANNEL):
            self.metrics.prepare_scores(channel)

    def _thresholds(self, request, count, channel):
        given = serving.optional_input(pb_utils, request, "thresholds")
        dynamic = self.settings.threshold_policy == "dynamic"
        return select_thresholds(self.thresholds, count, channel, given, dynamic)

    def _answer(self, request):
        scores = [serving.required_input(pb_utils, request, self.score_names[0])]
        for name in self.score_names[1:]:
            score = serving.optional_input(pb_utils, request, name)
            if score is not None:
                scores.append(score)
        state = serving.optional_input(pb_utils, request, "post_state")
        if state is not None:
            dynamic = self.settings.threshold_policy == "dynamic"
            state = PostState.from_array(state, self.settings.smoothing_window, dynamic)
        end = serving.optional_input(pb_utils, request, "end_of_stream")
        last = end is not None and bool(end.any())
        channel = serving.channel_of(pb_utils, request, self.default_channel)
        thresholds = self._thresholds(request, len(scores), channel)
        telemetry = serving.optional_input(pb_utils, request, "telemetry")
        result = postprocess(scores, thresholds, self.settings, state, last, telemetry)
        known = channel if channel in self.thresholds else metrics.OTHER_CHANNEL
        self.metrics.observe_scores(result.final, known)
        values = {
            "final_result": result.final,
            "decision": result.decision,
            "events": result.events,
            "post_state_out": result.state.to_array(),
        }
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(values[name].astype(self.dtypes[name])))
            for name in OUTPUTS
        ]
        return pb_utils.InferenceResponse(tensors)

    def execute(self, requests):
        """One response per request; a bad request gets its own INVALID_ARG error."""
        responses = []
        for request in requests:
            try:
                responses.append(self._answer(request))
            except Exception as error:  # noqa: BLE001  one bad request never fails the others
                responses.append(serving.error_response(pb_utils, error))
        return responses

    def finalize(self):
        """Nothing to release."""
        self.thresholds = None
