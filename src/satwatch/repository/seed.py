"""The configs of the seed's models, with the tensor names the README's contract gives them.

These functions turn the contract into configs from the templates, for the builder, the
tests and the checked-in ensembles. The detectors' configs are better read from the exported
files (``deploy.onnx_model_config``); the state sizes here are parameters for that reason.

Example::

    configs = seed_model_configs(encoder_hidden=500, decoder_hidden=500)
    configs["SMAP_E-1"].input[1].name   # 'encoder_state'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from satwatch.pipeline.configs import CUSTOM_LOGIC_PARAMETERS, DETECTORS
from satwatch.repository.config import config_from_template, output, tensor

LOGGER = logging.getLogger(__name__)

FEATURES = 25
"""SMAP rows: the telemetry value and 24 one-hot command columns."""

TRANAD_CONTEXT = 9
"""Steps of context TranAD needs before a chunk (its 10-step window minus one)."""


def detector_outputs() -> list[mc.ModelOutput]:
    """The three outputs every detector serves."""
    return [
        output("reconstruction", "FP32", [-1, FEATURES]),
        output("anomaly_score", "FP32", [-1]),
        output("anomaly_detected", "BOOL", [-1]),
    ]


def omnianomaly_config(
    name: str, *, encoder_hidden: int, decoder_hidden: int, repository: Path | None = None
) -> mc.ModelConfig:
    """``onnx/SMAP_<chan>``: ``input_data`` plus the optional GRU states, and the states out."""
    return config_from_template(
        "onnx",
        repository=repository,
        name=name,
        input=[
            tensor("input_data", "FP32", [-1, FEATURES]),
            tensor("encoder_state", "FP32", [1, encoder_hidden], optional=True),
            tensor("decoder_state", "FP32", [1, decoder_hidden], optional=True),
        ],
        output=[
            *detector_outputs(),
            output("encoder_state_out", "FP32", [1, encoder_hidden]),
            output("decoder_state_out", "FP32", [1, decoder_hidden]),
        ],
    )


def tranad_config(name: str = "tranad_sat1", repository: Path | None = None) -> mc.ModelConfig:
    """``pytorch/tranad_sat1``: ``input_data`` plus the optional context, and the context out."""
    return config_from_template(
        "pytorch",
        repository=repository,
        name=name,
        input=[
            tensor("input_data", "FP32", [-1, FEATURES]),
            tensor("context", "FP32", [TRANAD_CONTEXT, FEATURES], optional=True),
        ],
        output=[*detector_outputs(), output("context_out", "FP32", [TRANAD_CONTEXT, FEATURES])],
    )


def preprocessing_config(repository: Path | None = None) -> mc.ModelConfig:
    """``python/preprocessing``: ``raw_input`` (+ optional ``channel_id``) -> ``normalized``."""
    return config_from_template(
        "python",
        repository=repository,
        name="preprocessing",
        input=[
            tensor("raw_input", "FP32", [-1, FEATURES]),
            tensor("channel_id", "STRING", [1], optional=True),
        ],
        output=[output("normalized", "FP32", [-1, FEATURES])],
    )


POSTPROCESSING_PARAMETERS = {
    "threshold_policy": "dynamic",
    "fusion": "max",
    "dt_span": "30",
    "dt_window": "2100",
    "dt_batch": "10",
    "dt_z_min": "2.5",
    "dt_z_max": "12.0",
    "dt_z_step": "0.5",
    "dt_min_decrease": "0.13",
    "dt_max_sequences": "5",
    "dt_floor": "max",
    "dt_burn_in": "50",
    "merge_gap": "100",
    "min_event_length": "1",
}
"""Postprocessing's own settings over ``common.pbtxt``'s: the dynamic threshold policy.

Chosen on the 27 non-seed SMAP channels only by ``benchmarks/quality_study.py`` (its
RECOMMENDED configuration): training z-scores fused with max, EWMA
span 30, Telemanom's window of 2100 steps re-thresholded every 10 steps, z 2.5..12 step 0.5,
pruning p 0.13, at most 5 runs, the channel's floor at the largest smoothed fused training
score (nothing training saw alarms), no alarm in a stream's first 50 steps, events merged
across gaps of up to 100 steps, no minimum length. Events are made of the decisions confirmed
at the end of each batch of 10; the per-step ``decision`` is the on-arrival alarm, which
cannot wait (it alone would score 0.655).
"""


def postprocessing_config(repository: Path | None = None) -> mc.ModelConfig:
    """``python/postprocessing``: scores (+ channel, thresholds, state) -> fused result."""
    return config_from_template(
        "python",
        repository=repository,
        name="postprocessing",
        parameters=POSTPROCESSING_PARAMETERS,
        input=[
            tensor("score1", "FP32", [-1]),
            tensor("score2", "FP32", [-1], optional=True),
            tensor("channel_id", "STRING", [1], optional=True),
            tensor("thresholds", "FP32", [-1], optional=True),
            tensor("post_state", "FP32", [-1], optional=True),
            tensor("end_of_stream", "BOOL", [1], optional=True),
        ],
        output=[
            output("final_result", "FP32", [-1]),
            output("decision", "BOOL", [-1]),
            output("events", "FP32", [-1, 3]),
            output("post_state_out", "FP32", [-1]),
        ],
    )


def seed_model_configs(
    *, encoder_hidden: int, decoder_hidden: int, repository: Path | None = None
) -> dict[str, mc.ModelConfig]:
    """The four models the seed's ensembles chain, keyed by name."""
    return {
        "preprocessing": preprocessing_config(repository),
        "SMAP_E-1": omnianomaly_config(
            "SMAP_E-1",
            encoder_hidden=encoder_hidden,
            decoder_hidden=decoder_hidden,
            repository=repository,
        ),
        "tranad_sat1": tranad_config(repository=repository),
        "postprocessing": postprocessing_config(repository),
    }


STATE_TENSORS = {
    "encoder_state": "FP32",
    "decoder_state": "FP32",
    "context": "FP32",
    "post_state": "FP32",
}
"""Stream state passed through ``custom_logic``: in as ``X`` (optional), out as ``X_out``."""


def custom_logic_config(
    repository: Path | None = None, parameters: Mapping[str, str] | None = None
) -> mc.ModelConfig:
    """``python/custom_logic``: ``channel_id`` + ``raw_input`` (+ states, ``end_of_stream``)
    -> results + states.

    Outputs: ``final_result``, ``decision``, ``events``, ``subsystem``, then per detector of
    :data:`DETECTORS` its ``anomaly_score`` and ``anomaly_detected`` as ``<d>_score`` and
    ``<d>_detected``, then the ``*_out`` states.
    """
    inputs = [
        tensor("channel_id", "STRING", [1]),
        tensor("raw_input", "FP32", [-1, FEATURES]),
    ]
    outputs = [
        output("final_result", "FP32", [-1]),
        output("decision", "BOOL", [-1]),
        output("events", "FP32", [-1, 3]),
        output("subsystem", "STRING", [1]),
    ]
    for detector in DETECTORS:
        # Each detector's own answer, so a caller can tell which detectors agreed.
        outputs.append(output(f"{detector}_score", "FP32", [-1]))
        outputs.append(output(f"{detector}_detected", "BOOL", [-1]))
    for name, dtype in STATE_TENSORS.items():
        dims = [-1] if name == "post_state" else [-1, -1]
        inputs.append(tensor(name, dtype, dims, optional=True))
        outputs.append(output(f"{name}_out", dtype, dims))
    # True on a stream's last chunk, passed on to postprocessing (its incomplete last batch).
    inputs.append(tensor("end_of_stream", "BOOL", [1], optional=True))
    return config_from_template(
        "python",
        repository=repository,
        name="custom_logic",
        input=inputs,
        output=outputs,
        parameters={**CUSTOM_LOGIC_PARAMETERS, **dict(parameters or {})},
    )
