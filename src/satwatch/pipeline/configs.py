"""What ``custom_logic`` reads from its config, and where its files live.

Its config itself is built with the other Python models' by the repository layer
(:func:`satwatch.repository.seed.custom_logic_config`).

Parameters ``custom_logic`` reads (all strings; empty means the default):

- ``catalog``: the channel catalog (default ``catalog.db`` in the version folder).
- ``event_log``: the SQLite event log; a relative path is relative to the model folder
  (default ``$SATWATCH_EVENT_LOG`` when the server's environment sets it, as a container
  whose model repository is mounted read-only does, else ``python/custom_logic/events.db``,
  beside the version folders so a new version keeps the log).
- ``webhook_url``: POST each new event here as JSON (default: no webhook).
- ``webhook_timeout``: seconds per POST (default 2).
- ``webhook_retry_interval``: seconds between two retries of the undelivered events, however
  busy the traffic (default 60).

Example::

    log = EventLog(event_log_path(parameters(config), model_dir))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from satwatch.pipeline.eventlog import EVENT_LOG_FILE

LOGGER = logging.getLogger(__name__)

EVENT_LOG_VARIABLE = "SATWATCH_EVENT_LOG"
"""Environment variable naming the event log when the config does not."""

CUSTOM_LOGIC_PARAMETERS = {
    "catalog": "",
    "event_log": "",
    "webhook_url": "",
    "webhook_timeout": "2",
    "webhook_retry_interval": "60",
}
"""The parameters ``custom_logic`` reads, with their defaults (see above)."""


def event_log_path(parameters: Mapping[str, str], model_dir: Path) -> Path:
    """Where ``custom_logic`` keeps its event log (see the module docstring)."""
    value = parameters.get("event_log") or os.environ.get(EVENT_LOG_VARIABLE) or EVENT_LOG_FILE
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(model_dir) / path
