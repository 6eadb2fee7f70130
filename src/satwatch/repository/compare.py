"""Does a config agree with its model file? ONNX graphs and TorchScript ``forward``.

Each function returns messages (empty: they agree); the caller adds the file's name. An ONNX
graph states its tensors; a TorchScript module states only argument names, so its output
types and shapes are checked by running it once on zeros of the config's input shapes.

Example::

    compare_onnx(load_config(path), onnx_signature(model_file))   # [] when they agree
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from satwatch.repository.config import data_type, type_name
from satwatch.repository.signatures import (
    ScriptSignature,
    Signature,
    TensorSpec,
    load_torchscript,
)

LOGGER = logging.getLogger(__name__)


def _dims(dims: Iterable[int]) -> str:
    return f"[{', '.join(str(d) for d in dims)}]"


def _check_spec(
    kind: str, tensor: mc.ModelInput | mc.ModelOutput, spec: TensorSpec, batched: bool
) -> list[str]:
    problems = []
    if tensor.data_type != spec.data_type:
        problems.append(
            f"{kind} {tensor.name!r}: config says {type_name(tensor.data_type)}, "
            f"the model file says {type_name(spec.data_type)}"
        )
    expected = ([-1] if batched else []) + list(tensor.dims)
    if spec.dims is not None:
        # A dynamic axis in the file accepts any config value; a fixed one must be equal.
        fits = len(expected) == len(spec.dims) and all(
            m == -1 or m == c for c, m in zip(expected, spec.dims, strict=True)
        )
        if not fits:
            batch_note = " with the batch axis" if batched else ""
            problems.append(
                f"{kind} {tensor.name!r}: config dims {_dims(tensor.dims)} "
                f"({_dims(expected)}{batch_note}) do not match the model file's "
                f"{_dims(spec.dims)}"
            )
    return problems


def compare_onnx(config: mc.ModelConfig, signature: Signature) -> list[str]:
    """Return how ``config`` disagrees with an ONNX model's ``signature`` (empty: agrees)."""
    batched = config.max_batch_size > 0
    problems = []
    for tensor in config.input:
        spec = signature.input(tensor.name)
        if spec is None:
            names = ", ".join(s.name for s in signature.inputs)
            problems.append(f"input {tensor.name!r} is not an input of the ONNX graph ({names})")
            continue
        problems += _check_spec("input", tensor, spec, batched)
        if tensor.optional and (spec.dims is None or -1 in spec.dims):
            problems.append(
                f"optional input {tensor.name!r} has dynamic dims {_dims(spec.dims or [])} in "
                "the ONNX graph: expected static dims, so a backend can feed zeros when absent"
            )
    declared = {tensor.name for tensor in config.input}
    for spec in signature.inputs:
        if spec.name not in declared:
            problems.append(f"ONNX graph input {spec.describe()} is missing from the config")
    for tensor in config.output:
        spec = signature.output(tensor.name)
        if spec is None:
            names = ", ".join(s.name for s in signature.outputs)
            problems.append(f"output {tensor.name!r} is not an output of the ONNX graph ({names})")
            continue
        problems += _check_spec("output", tensor, spec, batched)
    return problems


def compare_torchscript(config: mc.ModelConfig, signature: ScriptSignature) -> list[str]:
    """Return how ``config`` disagrees with a TorchScript ``forward`` (empty: agrees).

    Inputs named ``<name>__<index>`` are matched by position by the PyTorch backend, so
    names are only compared when the config does not use that convention.
    """
    problems = []
    if not all("__" in tensor.name for tensor in config.input):
        arguments = ", ".join(arg.name for arg in signature.arguments)
        for tensor in config.input:
            argument = signature.argument(tensor.name)
            if argument is None:
                problems.append(f"input {tensor.name!r} is not an argument of forward({arguments})")
            elif tensor.optional and not argument.optional:
                problems.append(
                    f"input {tensor.name!r} is optional in the config but forward() requires it "
                    f"({argument.type} without a default)"
                )
        declared = {tensor.name for tensor in config.input}
        for argument in signature.arguments:
            if not argument.optional and argument.name not in declared:
                problems.append(f"forward() argument {argument.name!r} is missing from the config")
        # The embedded PyTorch backend passes inputs by position, so the order matters too.
        order = [arg.name for arg in signature.arguments if arg.name in declared]
        if not problems and [tensor.name for tensor in config.input] != order:
            problems.append(f"inputs are not in the order of forward({arguments})")
    if len(config.output) > signature.num_outputs:
        problems.append(
            f"config declares {len(config.output)} outputs, forward() returns "
            f"{signature.num_outputs} ({signature.schema})"
        )
    return problems


PROBE_STEPS = 16
"""Length given to a ``-1`` axis when probing a TorchScript module."""

_TORCH_TYPES = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "bfloat16": "BF16",
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
}


def probe_torchscript(config: mc.ModelConfig, path: Path) -> list[str]:
    """Run ``forward`` once on zeros shaped as the config's required inputs; compare outputs.

    ``-1`` axes get :data:`PROBE_STEPS`; optional inputs are left out (``None``), as a request
    without state sends them. Inputs go in config order, as the embedded backend passes them.
    """
    import torch

    module = load_torchscript(path)
    arguments = []
    for item in config.input:
        if item.optional:
            arguments.append(None)
            continue
        shape = [PROBE_STEPS if d == -1 else d for d in item.dims]
        arguments.append(torch.zeros(shape, dtype=torch.float32))
    try:
        with torch.inference_mode():
            returned = module(*arguments)
    except Exception as error:  # the module's own error, whatever its type
        return [f"forward() failed on zeros of the config's input shapes: {error}"]
    outputs = list(returned) if isinstance(returned, (tuple, list)) else [returned]
    problems = []
    for tensor, value in zip(config.output, outputs, strict=False):
        got = _TORCH_TYPES.get(str(value.dtype).removeprefix("torch."))
        if got is None or data_type(got) != tensor.data_type:
            problems.append(
                f"output {tensor.name!r}: config says {type_name(tensor.data_type)}, "
                f"forward() returns {value.dtype}"
            )
        fits = value.dim() == len(tensor.dims) and all(
            d == -1 or d == n for d, n in zip(tensor.dims, value.shape, strict=True)
        )
        if not fits:
            problems.append(
                f"output {tensor.name!r}: config dims {_dims(tensor.dims)}, forward() returns "
                f"shape {_dims(value.shape)} for inputs of {PROBE_STEPS} steps"
            )
    return problems
