"""The model table: every model of the running server, its version, state and reason.

Read from Triton's repository index API (``POST /v2/repository/index``), which belongs to the
restricted ``model-repository`` group, so the admin key header is sent when there is one.

Example::

    for row in model_table("http://127.0.0.1:8000", admin_key="s3cret"):
        print(row.name, row.version, row.state, row.reason)
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from satwatch.exceptions import ServerError
from satwatch.server.config import ADMIN_HEADER

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelStatus:
    """One row of the repository index.

    Attributes:
        name: Model name.
        version: Version ("" when Triton could not read the model at all).
        state: ``READY``, ``UNAVAILABLE``, ``LOADING``...
        reason: Why it is not ready ("" when ready).
    """

    name: str
    version: str
    state: str
    reason: str

    @property
    def ready(self) -> bool:
        """Whether the model serves."""
        return self.state == "READY"


def model_table(
    http_url: str, admin_key: str | None = None, timeout: float = 10.0
) -> list[ModelStatus]:
    """Return the repository index of the server at ``http_url``, sorted by name and version.

    Raises:
        ServerError: If the server does not answer or refuses (e.g. a wrong admin key).
    """
    request = urllib.request.Request(f"{http_url}/v2/repository/index", data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    if admin_key:
        request.add_header(ADMIN_HEADER, admin_key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            rows = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        raise ServerError(
            f"repository index at {http_url}: expected 200, got {error.code} {detail}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        raise ServerError(f"repository index at {http_url}: no answer ({error})") from None
    table = [
        ModelStatus(
            name=row.get("name", ""),
            version=str(row.get("version", "")),
            state=row.get("state") or "UNAVAILABLE",  # unparsable config: no state
            reason=row.get("reason", ""),
        )
        for row in rows
    ]
    return sorted(table, key=lambda row: (row.name, row.version))


def short_reason(reason: str) -> str:
    """Return a load error without the Python traceback Triton appends (``At: ...``)."""
    return reason.split("\n\nAt:", 1)[0].strip()


def explain_from_log(table: list[ModelStatus], log_text: str) -> list[ModelStatus]:
    """Fill in the reason of models the index lists without one, from the server log.

    A ``config.pbtxt`` that does not parse leaves the model in the index with no state and no
    reason; the log's line naming the model (``Poll failed for model directory ...``) does.
    """
    errors = [line for line in log_text.splitlines() if line.startswith("E")]
    explained = []
    for row in table:
        if not row.ready and not row.reason:
            # Prefer lines quoting the name ('m'), then any naming it as a whole word.
            quoted = [line for line in errors if f"'{row.name}'" in line]
            word = re.compile(rf"(?<![\w-]){re.escape(row.name)}(?![\w-])")
            mentions = quoted or [line for line in errors if word.search(line)]
            if mentions:
                message = mentions[-1].split('] "', 1)[-1].rstrip('"')
                row = ModelStatus(row.name, row.version, row.state, message)
        explained.append(row)
    return explained
