"""Triton Python model ``preprocessing``: raw telemetry -> normalised steps.

Input ``raw_input`` FP32 [-1, F] and the optional ``channel_id`` BYTES [1] (the config's
``default_channel``, E-1, when absent, as in the seed's ensembles); output ``normalized``
FP32 [-1, F]. F is the channel's training width (25 for SMAP, 55 for MSL; the config says
-1 when its channels' widths differ): a row of another width is refused with
``INVALID_ARG`` naming the channel, the width expected and the shape sent. The per-channel
training statistics are ``normalisation.json`` in this version folder (written by
``satwatch build``). NaN/Inf telemetry is refused with
``INVALID_ARG`` naming the rows (policy: ``satwatch.pipeline.preprocess``); the other
requests of the batch still answer.

Requests of one channel are normalised together: concatenated, one pass, split back. Metrics
(``satwatch.pipeline.metrics``): starts.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from satwatch.pipeline import metrics, serving
from satwatch.pipeline.preprocess import STATS_FILE, NormalisationTable, check_raw


class TritonPythonModel:
    """Per-channel min-max normalisation with the detectors' statistics."""

    def initialize(self, args):
        """Read the statistics and the output dtype."""
        self.metrics = metrics.ModelMetrics(pb_utils, args["model_name"], metrics.PREPROCESSING)
        self.metrics.increment(metrics.MODEL_STARTS)
        config = json.loads(args["model_config"])
        self.dtype = serving.output_dtype(pb_utils, config, "normalized")
        params = serving.parameters(config)
        self.default_channel = params.get("default_channel") or serving.DEFAULT_CHANNEL
        self.table = NormalisationTable.load(serving.version_folder(args) / STATS_FILE)

    def execute(self, requests):
        """One response per request; one normalisation pass per channel."""
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                channel = serving.channel_of(pb_utils, request, self.default_channel)
                stats = self.table.get(channel)
                raw = serving.required_input(pb_utils, request, "raw_input")
                raw = check_raw(raw, stats.n_features, channel)
                groups.setdefault(channel, []).append((index, raw))
            except Exception as error:  # noqa: BLE001  one bad request never fails the others
                responses[index] = serving.error_response(pb_utils, error)
        for channel, members in groups.items():
            normalised = self.table.get(channel).apply(np.concatenate([raw for _, raw in members]))
            sizes = [raw.shape[0] for _, raw in members]
            if normalised.shape[0] != sum(sizes):
                raise pb_utils.TritonModelException(
                    f"preprocessing: expected {sum(sizes)} rows back, got {normalised.shape[0]}"
                )
            parts = np.split(normalised.astype(self.dtype), np.cumsum(sizes)[:-1])
            for (index, _), part in zip(members, parts, strict=True):
                tensor = pb_utils.Tensor("normalized", np.ascontiguousarray(part))
                responses[index] = pb_utils.InferenceResponse([tensor])
        return responses

    def finalize(self):
        """Nothing to release."""
        self.table = None
