"""Turn what ``tritonclient`` raises into one :class:`ClientError` line that says what to do.

The three failures an operator meets first, each with its own message:

* no server at the address -> "start it with `satwatch serve`";
* a model that is not READY -> its name, version, state and reason (the state comes from the
  repository index, which needs the admin key; without it the message says so);
* an unknown channel -> the channel and the seed channels.

Anything else keeps the server's own message behind the model's name.

Example::

    try:
        client.infer(...)
    except Exception as error:
        raise translate(error, model="custom_logic", url=url) from None
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from tritonclient.utils import InferenceServerException

from satwatch.data import SEED_CHANNELS
from satwatch.exceptions import ClientError

LOGGER = logging.getLogger(__name__)

START_HINT = "start it with `satwatch serve` (or pass --url/--protocol of the running one)"
UNKNOWN_CHANNEL = re.compile(r"unknown channel '([^']*)'")
FAILED_STEP = re.compile(r"step '([^']+)' failed")
_UNREACHABLE = (
    "failed to connect",
    "connection refused",
    "connect failed",
    "unavailable",
    "deadline exceeded",
    "socket closed",
    "name resolution",
)


def server_unreachable(url: str, protocol: str, detail: object = "") -> ClientError:
    """The error for an address where no Triton server answers (``detail`` is logged)."""
    if detail:
        LOGGER.debug("no server at %s (%s): %s", url, protocol, detail)
    return ClientError(f"no Triton server answers at {url} ({protocol}): {START_HINT}")


def unknown_channel(channel: str, served: Iterable[str] = ()) -> ClientError:
    """The error for a channel the server (or the data) does not know."""
    served = list(served)
    where = f"the server serves {', '.join(served)}; " if served else ""
    return ClientError(
        f"unknown channel {channel!r}: {where}the seed channels are {', '.join(SEED_CHANNELS)}"
    )


def model_not_ready(
    model: str, version: str, url: str, state: str | None, reason: str = ""
) -> ClientError:
    """The error for a model that does not serve; ``state`` None when it could not be read."""
    which = f"model {model!r}" + (f" version {version}" if version else "")
    if state is None:
        return ClientError(
            f"{which} is not READY on {url}; pass --admin-key (or set SATWATCH_ADMIN_KEY) to "
            "see its state and reason, or run `satwatch status`"
        )
    if state == "ABSENT":
        return ClientError(
            f"{which} is not in the repository served at {url}: build it with `satwatch build` "
            "or pick another --model"
        )
    why = f" ({reason.splitlines()[0]})" if reason else ""
    return ClientError(
        f"{which} is {state}{why} on {url}: load it again or restart `satwatch serve`"
    )


def is_unreachable(error: BaseException) -> bool:
    """Whether an error means that nothing answers at the address."""
    if isinstance(error, OSError):
        return True
    if isinstance(error, InferenceServerException):
        status = str(error.status() or "").lower()
        text = f"{status} {error.message() or ''}".lower()
        if "unavailable" in status and "restricted" not in text:
            return True
        return any(marker in text for marker in _UNREACHABLE) and "restricted" not in text
    return False


_PROXY_FAILURES = ("502", "503", "504", "bad gateway", "service unavailable", "gateway timeout")


def is_transient(error: BaseException) -> bool:
    """Whether the same request may succeed when sent again: nothing answered, or a proxy in
    front of the replicas found none that did (502/503/504)."""
    if is_unreachable(error):
        return True
    if isinstance(error, InferenceServerException):
        text = f"{error.status() or ''} {error.message() or ''}".lower()
        return any(marker in text for marker in _PROXY_FAILURES)
    return False


def translate(error: BaseException, model: str, url: str, protocol: str) -> ClientError:
    """The :class:`ClientError` for an error raised by a request to ``model``.

    Unknown channels and unreachable servers get their own messages; a model that is not
    found or not ready is reported by name (its state is added by the caller, who can read
    the repository index); anything else keeps the server's message.
    """
    if isinstance(error, ClientError):
        return error
    if is_unreachable(error):
        return server_unreachable(url, protocol, _first_line(error))
    message = _first_line(error)
    found = UNKNOWN_CHANNEL.search(message)
    if found:
        served = message.split("holds", 1)[1].strip().split(", ") if "holds" in message else []
        return unknown_channel(found.group(1), served)
    return ClientError(f"model {model!r} on {url}: {message}")


def failed_step(error: BaseException) -> str | None:
    """The model a ``custom_logic`` BLS step names in its error (``step 'X' failed``)."""
    found = FAILED_STEP.search(str(error))
    return found.group(1) if found else None


def _first_line(error: BaseException) -> str:
    if isinstance(error, InferenceServerException):
        text = error.message() or str(error)
    else:
        text = str(error) or type(error).__name__
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
