"""Triton Python model ``custom_logic``: one channel's detection pipeline via BLS, with alerts.

Inputs ``channel_id`` BYTES [1] and ``raw_input`` FP32 [-1, F] (F the channel's width, 25
for SMAP), plus the optional stream state of every detector (``encoder_state``,
``decoder_state`` for OmniAnomaly, ``context`` for TranAD) and ``post_state``
(postprocessing); each comes back as ``<name>_out`` so a client streams chunks by passing
them back; the optional ``end_of_stream`` BOOL [1] marks a stream's last chunk
(postprocessing then confirms its incomplete last batch). Outputs ``final_result``,
``decision``, ``events`` [-1, 3], the channel's ``subsystem`` and each detector's own
``anomaly_score``/``anomaly_detected`` as ``<kind>_score``/``<kind>_detected`` (which
detectors agreed on an event).

Per request: the channel's subsystem, its detector models and the state each carries come
from the SQLite catalog (cached, reread when the file changes); the raw telemetry is
normalised as the ``preprocessing`` model does, Business Logic Scripting (async BLS) calls the
channel's detectors (all at once), and their scores (catalog order) are fused, thresholded and
made events as the ``postprocessing`` model does (with the telemetry value, for its
stuck-value rule). Both stages run in this stub, with those two
models' files (``satwatch.repository.stages``, reread when they change): a BLS call is a round
trip through the server and another stub. Reported events go to the SQLite event log (new
ones also to the webhook, from a background thread). An unknown channel is that request's
``INVALID_ARG`` error naming it, as is bad telemetry or a foreign ``post_state``; a failing
detector is that request's error naming the step, with the step's code.
Parameters: ``satwatch.pipeline.configs``. Metrics (``satwatch.pipeline.metrics``): new events
per channel and subsystem, the fused score's histogram per channel, event-log write and
webhook failures, starts.
"""

import asyncio
import contextlib
import json

import numpy as np
import triton_python_backend_utils as pb_utils

from satwatch.exceptions import SatwatchError
from satwatch.pipeline import metrics, serving
from satwatch.pipeline.catalog import CATALOG_FILE, Catalog
from satwatch.pipeline.configs import event_log_path
from satwatch.pipeline.eventlog import EventLog, WebhookNotifier
from satwatch.pipeline.poststate import stream_id_of
from satwatch.pipeline.serving import StepError
from satwatch.repository.stages import CachedStages


class TritonPythonModel:
    """Catalog lookup, preprocessing, BLS calls to the detectors, postprocessing, event log."""

    def initialize(self, args):
        """Open the catalog and the event log; start the webhook thread when configured."""
        self.metrics = metrics.ModelMetrics(pb_utils, args["model_name"], metrics.CUSTOM_LOGIC)
        self.metrics.increment(metrics.MODEL_STARTS)
        config = json.loads(args["model_config"])
        params = serving.parameters(config)
        self.dtypes = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]
        }
        folder = serving.version_folder(args)
        self.catalog = Catalog(params.get("catalog") or folder / CATALOG_FILE)
        self.log = EventLog(event_log_path(params, folder.parent))
        # The preprocessing and postprocessing models' files, run in this stub: two BLS
        # round trips fewer per request (README, "Benchmark"). The version folder is
        # <repository>/python/custom_logic/<version>.
        self.stages = CachedStages(folder.parents[2])
        with contextlib.suppress(SatwatchError):  # no catalog yet: series come with events
            for entry in map(self.catalog.lookup, self.catalog.channels()):
                self.metrics.prepare_events(entry.channel, entry.subsystem)
                self.metrics.prepare_scores(entry.channel)
        self.notifier = None
        if params.get("webhook_url"):
            self.notifier = WebhookNotifier(
                self.log,
                params["webhook_url"],
                timeout=float(params.get("webhook_timeout") or 2),
                retry_interval=float(params.get("webhook_retry_interval") or 60),
                on_failure=lambda: self.metrics.increment(metrics.WEBHOOK_FAILURES),
            ).start()

    async def _call(self, model, inputs, outputs, passed_on=()):
        tensors = [
            pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in inputs.items() if v is not None
        ]
        request = pb_utils.InferenceRequest(
            model_name=model, inputs=tensors, requested_output_names=list(outputs)
        )
        response = await request.async_exec()
        if response.has_error():
            error = response.error()
            code = serving.step_error_code(pb_utils, error, passed_on)
            raise StepError(f"step {model!r} failed: {error.message()}", code)
        return {o: pb_utils.get_output_tensor_by_name(response, o).as_numpy() for o in outputs}

    async def _answer(self, request):
        channel_tensor = serving.optional_input(pb_utils, request, "channel_id")
        channel = serving.decode_channel(channel_tensor)
        entry = self.catalog.lookup(channel)
        raw = serving.required_input(pb_utils, request, "raw_input")
        stages = self.stages.current()
        normalized = stages.normalise(channel, raw)
        calls = []
        for model in entry.models:
            states = {s: serving.optional_input(pb_utils, request, s) for s in model.states}
            # A front only fills missing states: a chunk carrying them all skips its hop.
            carried = all(value is not None for value in states.values())
            target = model.core if model.core and carried else model.model
            feeds = {"input_data": normalized, **states}
            names = ["anomaly_score", "anomaly_detected", *(f"{s}_out" for s in model.states)]
            calls.append(self._call(target, feeds, names, passed_on=model.states))
        # The detectors run in their own stubs: score with all of them at once.
        answers = await asyncio.gather(*calls)
        outputs, scores = {}, []
        for model, answer in zip(entry.models, answers, strict=True):
            score, detected = answer.pop("anomaly_score"), answer.pop("anomaly_detected")
            scores.append(score)
            outputs |= answer
            # Each detector's own answer, so the caller sees which detectors agreed (only
            # where the config declares it: an older config keeps working).
            if f"{model.detector}_score" in self.dtypes:
                outputs[f"{model.detector}_score"] = score
                outputs[f"{model.detector}_detected"] = detected
        for name in self.dtypes:
            # A detector the catalog gives this channel none of: no score, never detected.
            if name.endswith("_score") and name not in outputs:
                outputs[name] = np.full(raw.shape[0], np.nan, np.float32)
                outputs[name.replace("_score", "_detected")] = np.zeros(raw.shape[0], bool)
        end = serving.optional_input(pb_utils, request, "end_of_stream")
        result = stages.postprocess(
            channel,
            scores,
            serving.optional_input(pb_utils, request, "post_state"),
            end_of_stream=end is not None and bool(end.any()),
            values=raw[:, 0],  # the telemetry value: a frozen one is an anomaly by itself
        )
        self.metrics.observe_scores(result.final, channel)
        outputs["final_result"], outputs["decision"] = result.final, result.decision
        outputs["events"], outputs["post_state_out"] = result.events, result.state.to_array()
        stream_id = stream_id_of(outputs["post_state_out"])
        # Off the event loop: a durable SQLite commit must not hold up the other requests.
        new = []
        if outputs["events"].size:  # most chunks report none: no thread hop for them
            with self.metrics.failures(metrics.EVENTLOG_WRITE_FAILURES):  # counted, then raised
                new = await asyncio.to_thread(
                    self.log.record, channel, entry.subsystem, stream_id, outputs["events"]
                )
        if new:
            self.metrics.count_events(len(new), channel, entry.subsystem)
        if new and self.notifier is not None:
            self.notifier.submit(new)
        outputs["subsystem"] = np.array([entry.subsystem.encode()], dtype=np.object_)
        return pb_utils.InferenceResponse(
            [
                pb_utils.Tensor(n, np.ascontiguousarray(v.astype(self.dtypes[n])))
                for n, v in outputs.items()
            ]
        )

    async def execute(self, requests):
        """One response per request, the requests of a batch served concurrently."""
        return await serving.answer_each(pb_utils, requests, self._answer)

    def finalize(self):
        """Let the webhook thread deliver what is queued, then stop it."""
        if self.notifier is not None:
            self.notifier.close()
