"""Zero defaults for an ONNX detector's state inputs, so a request may leave them out.

Triton's native onnxruntime backend hands ONNX Runtime only the inputs a request carries, and
ONNX Runtime refuses a graph whose plain inputs are missing. A graph input that also has an
initializer of the same name is optional to ONNX Runtime, with that initializer as its value
(IR version 4 and later), so every state input gets a zero initializer of its static shape:
a request without state then scores from a fresh stream, as the detectors' contract says.

Example::

    add_zero_defaults(Path("onnx/SMAP_E-1/1/model.onnx"), ["encoder_state", "decoder_state"])

It is a top-level module: the detectors' exporters, the build and the checks all use it.
    missing_defaults(Path("onnx/SMAP_E-1/1/model.onnx"), ["encoder_state"])   # []
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from satwatch.exceptions import ModelError

MIN_IR_VERSION = 4
"""The first ONNX IR version in which an initializer may give a graph input its default."""


def _load(path: Path):  # noqa: ANN202 - an onnx.ModelProto
    import onnx  # deferred: only the build and the checks read model files

    try:
        return onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError, OSError...
        raise ModelError(f"{path}: not a readable ONNX model ({error})") from error


def missing_defaults(path: Path, names: Iterable[str]) -> list[str]:
    """The inputs among ``names`` that the graph at ``path`` gives no default (initializer)."""
    model = _load(Path(path))
    with_default = {init.name for init in model.graph.initializer}
    return [name for name in names if name not in with_default]


def add_zero_defaults(path: Path, names: Iterable[str]) -> Path:
    """Give each named input of the graph at ``path`` a zero initializer; rewrite the file.

    Inputs that already have one keep it.

    Raises:
        ModelError: If a name is not a graph input, or its shape is not static.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = _load(Path(path))
    inputs = {value.name: value for value in model.graph.input}
    present = {init.name for init in model.graph.initializer}
    added = False
    for name in names:
        if name not in inputs:
            raise ModelError(f"{path}: expected a graph input {name!r}, got {sorted(inputs)}")
        if name in present:
            continue
        added = True
        tensor_type = inputs[name].type.tensor_type
        dims = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim]
        if any(size < 0 for size in dims):
            raise ModelError(f"{path}: state input {name!r} has dynamic dims; expected static ones")
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(dims, dtype), name))
    if added:  # the exporters already gave their states defaults: no second write then
        model.ir_version = max(model.ir_version, MIN_IR_VERSION)
        onnx.save(model, str(path))
    return Path(path)
