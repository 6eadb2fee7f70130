"""Small helpers the Python models (``triton-repository/python/*/1/model.py``) share.

They take the ``triton_python_backend_utils`` module as an argument instead of importing
it, so this module imports anywhere (tests, offline tools) and the models stay short.

Example::

    params = parameters(json.loads(args["model_config"]))
    channel = channel_of(pb_utils, request, default="E-1")
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from satwatch.exceptions import DataError, SatwatchError
from satwatch.tensor_checks import check_tensor

LOGGER = logging.getLogger(__name__)

DEFAULT_CHANNEL = "E-1"
"""The channel of the seed's fixed ensembles when a request names none."""


def parameters(config: Mapping) -> dict[str, str]:
    """Return a model config's ``parameters`` as ``{key: string_value}``."""
    return {
        key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()
    }


def version_folder(args: Mapping[str, str]) -> Path:
    """The model's version folder (``<model dir>/<version>``) from ``initialize``'s args."""
    return Path(args["model_repository"]) / str(args["model_version"])


def output_dtype(pb_utils: ModuleType, config: Mapping, name: str) -> np.dtype:
    """The numpy dtype of output ``name`` as the config declares it."""
    return pb_utils.triton_string_to_numpy(
        pb_utils.get_output_config_by_name(config, name)["data_type"]
    )


def decode_channel(value: np.ndarray | None, default: str = DEFAULT_CHANNEL) -> str:
    """The channel id of a ``channel_id`` BYTES tensor (``default`` when absent).

    Raises:
        DataError: If the tensor does not hold exactly one non-empty UTF-8 string.
    """
    if value is None:
        return default
    flat = np.asarray(value, dtype=object).reshape(-1)
    if flat.size != 1:
        raise DataError(f"channel_id: expected one string, got {flat.size} values")
    item = flat[0]
    try:
        text = item.decode("utf-8") if isinstance(item, bytes | bytearray) else str(item)
    except UnicodeDecodeError as error:
        raise DataError(f"channel_id: expected UTF-8 text, got {item!r}") from error
    if not text.strip():
        raise DataError("channel_id: expected a channel id such as 'E-1', got an empty string")
    return text.strip()


def optional_input(pb_utils: ModuleType, request, name: str) -> np.ndarray | None:  # noqa: ANN001
    """The numpy value of an optional input, or ``None`` when the request leaves it out.

    Raises:
        DataError: If it breaks the request rules of :mod:`satwatch.tensor_checks`.
    """
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy()
    check_tensor(name, array)
    return array


def required_input(pb_utils: ModuleType, request, name: str) -> np.ndarray:  # noqa: ANN001
    """The numpy value of a required input, checked like :func:`optional_input`.

    Raises:
        DataError: If it is missing or breaks the request rules.
    """
    array = optional_input(pb_utils, request, name)
    if array is None:
        raise DataError(f"input {name!r} is required but missing")
    return array


def channel_of(pb_utils: ModuleType, request, default: str = DEFAULT_CHANNEL) -> str:  # noqa: ANN001
    """The request's ``channel_id`` (``default`` when absent)."""
    return decode_channel(optional_input(pb_utils, request, "channel_id"), default)


TRITON_REQUEST_CHECKS = (
    "unexpected shape for input",
    "unexpected datatype",
    "inference input data-type is",
    "unexpected inference input",
    "expected number of inputs",
)
"""How Triton's own request checks begin their messages (Triton 2.51)."""


def step_error_code(pb_utils: ModuleType, error, passed_on=()):  # noqa: ANN001, ANN201
    """The code a failed BLS step passes on to the caller.

    Triton 2.51 reports every failed BLS step as ``INTERNAL``, even a step that refused its
    input with ``INVALID_ARG``. Where the input was the caller's, that is the caller's bad
    input, so it becomes ``INVALID_ARG``: a request Triton refused in its own checks (a state
    of the wrong shape or dtype sent through), or a step error that names one of the
    ``passed_on`` tensors (those the caller sent and the model handed on unchanged; satwatch's
    errors begin with the tensor's name). Other errors keep the step's own code.
    """
    message = error.message()
    if any(check in message for check in TRITON_REQUEST_CHECKS):
        return pb_utils.TritonError.INVALID_ARG
    if any(message.startswith(f"{name}:") for name in passed_on):
        return pb_utils.TritonError.INVALID_ARG
    return error.code() if hasattr(error, "code") else None


def error_response(pb_utils: ModuleType, error: Exception):  # noqa: ANN201
    """One request's error response.

    The code is the error's own ``code`` attribute when it has one (a failed BLS step passes
    on the step's code), ``INVALID_ARG`` for other satwatch errors, else ``INTERNAL``.
    """
    code = getattr(error, "code", None)
    if code is None and isinstance(error, SatwatchError):
        code = pb_utils.TritonError.INVALID_ARG
    elif code is None:
        LOGGER.error("request failed", exc_info=error)
        code = pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), code))


class StepError(SatwatchError):
    """A BLS step answered with an error; ``code`` is the code passed on to the caller."""

    def __init__(self, message: str, code=None) -> None:  # noqa: ANN001 - a pb_utils code
        super().__init__(message)
        self.code = code


async def answer_each(
    pb_utils: ModuleType, requests: Sequence, answer: Callable[..., Awaitable]
) -> list:
    """``await answer(request)`` for every request at once, in order; a request whose answer
    raises gets its own error response (:func:`error_response`), the others still answer."""

    async def respond(request):  # noqa: ANN001, ANN202
        try:
            return await answer(request)
        except Exception as error:  # noqa: BLE001  one bad request never fails the others
            return error_response(pb_utils, error)

    return list(await asyncio.gather(*(respond(r) for r in requests)))
