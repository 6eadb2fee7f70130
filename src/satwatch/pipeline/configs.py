"""The config of ``python/custom_logic`` and where its files live.

The other two Python models' configs are the repository helper's
(:func:`satwatch.repository.seed.preprocessing_config`, ``postprocessing_config``); this one
is built the same way, from ``configs/templates/python.pbtxt`` and ``configs/common.pbtxt``.

Parameters ``custom_logic`` reads (all strings; empty means the default):

- ``catalog``: the channel catalog (default ``catalog.db`` in the version folder).
- ``event_log``: the SQLite event log; a relative path is relative to the model folder
  (default ``python/custom_logic/events.db``, beside the version folders so a new version
  keeps the log).
- ``webhook_url``: POST each new event here as JSON (default: no webhook).
- ``webhook_timeout``: seconds per POST (default 2).
- ``webhook_retry_interval``: seconds of idleness between retries of undelivered events
  (default 60).

Example::

    write_model_configs(repository / "python" / "custom_logic", custom_logic_config(repository))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from satwatch.pipeline.eventlog import EVENT_LOG_FILE
from satwatch.repository.config import config_from_template, output, tensor

LOGGER = logging.getLogger(__name__)

FEATURES = 25
DETECTORS = ("omni", "tranad")
"""Detectors whose own answers ``custom_logic`` returns as ``<d>_score`` / ``<d>_detected``."""
STATE_TENSORS = {
    "encoder_state": "FP32",
    "decoder_state": "FP32",
    "context": "FP32",
    "post_state": "FP32",
}
"""Stream state passed through ``custom_logic``: in as ``X`` (optional), out as ``X_out``."""

CUSTOM_LOGIC_PARAMETERS = {
    "catalog": "",
    "event_log": "",
    "webhook_url": "",
    "webhook_timeout": "2",
    "webhook_retry_interval": "60",
}


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


def event_log_path(parameters: Mapping[str, str], model_dir: Path) -> Path:
    """Where ``custom_logic`` keeps its event log (see the module docstring)."""
    value = parameters.get("event_log") or EVENT_LOG_FILE
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(model_dir) / path
