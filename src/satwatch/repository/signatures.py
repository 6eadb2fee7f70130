"""What a model file says about its tensors: ONNX graphs and TorchScript ``forward()``.

An ONNX graph carries names, element types and shapes, read here as Triton data types and
dims (``-1`` for a dynamic or symbolic axis). A TorchScript module carries no tensor shapes or
dtypes: its ``forward`` schema gives the argument names (Triton's PyTorch backend matches
config inputs to them), whether each argument may be left out (``Optional[Tensor]`` or a
default), and how many tensors it returns (outputs not named ``<name>__<index>`` are taken in
config order from that tuple).

Example::

    signature = onnx_signature(Path("onnx/SMAP_E-1/1/model.onnx"))
    [spec.name for spec in signature.inputs]   # ['input_data', 'encoder_state', ...]
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from satwatch.exceptions import ModelError
from satwatch.repository.config import data_type, type_name

LOGGER = logging.getLogger(__name__)

# onnx.TensorProto element types -> Triton type names.
_ONNX_TYPES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "STRING",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a model file.

    Attributes:
        name: Tensor name.
        data_type: Triton ``DataType`` enum value.
        dims: Shape, ``-1`` for a dynamic axis; ``None`` when the file gives no shape.
    """

    name: str
    data_type: int
    dims: tuple[int, ...] | None

    def describe(self) -> str:
        """``name FP32 [-1, 25]``."""
        dims = "?" if self.dims is None else f"[{', '.join(map(str, self.dims))}]"
        return f"{self.name} {type_name(self.data_type)} {dims}"


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs of a model file, in the file's order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        """Return the input called ``name``, or ``None``."""
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        """Return the output called ``name``, or ``None``."""
        return next((spec for spec in self.outputs if spec.name == name), None)


def _onnx_spec(value_info) -> TensorSpec:  # noqa: ANN001 - onnx.ValueInfoProto
    tensor_type = value_info.type.tensor_type
    name = _ONNX_TYPES.get(tensor_type.elem_type)
    if name is None:
        raise ModelError(
            f"ONNX tensor {value_info.name!r}: element type {tensor_type.elem_type} has no "
            f"Triton data type (expected one of {', '.join(sorted(set(_ONNX_TYPES.values())))})"
        )
    dims = None
    if tensor_type.HasField("shape"):
        dims = tuple(
            dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else -1
            for dim in tensor_type.shape.dim
        )
    return TensorSpec(value_info.name, data_type(name), dims)


def onnx_signature(path: Path) -> Signature:
    """Read an ONNX model's graph inputs (those with a default included) and outputs.

    Raises:
        ModelError: If the file is missing or not an ONNX model.
    """
    import onnx  # deferred: only the tools that read model files need it

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: expected an ONNX model file, got no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and others for a bad file
        raise ModelError(f"{path}: not a readable ONNX model ({error})") from error
    graph = model.graph
    # Before IR version 4 every weight was also listed as a graph input; since, a graph input
    # with an initializer is an input with a default (a detector's zero state), a real input.
    weights = {item.name for item in graph.initializer} if model.ir_version < 4 else set()
    inputs = tuple(_onnx_spec(item) for item in graph.input if item.name not in weights)
    outputs = tuple(_onnx_spec(item) for item in graph.output)
    if not outputs:
        raise ModelError(f"{path}: ONNX graph has no outputs")
    return Signature(inputs, outputs)


@dataclass(frozen=True)
class ScriptArgument:
    """One argument of a TorchScript ``forward``.

    Attributes:
        name: Argument name.
        type: TorchScript type, e.g. ``Tensor`` or ``Optional[Tensor]``.
        optional: Whether a call may leave it out (``Optional`` type or a default value).
    """

    name: str
    type: str
    optional: bool


@dataclass(frozen=True)
class ScriptSignature:
    """The ``forward`` of a TorchScript module.

    Attributes:
        arguments: Arguments after ``self``.
        num_outputs: Tensors returned (a tuple's length, 1 for a single tensor).
        schema: The schema as TorchScript prints it.
    """

    arguments: tuple[ScriptArgument, ...]
    num_outputs: int
    schema: str

    def argument(self, name: str) -> ScriptArgument | None:
        """Return the argument called ``name``, or ``None``."""
        return next((arg for arg in self.arguments if arg.name == name), None)


def load_torchscript(path: Path):  # noqa: ANN201 - a torch.jit.ScriptModule
    """Load a TorchScript file on the CPU, in eval mode.

    Raises:
        ModelError: If the file is missing or not a TorchScript module.
    """
    import torch  # deferred: importing torch costs seconds

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: expected a TorchScript file, got no such file")
    try:
        with warnings.catch_warnings():
            # torch 2.13 marks TorchScript deprecated; Triton's PyTorch backend still runs it.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
        module.forward.schema  # noqa: B018 - a module without forward() is refused here
    except Exception as error:  # torch raises RuntimeError and others for a bad file
        raise ModelError(f"{path}: not a loadable TorchScript module ({error})") from error
    return module.eval()


def torchscript_signature(path: Path) -> ScriptSignature:
    """Read the ``forward`` schema of a TorchScript file (loaded on the CPU).

    Raises:
        ModelError: If the file is missing or not a TorchScript module.
    """
    import torch

    schema = load_torchscript(path).forward.schema
    arguments = tuple(
        ScriptArgument(
            name=arg.name,
            type=str(arg.type),
            optional=isinstance(arg.type, torch.OptionalType) or arg.has_default_value(),
        )
        for arg in schema.arguments[1:]  # the first is self
    )
    returned = schema.returns[0].type if schema.returns else None
    if isinstance(returned, torch.TupleType):
        num_outputs = len(returned.elements())
    else:
        num_outputs = 0 if returned is None or str(returned) == "NoneType" else 1
    return ScriptSignature(arguments, num_outputs, str(schema))
