"""What satwatch's two Python-based Triton backends share.

The ``onnxruntime`` and ``pytorch`` backends (``satwatch/server/backends/*/model.py``) run
inside Triton's Python backend stub, which runs the venv's interpreter, so they import this
module. Everything here is plain numpy and can be tested without a server: the backends only
translate between ``triton_python_backend_utils`` objects and the dictionaries used here.

Example::

    specs = input_specs(config)
    results = run_batched([{"input_data": x1}, {"input_data": x2}], specs, outputs,
                          max_batch_size=8, run=my_session_run)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from satwatch.exceptions import DataError
from satwatch.tensor_checks import check_tensor

LOGGER = logging.getLogger(__name__)

REPOSITORIES_ENV = "SATWATCH_MODEL_REPOSITORIES"
"""Environment variable (``os.pathsep``-separated) the launcher sets to the served folders."""

_CONFIG_PREFIX = "TYPE_"
"""A config data type is tritonclient's name with this prefix (``TYPE_FP32`` for ``FP32``)."""
_CONFIG_STRING = "TYPE_STRING"
"""The one exception: the config's ``TYPE_STRING`` is tritonclient's ``BYTES``."""

Inputs = dict[str, "np.ndarray | None"]
Outputs = dict[str, np.ndarray]


class RequestError(ValueError):
    """One request is unusable (name, shape or dtype); only that request fails."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the model config declares it.

    Attributes:
        name: Tensor name.
        dtype: numpy dtype of the tensor.
        dims: Dimensions without the batch dimension; -1 means any size.
        optional: Whether a request may leave this input out.
    """

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]
    optional: bool = False


def numpy_dtype(triton_type: str) -> np.dtype:
    """Return the numpy dtype of a config data type such as ``"TYPE_FP32"``.

    ``TYPE_STRING`` is numpy's ``object`` (the arrays of bytes Triton hands over).
    """
    numpy_type = None
    if triton_type == _CONFIG_STRING:
        numpy_type = triton_to_np_dtype("BYTES")
    elif isinstance(triton_type, str) and triton_type.startswith(_CONFIG_PREFIX):
        name = triton_type.removeprefix(_CONFIG_PREFIX)
        # A config has no TYPE_BYTES: tritonclient's BYTES is the config's TYPE_STRING.
        numpy_type = triton_to_np_dtype(name) if name != "BYTES" else None
    if numpy_type is None:
        raise ValueError(f"unsupported data type {triton_type!r}")
    return np.dtype(numpy_type)


def triton_type(dtype: np.dtype) -> str:
    """Return the config data type (``"TYPE_FP32"``...) of a numpy dtype."""
    name = np_to_triton_dtype(np.dtype(dtype))
    if name is None:
        raise ValueError(f"unsupported numpy dtype {dtype}")
    return _CONFIG_STRING if name == "BYTES" else _CONFIG_PREFIX + name


def _specs(entries: Sequence[Mapping]) -> list[TensorSpec]:
    return [
        TensorSpec(
            name=entry["name"],
            dtype=numpy_dtype(entry["data_type"]),
            dims=tuple(int(d) for d in entry.get("dims", [])),
            optional=bool(entry.get("optional", False)),
        )
        for entry in entries
    ]


def input_specs(config: Mapping) -> list[TensorSpec]:
    """Return the config's inputs in their declared (positional) order."""
    return _specs(config.get("input", []))


def output_specs(config: Mapping) -> list[TensorSpec]:
    """Return the config's outputs in their declared order."""
    return _specs(config.get("output", []))


def parameter(config: Mapping, key: str, default: int) -> int:
    """Return an integer from the config's ``parameters`` (e.g. ``intra_op_thread_count``)."""
    entry = config.get("parameters", {}).get(key)
    if entry is None or str(entry.get("string_value", "")).strip() == "":
        return default
    try:
        return int(entry["string_value"])
    except ValueError:
        raise ValueError(
            f"parameter {key!r}: expected an integer, got {entry['string_value']!r}"
        ) from None


def model_file(model_dir: Path, version: str | int, config: Mapping, default: str) -> Path:
    """Return ``<model_dir>/<version>/<default_model_filename or default>``, which must exist."""
    name = config.get("default_model_filename") or default
    path = Path(model_dir) / str(version) / name
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: expected {path}, got no such file")
    return path


def _served_repositories() -> list[Path]:
    """Return the repository folders of the running server (env var, else its command line)."""
    if env := os.environ.get(REPOSITORIES_ENV):
        return [Path(p) for p in env.split(os.pathsep) if p]
    # The stub's parent is tritonserver; its --model-repository flags name the folders.
    try:
        args = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []
    folders = []
    for i, arg in enumerate(args):
        if arg.startswith(("--model-repository=", "--model-store=")):
            folders.append(Path(arg.split("=", 1)[1]))
        elif arg in ("--model-repository", "--model-store") and i + 1 < len(args):
            folders.append(Path(args[i + 1]))
    return folders


def locate_model_file(config: Mapping, default: str) -> Path:
    """Find a model's file while auto-completing, when Triton gives only the config.

    Uses the highest numeric version folder of ``<repository>/<name>/`` among the served
    repositories.
    """
    name = config["name"]
    for repository in _served_repositories():
        model_dir = repository / name
        versions = sorted(
            (int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()),
            reverse=True,
        )
        if versions:
            return model_file(model_dir, versions[0], config, default)
    raise FileNotFoundError(
        f"model {name!r}: expected a version folder with {default} in one of "
        f"{[str(p) for p in _served_repositories()]}, got none"
    )


def validate(inputs: Inputs, specs: Sequence[TensorSpec], batched: bool) -> Inputs:
    """Check one request's inputs against the specs; return them in spec order.

    Args:
        inputs: Tensor name -> array (``None`` or absent for an optional input left out).
        specs: The model's inputs; ``dims`` may be refined by the model file.
        batched: Whether the first axis of every array is the batch axis (max_batch_size > 0).

    Every present input must also pass :func:`satwatch.tensor_checks.check_tensor` (not
    empty, within the size limits, finite).

    Raises:
        RequestError: Naming the tensor, what was expected and what was got.
    """
    known = {spec.name for spec in specs}
    unknown = sorted(set(inputs) - known)
    if unknown:
        raise RequestError(f"unexpected input {unknown[0]!r}: expected one of {sorted(known)}")
    checked: Inputs = {}
    rows = None
    for spec in specs:
        array = inputs.get(spec.name)
        if array is None:
            if not spec.optional:
                raise RequestError(f"input {spec.name!r} is required but missing")
            checked[spec.name] = None
            continue
        expected = ((-1,) if batched else ()) + spec.dims
        got = tuple(array.shape)
        if len(got) != len(expected) or any(
            e not in (-1, g) for e, g in zip(expected, got, strict=True)
        ):
            raise RequestError(
                f"input {spec.name!r}: expected shape {list(expected)}, got {list(got)}"
            )
        if array.dtype != spec.dtype:
            raise RequestError(
                f"input {spec.name!r}: expected dtype {triton_type(spec.dtype)}, "
                f"got {triton_type(array.dtype) if array.dtype.kind != 'O' else 'BYTES'}"
            )
        if batched:
            if rows is not None and got[0] != rows:
                raise RequestError(
                    f"input {spec.name!r}: expected batch size {rows} like the other "
                    f"inputs, got {got[0]}"
                )
            rows = got[0]
        try:
            # Before any runtime sees it: an empty GRU sequence aborts ONNX Runtime's process.
            check_tensor(spec.name, array)
        except DataError as error:
            raise RequestError(str(error)) from None
        checked[spec.name] = array
    return checked


def _cast_outputs(raw: Mapping[str, np.ndarray], outputs: Sequence[TensorSpec]) -> Outputs:
    missing = [spec.name for spec in outputs if spec.name not in raw]
    if missing:
        raise RuntimeError(f"model produced no output {missing[0]!r}; got {sorted(raw)}")
    return {spec.name: np.asarray(raw[spec.name]).astype(spec.dtype) for spec in outputs}


def run_batched(
    requests: Sequence[Inputs],
    specs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int,
    run: Callable[[Inputs], Mapping[str, np.ndarray]],
) -> list[Outputs | Exception]:
    """Run a model over the requests of one ``execute`` call.

    With ``max_batch_size > 0`` the valid requests are concatenated along axis 0 and run once
    (once per set of optional inputs present, which is one set in practice), then the outputs
    are split back by each request's rows. With ``max_batch_size == 0`` each request runs on
    its own. A bad request becomes a :class:`RequestError` in its slot; the others still run.

    Returns:
        One entry per request: outputs cast to the config dtypes, or the exception.
    """
    results: list[Outputs | Exception] = []
    checked: list[Inputs | None] = []
    for inputs in requests:
        try:
            checked.append(validate(inputs, specs, batched=max_batch_size > 0))
            results.append(RuntimeError("not run"))
        except RequestError as error:
            checked.append(None)
            results.append(error)
    if max_batch_size <= 0:
        for i, inputs in enumerate(checked):
            if inputs is not None:
                results[i] = _run_safely(run, inputs, outputs)
        return results
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, inputs in enumerate(checked):
        if inputs is not None:
            present = tuple(name for name, array in inputs.items() if array is not None)
            groups.setdefault(present, []).append(i)
    for present, members in groups.items():
        _run_group(run, [checked[i] for i in members], present, specs, outputs, members, results)
    return results


def _run_safely(
    run: Callable, inputs: Inputs, outputs: Sequence[TensorSpec]
) -> Outputs | Exception:
    try:
        return _cast_outputs(run(inputs), outputs)
    except RequestError as error:  # the runner found the request unusable: the client's to fix
        return error
    except Exception as error:  # noqa: BLE001 - a failing run answers its requests, not the stub
        return RuntimeError(f"inference failed: {error}")


def _run_group(run, group, present, specs, outputs, members, results) -> None:
    sizes = [len(inputs[present[0]]) for inputs in group] if present else [0] * len(group)
    batch: Inputs = {
        spec.name: (np.concatenate([g[spec.name] for g in group]) if spec.name in present else None)
        for spec in specs
    }
    produced = _run_safely(run, batch, outputs)
    if isinstance(produced, Exception):
        for i in members:
            results[i] = produced
        return
    total = sum(sizes)
    for name, array in produced.items():
        if array.shape[:1] != (total,):
            error = RuntimeError(
                f"output {name!r}: expected {total} rows for the batch, got {array.shape[:1]}"
            )
            for i in members:
                results[i] = error
            return
    offsets = np.cumsum([0, *sizes])
    for k, i in enumerate(members):
        results[i] = {name: array[offsets[k] : offsets[k + 1]] for name, array in produced.items()}


def load_config(args: Mapping[str, str]) -> dict:
    """Return the model config dictionary from ``initialize``'s arguments."""
    return json.loads(args["model_config"])


def answer(pb_utils, requests: Sequence, model) -> list:
    """One ``execute`` of a Python-based backend: batch, ``model._run`` once, one response each.

    ``model`` holds ``inputs``, ``outputs``, ``max_batch_size`` and ``_run(inputs) -> outputs``
    (both satwatch backends do); the run follows :func:`run_batched`.
    """
    results = run_batched(
        [request_inputs(request) for request in requests],
        model.inputs,
        model.outputs,
        model.max_batch_size,
        model._run,
    )
    return responses(pb_utils, results)


def request_inputs(request) -> Inputs:
    """Return a ``pb_utils.InferenceRequest``'s inputs as name -> numpy array."""
    return {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}


def responses(pb_utils, results: Sequence[Outputs | Exception]) -> list:
    """Turn :func:`run_batched` results into ``pb_utils.InferenceResponse`` objects.

    ``pb_utils`` is passed in because it only exists inside the backend stub.
    """
    answers = []
    for result in results:
        if isinstance(result, Exception):
            # Older pb_utils have no error codes; the message alone then.
            code = getattr(
                pb_utils.TritonError,
                "INVALID_ARG" if isinstance(result, RequestError) else "INTERNAL",
                None,
            )
            error = (
                pb_utils.TritonError(str(result))
                if code is None
                else pb_utils.TritonError(str(result), code)
            )
            answers.append(pb_utils.InferenceResponse(error=error))
        else:
            tensors = [pb_utils.Tensor(name, array) for name, array in result.items()]
            answers.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return answers
