"""The model table: every model of the running server, its version, state and reason.

Read from Triton's repository index API (``POST /v2/repository/index``), which belongs to the
restricted ``model-repository`` group, so the admin key header is sent when there is one
(``tritonclient``'s ``get_model_repository_index``).

Example::

    for row in model_table("http://127.0.0.1:8000", admin_key="s3cret"):
        print(row.name, row.version, row.state, row.reason)
"""

from __future__ import annotations

import http.client
import logging
import re
from dataclasses import dataclass

import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

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
    scheme, _, address = http_url.rpartition("://")
    headers = {ADMIN_HEADER: admin_key} if admin_key else None
    try:
        with httpclient.InferenceServerClient(
            address, connection_timeout=timeout, network_timeout=timeout, ssl=scheme == "https"
        ) as client:
            rows = client.get_model_repository_index(headers=headers)
    except InferenceServerException as error:
        if error.status() is None:  # raised by the client itself, before any answer
            raise ServerError(f"repository index at {http_url}: no answer ({error})") from None
        # The raw body when it was no JSON error, else the server's error message.
        detail = error.debug_details() or error.message()
        raise ServerError(
            f"repository index at {http_url}: expected 200, got {error.status()} {detail}"
        ) from None
    except (OSError, http.client.HTTPException) as error:  # refused, timed out, closed
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
