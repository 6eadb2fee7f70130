"""The rules NVIDIA's native backends apply to a production ``config.pbtxt`` that the embedded
server does not.

The embedded server serves ``configs/cpu.pbtxt`` through satwatch's Python-based backends;
the container serves each model's ``config.pbtxt`` through Triton's C++ backends. Checked on
every production config (``satwatch validate --production``):

- the backend (or platform) is one the container has, and the one its folder holds;
- optional inputs: the PyTorch and TensorRT backends accept none (Triton server issue 6523:
  "'optional' is set to true for input ... while the backend model doesn't support optional
  input"); the onnxruntime backend passes only the inputs a request carries, so each optional
  input needs a default (an initializer) in every version's ONNX graph;
- instance groups: the ONNX, TensorRT and PyTorch models run on the GPU (``KIND_GPU``, as the
  seed deploys them), and a TensorRT plan runs nowhere else;
- a TensorRT plan's config declares the same inputs and outputs as the ONNX model it was
  converted from (``<name>_trt`` from ``onnx/<name>``);
- ``dynamic_batching`` with ``max_batch_size: 0`` is accepted but does nothing: Triton never
  batches such a model's requests (a warning, not an error).

Example::

    for finding in production_findings(Path("triton-repository")):
        print(finding)   # error / warning, file, message
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from satwatch.exceptions import SatwatchError
from satwatch.onnx_defaults import missing_defaults
from satwatch.repository.config import backend_of
from satwatch.repository.validate import (
    FOLDER_BACKENDS,
    ModelEntry,
    Problem,
    discover_models,
    version_folders,
)

NATIVE_BACKENDS = ("onnxruntime", "tensorrt", "pytorch", "python", "ensemble")
"""The backends NVIDIA's Triton container ships that this repository uses."""

WITHOUT_OPTIONAL_INPUTS = ("pytorch", "tensorrt")
"""Native backends that refuse a config with an optional input."""

ON_THE_GPU = ("onnxruntime", "tensorrt", "pytorch")
"""Backends whose production models run on the GPU."""

TRT_SUFFIX = "_trt"


@dataclass(frozen=True)
class Finding:
    """One violation of a native backend's rules.

    Attributes:
        severity: ``error`` (the native backend refuses the model, or a plain request fails)
            or ``warning`` (a setting that does nothing there).
        problem: The file and the message.
    """

    severity: str
    problem: Problem

    def __str__(self) -> str:
        return f"{self.severity}: {self.problem}"


def _optional_inputs(entry: ModelEntry, backend: str) -> list[str]:
    assert entry.config is not None
    optional = [t.name for t in entry.config.input if t.optional]
    if not optional:
        return []
    if backend in WITHOUT_OPTIONAL_INPUTS:
        return [
            f"input {name!r} is optional; Triton's {backend} backend refuses optional inputs "
            "(server issue 6523)"
            for name in optional
        ]
    if backend != "onnxruntime":
        return []
    messages = []
    filename = entry.config.default_model_filename or "model.onnx"
    for version in version_folders(entry.model_dir):
        path = entry.model_dir / str(version) / filename
        try:
            absent = missing_defaults(path, optional) if path.is_file() else []
        except SatwatchError as error:
            messages.append(str(error))
            continue
        messages += [
            f"version {version}: optional input {name!r} has no default (initializer) in "
            f"{filename}; the native backend passes ONNX Runtime only the inputs a request "
            "carries, so a request without it fails"
            for name in absent
        ]
    return messages


def _instance_groups(config: mc.ModelConfig, backend: str) -> list[str]:
    if backend not in ON_THE_GPU:
        return []
    kinds = [group.kind for group in config.instance_group]
    if kinds and all(kind == mc.ModelInstanceGroup.KIND_GPU for kind in kinds):
        return []
    named = [mc.ModelInstanceGroup.Kind.Name(kind) for kind in kinds] or ["none (KIND_AUTO)"]
    return [f"instance groups {', '.join(named)}: expected KIND_GPU for a {backend} model"]


def _plan_io(entry: ModelEntry, index: dict[str, ModelEntry]) -> list[str]:
    assert entry.config is not None
    source = index.get(entry.name.removesuffix(TRT_SUFFIX))
    if not entry.name.endswith(TRT_SUFFIX) or source is None or source.config is None:
        return []

    def tensors(config: mc.ModelConfig) -> list[tuple]:
        inputs = [(t.name, t.data_type, list(t.dims)) for t in config.input]
        return inputs + [(t.name, t.data_type, list(t.dims)) for t in config.output]

    if tensors(entry.config) == tensors(source.config):
        return []
    return [f"declares other inputs/outputs than the ONNX model it is built from ({source.name})"]


def check_production(entry: ModelEntry, index: dict[str, ModelEntry]) -> list[Finding]:
    """The native-backend findings of one model's production ``config.pbtxt``."""
    config = entry.config
    if config is None:
        return []
    backend = backend_of(config)
    errors = []
    if backend not in NATIVE_BACKENDS:
        errors.append(f"backend {backend!r}: expected one of {NATIVE_BACKENDS}")
    elif backend != FOLDER_BACKENDS[entry.folder]:
        errors.append(f"backend {backend!r} in folder {entry.folder}/")
    errors += _optional_inputs(entry, backend)
    errors += _instance_groups(config, backend)
    if backend == "tensorrt":
        errors += _plan_io(entry, index)
    findings = [Finding("error", Problem(entry.config_path, m)) for m in errors]
    if config.max_batch_size == 0 and config.HasField("dynamic_batching"):
        message = "dynamic_batching does nothing with max_batch_size 0 (requests never batched)"
        findings.append(Finding("warning", Problem(entry.config_path, message)))
    return findings


def production_findings(repository: Path) -> list[Finding]:
    """Every native-backend finding of the repository's production configs (errors first)."""
    entries = discover_models(Path(repository))
    index = {entry.name: entry for entry in entries}
    findings = [finding for entry in entries for finding in check_production(entry, index)]
    return sorted(findings, key=lambda finding: finding.severity != "error")
