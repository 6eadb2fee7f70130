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

from satwatch.detectors import registry
from satwatch.pipeline.configs import CUSTOM_LOGIC_PARAMETERS
from satwatch.repository.config import config_from_template, output, tensor

LOGGER = logging.getLogger(__name__)

FEATURES = 25
"""SMAP rows: the telemetry value and 24 one-hot command columns (the seed's width; every
config function takes ``features`` for another spacecraft's, ``-1`` where one model serves
spacecraft of different widths)."""

TRANAD_CONTEXT = 9
"""Steps of context TranAD needs before a chunk (its 10-step window minus one)."""


def detector_outputs(features: int = FEATURES) -> list[mc.ModelOutput]:
    """The three outputs every detector serves (rows of ``features`` columns)."""
    return [
        output("reconstruction", "FP32", [-1, features]),
        output("anomaly_score", "FP32", [-1]),
        output("anomaly_detected", "BOOL", [-1]),
    ]


def detector_config(
    template: str,
    name: str,
    states: Mapping[str, list[int]],
    repository: Path | None = None,
    *,
    optional_states: bool = True,
    features: int = FEATURES,
) -> mc.ModelConfig:
    """A served detector: ``input_data`` plus its states; the outputs and states out.

    Args:
        template: The config template (``onnx``, ``pytorch``, or ``python`` for a front).
        name: The served model name.
        states: State input name -> dims; each comes back as ``<name>_out``.
        repository: The repository whose ``configs/templates`` apply.
        optional_states: False for a backend that refuses optional inputs (a front's core).
        features: The width of its rows (the data's: 25 for SMAP, 55 for MSL).
    """
    return config_from_template(
        template,
        repository=repository,
        name=name,
        input=[
            tensor("input_data", "FP32", [-1, features]),
            *(
                tensor(state, "FP32", dims, optional=optional_states)
                for state, dims in states.items()
            ),
        ],
        output=[
            *detector_outputs(features),
            *(output(f"{state}_out", "FP32", dims) for state, dims in states.items()),
        ],
    )


def omnianomaly_config(
    name: str, *, encoder_hidden: int, decoder_hidden: int, repository: Path | None = None
) -> mc.ModelConfig:
    """``onnx/SMAP_<chan>``: ``input_data`` plus the optional GRU states, and the states out."""
    states = {"encoder_state": [1, encoder_hidden], "decoder_state": [1, decoder_hidden]}
    return detector_config("onnx", name, states, repository)


def tranad_config(
    name: str = "tranad_sat1", repository: Path | None = None, features: int = FEATURES
) -> mc.ModelConfig:
    """``python/tranad_sat1``, TranAD's front: ``input_data`` plus the optional context."""
    states = {"context": [TRANAD_CONTEXT, features]}
    return detector_config("python", name, states, repository, features=features)


def tranad_core_config(
    name: str = "tranad_sat1_core", repository: Path | None = None, features: int = FEATURES
) -> mc.ModelConfig:
    """``pytorch/tranad_sat1_core``, the TorchScript behind the front: context required."""
    return detector_config(
        "pytorch",
        name,
        {"context": [TRANAD_CONTEXT, features]},
        repository,
        optional_states=False,
        features=features,
    )


def preprocessing_config(
    repository: Path | None = None, features: int = FEATURES
) -> mc.ModelConfig:
    """``python/preprocessing``: ``raw_input`` (+ optional ``channel_id``) -> ``normalized``.

    ``features`` is the width of every channel it normalises, or ``-1`` when they differ
    (it then checks each row against its channel's training width itself).
    """
    return config_from_template(
        "python",
        repository=repository,
        name="preprocessing",
        input=[
            tensor("raw_input", "FP32", [-1, features]),
            tensor("channel_id", "STRING", [1], optional=True),
        ],
        output=[output("normalized", "FP32", [-1, features])],
    )


def score_inputs() -> list[str]:
    """Postprocessing's score inputs, one per registered detector in order (at least the
    seed's ``score1`` and ``score2``, which ``multi_detector`` feeds)."""
    return [f"score{i + 1}" for i in range(max(2, len(registry.detectors())))]


def postprocessing_config(repository: Path | None = None) -> mc.ModelConfig:
    """``python/postprocessing``: scores (+ channel, thresholds, state) -> fused result.

    Its served settings are the ``parameters`` of ``configs/templates/postprocessing.pbtxt``.

    ``score1`` is required; the others are optional, so a channel fuses the detectors it has.
    """
    scores = score_inputs()
    return config_from_template(
        "postprocessing",
        repository=repository,
        name="postprocessing",
        input=[
            tensor(scores[0], "FP32", [-1]),
            *(tensor(name, "FP32", [-1], optional=True) for name in scores[1:]),
            tensor("channel_id", "STRING", [1], optional=True),
            tensor("thresholds", "FP32", [-1], optional=True),
            tensor("post_state", "FP32", [-1], optional=True),
            tensor("end_of_stream", "BOOL", [1], optional=True),
            # The telemetry value of each step, for the stuck-value rule (pipeline/stuck.py).
            tensor("telemetry", "FP32", [-1], optional=True),
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
    """The four models the seed's ensembles chain, keyed by name (``tranad_sat1`` is TranAD's
    Python front; :func:`tranad_core_config` is the model behind it)."""
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


def stream_states() -> list[str]:
    """The stream state ``custom_logic`` passes through: every registered detector's, then
    postprocessing's ``post_state``; each comes in as ``X`` (optional) and out as ``X_out``."""
    names = [state for detector in registry.detectors() for state in detector.states]
    return [*dict.fromkeys(names), "post_state"]


def custom_logic_config(
    repository: Path | None = None,
    parameters: Mapping[str, str] | None = None,
    features: int = FEATURES,
) -> mc.ModelConfig:
    """``python/custom_logic``: ``channel_id`` + ``raw_input`` (+ states, ``end_of_stream``)
    -> results + states.

    ``raw_input`` has ``features`` columns: the one width of the channels it routes, ``-1``
    when they differ (preprocessing then refuses a row not of its channel's width).

    Outputs: ``final_result``, ``decision``, ``events``, ``subsystem``, then per registered
    detector its ``anomaly_score`` and ``anomaly_detected`` as ``<kind>_score`` and
    ``<kind>_detected``, then the ``*_out`` states.
    """
    inputs = [
        tensor("channel_id", "STRING", [1]),
        tensor("raw_input", "FP32", [-1, features]),
    ]
    outputs = [
        output("final_result", "FP32", [-1]),
        output("decision", "BOOL", [-1]),
        output("events", "FP32", [-1, 3]),
        output("subsystem", "STRING", [1]),
    ]
    for detector in registry.kinds():
        # Each detector's own answer, so a caller can tell which detectors agreed.
        outputs.append(output(f"{detector}_score", "FP32", [-1]))
        outputs.append(output(f"{detector}_detected", "BOOL", [-1]))
    for name in stream_states():
        dims = [-1] if name == "post_state" else [-1, -1]
        inputs.append(tensor(name, "FP32", dims, optional=True))
        outputs.append(output(f"{name}_out", "FP32", dims))
    # True on a stream's last chunk, passed on to postprocessing (its incomplete last batch).
    inputs.append(tensor("end_of_stream", "BOOL", [1], optional=True))
    return config_from_template(
        "custom_logic",
        repository=repository,
        name="custom_logic",
        input=inputs,
        output=outputs,
        parameters={**CUSTOM_LOGIC_PARAMETERS, **dict(parameters or {})},
    )
