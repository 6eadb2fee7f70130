"""Check a model repository before Triton sees it; every problem names its file.

Checks (``validate_repository``):

- every ``config.pbtxt`` and ``configs/*.pbtxt`` (the repository's and each model's) parses
  with Triton's ``ModelConfig`` schema;
- each model folder has a config whose name (when given) is the folder's, a backend that
  fits its backend folder, at least one version folder, and the model file in each version;
- the file agrees with the config: ONNX inputs/outputs (names, types, dims; a batch axis is
  added when ``max_batch_size > 0``), TorchScript ``forward`` arguments and output count;
- a CPU variant declares the same tensors as ``config.pbtxt``;
- model names are unique across the backend folders (Triton serves them together);
- ensembles: each step names an existing model, its ``input_map``/``output_map`` keys are
  that model's tensors, its required inputs are all mapped, every tensor a step consumes is
  an ensemble input or another step's output (no cycle), each tensor has one producer, the
  types agree, and every ensemble output is produced.

``--live`` (``live_problems``) also serves the repository with the embedded server and checks
that every model is READY.

Run: ``python -m satwatch.repository.validate [--repository DIR] [--live]`` or
``triton-repository/scripts/validate_models.sh``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from satwatch.exceptions import SatwatchError
from satwatch.paths import repository_dir
from satwatch.repository.config import backend_of, find_tensor, load_config, type_name
from satwatch.repository.signatures import (
    ScriptSignature,
    Signature,
    TensorSpec,
    onnx_signature,
    torchscript_signature,
)

LOGGER = logging.getLogger(__name__)

BACKEND_FOLDERS = ("onnx", "tensorrt", "pytorch", "python", "ensemble")
"""The backend folders of the repository, each served as one ``--model-repository``."""

FOLDER_BACKENDS = {
    "onnx": "onnxruntime",
    "tensorrt": "tensorrt",
    "pytorch": "pytorch",
    "python": "python",
    "ensemble": "ensemble",
}
"""The backend each folder holds."""

DEFAULT_FILENAMES = {
    "onnxruntime": "model.onnx",
    "tensorrt": "model.plan",
    "pytorch": "model.pt",
    "python": "model.py",
}
"""Triton's default model file per backend (``default_model_filename`` overrides it)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong, and the file it is in."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class ModelEntry:
    """One model folder of the repository.

    Attributes:
        name: Folder name (the model's name in Triton).
        folder: Backend folder (``onnx``, ``python``...).
        model_dir: The model's folder.
        config: Its parsed ``config.pbtxt``; ``None`` when missing or unparsable.
    """

    name: str
    folder: str
    model_dir: Path
    config: mc.ModelConfig | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        """``<model_dir>/config.pbtxt``."""
        return self.model_dir / "config.pbtxt"

    def add(self, message: str, path: Path | None = None) -> None:
        """Record a problem (in ``config.pbtxt`` unless ``path`` says otherwise)."""
        self.problems.append(Problem(path or self.config_path, message))


# --- reading the repository ----------------------------------------------------------------


def _without_path(message: str, path: Path) -> str:
    """Drop a leading ``<path>:`` (the Problem prints it), keeping ``line:column:``."""
    prefix = f"{path}:"
    return message[len(prefix) :].lstrip() if message.startswith(prefix) else message


def _parse(path: Path, problems: list[Problem]) -> mc.ModelConfig | None:
    try:
        return load_config(path)
    except SatwatchError as error:
        problems.append(Problem(path, _without_path(str(error), path)))
        return None


def discover_models(repository: Path) -> list[ModelEntry]:
    """Return every model folder of the backend folders, its ``config.pbtxt`` parsed."""
    entries = []
    for folder in BACKEND_FOLDERS:
        base = repository / folder
        if not base.is_dir():
            continue
        for model_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            if model_dir.name.startswith((".", "_")):
                continue
            entry = ModelEntry(model_dir.name, folder, model_dir)
            if not entry.config_path.is_file():
                entry.add("expected a config.pbtxt in the model folder, got none")
            else:
                entry.config = _parse(entry.config_path, entry.problems)
            entries.append(entry)
    return entries


def version_folders(model_dir: Path) -> list[int]:
    """Return the numeric version folders of a model, sorted."""
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


# --- one model -----------------------------------------------------------------------------


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


def _check_model_file(entry: ModelEntry, backend: str, model_file: Path) -> None:
    assert entry.config is not None
    try:
        if backend == "onnxruntime":
            messages = compare_onnx(entry.config, onnx_signature(model_file))
        elif backend == "pytorch":
            messages = compare_torchscript(entry.config, torchscript_signature(model_file))
        else:
            return  # a TensorRT plan needs TensorRT to read; a model.py has no signature
    except SatwatchError as error:
        entry.add(_without_path(str(error), model_file), model_file)
        return
    for message in messages:
        entry.add(f"{message} (model file {model_file})")


def _check_versions(entry: ModelEntry, backend: str) -> None:
    assert entry.config is not None
    versions = version_folders(entry.model_dir)
    if not versions:
        entry.add("expected at least one version folder (1/, 2/...), got none")
        return
    if backend == "ensemble":
        return
    filename = entry.config.default_model_filename or DEFAULT_FILENAMES.get(backend)
    if filename is None:
        return
    for version in versions:
        model_file = entry.model_dir / str(version) / filename
        if not model_file.exists():
            entry.add(f"version {version}: expected model file {model_file}, got no such file")
        else:
            _check_model_file(entry, backend, model_file)


def _io_key(config: mc.ModelConfig) -> tuple:
    return (
        [(t.name, t.data_type, list(t.dims), t.optional) for t in config.input],
        [(t.name, t.data_type, list(t.dims)) for t in config.output],
    )


def _check_variants(entry: ModelEntry) -> None:
    assert entry.config is not None
    configs = entry.model_dir / "configs"
    for path in sorted(configs.glob("*.pbtxt")) if configs.is_dir() else []:
        variant = _parse(path, entry.problems)
        if variant is None:
            continue
        if variant.name and variant.name != entry.name:
            entry.add(f"name {variant.name!r} differs from the folder name {entry.name!r}", path)
        if _io_key(variant) != _io_key(entry.config):
            entry.add("declares other inputs/outputs than config.pbtxt", path)


def check_model(entry: ModelEntry) -> None:
    """Run the single-model checks on ``entry``, adding to ``entry.problems``."""
    config = entry.config
    if config is None:
        return
    if config.name and config.name != entry.name:
        entry.add(f"name {config.name!r} differs from the folder name {entry.name!r}")
    backend = backend_of(config)
    expected = FOLDER_BACKENDS[entry.folder]
    if backend != expected:
        entry.add(
            f"backend {backend or '(none)'!r} in folder {entry.folder}/: expected {expected!r}"
        )
    _check_variants(entry)
    _check_versions(entry, backend)


# --- ensembles -----------------------------------------------------------------------------


def _known_type(name: str, config: mc.ModelConfig, index: dict[str, ModelEntry]) -> int | None:
    """The data type of ensemble tensor ``name``: declared, or its producer's output type."""
    declared = find_tensor(config.input, name) or find_tensor(config.output, name)
    if declared is not None:
        return declared.data_type
    for step in config.ensemble_scheduling.step:
        entry = index.get(step.model_name)
        for model_tensor, ensemble_tensor in step.output_map.items():
            if ensemble_tensor == name and entry is not None and entry.config is not None:
                produced = find_tensor(entry.config.output, model_tensor)
                return produced.data_type if produced is not None else None
    return None


def _check_step(
    number: int, step: mc.ModelEnsembling.Step, config: mc.ModelConfig, index: dict
) -> list[str]:
    label = f"step {number} ({step.model_name})"
    entry = index.get(step.model_name)
    if entry is None:
        return [f"{label}: no model {step.model_name!r} in the repository"]
    model = entry.config
    if model is None:
        return []  # its own config problem is reported with its file
    problems = []
    for key, tensor in step.input_map.items():
        model_input = find_tensor(model.input, key)
        if model_input is None:
            problems.append(f"{label}: input_map key {key!r} is not an input of {step.model_name}")
            continue
        known = _known_type(tensor, config, index)
        if known is not None and known != model_input.data_type:
            problems.append(
                f"{label}: {tensor!r} is {type_name(known)} but input {key!r} of "
                f"{step.model_name} expects {type_name(model_input.data_type)}"
            )
    for key in step.output_map:
        if find_tensor(model.output, key) is None:
            problems.append(
                f"{label}: output_map key {key!r} is not an output of {step.model_name}"
            )
    for model_input in model.input:
        if not model_input.optional and model_input.name not in step.input_map:
            problems.append(f"{label}: required input {model_input.name!r} is not mapped")
    if step.model_version > 0 and step.model_version not in version_folders(entry.model_dir):
        problems.append(f"{label}: model_version {step.model_version} has no version folder")
    return problems


def _producers(config: mc.ModelConfig, problems: list[str]) -> dict[str, int]:
    """Return ``{tensor: step number}``; a second producer or an overwritten input is a problem."""
    inputs = {tensor.name for tensor in config.input}
    producers: dict[str, int] = {}
    for number, step in enumerate(config.ensemble_scheduling.step, 1):
        for tensor in step.output_map.values():
            if tensor in inputs:
                problems.append(
                    f"step {number} ({step.model_name}) overwrites ensemble input {tensor!r}"
                )
            elif tensor in producers:
                problems.append(
                    f"tensor {tensor!r} is produced by step {producers[tensor]} and step {number}: "
                    "expected one producer"
                )
            producers.setdefault(tensor, number)
    return producers


def _check_dataflow(config: mc.ModelConfig) -> list[str]:
    """Producers and consumers: one producer per tensor, nothing consumed before produced."""
    problems: list[str] = []
    producers = _producers(config, problems)
    available = {tensor.name for tensor in config.input}
    pending = dict(enumerate(config.ensemble_scheduling.step, 1))
    while pending:
        ready = [n for n, s in pending.items() if set(s.input_map.values()) <= available]
        if not ready:
            break
        for number in ready:
            available |= set(pending.pop(number).output_map.values())
    for number, step in pending.items():
        for tensor in sorted(set(step.input_map.values()) - available):
            if tensor in producers:
                problems.append(
                    f"step {number} ({step.model_name}) consumes {tensor!r}, which is produced "
                    f"only after it (step {producers[tensor]} waits on it: a cycle)"
                )
            else:
                problems.append(
                    f"step {number} ({step.model_name}) consumes {tensor!r}, which no ensemble "
                    "input or step produces"
                )
    for tensor in config.output:
        if tensor.name not in producers:
            problems.append(f"ensemble output {tensor.name!r} is produced by no step")
    return problems


def check_ensemble(entry: ModelEntry, index: dict[str, ModelEntry]) -> None:
    """Check an ensemble's steps against the models of ``index``."""
    config = entry.config
    if config is None:
        return
    steps = config.ensemble_scheduling.step
    if not steps:
        entry.add("ensemble has no ensemble_scheduling steps")
        return
    for number, step in enumerate(steps, 1):
        for message in _check_step(number, step, config, index):
            entry.add(message)
    for message in _check_dataflow(config):
        entry.add(message)


# --- the whole repository ------------------------------------------------------------------


def _check_shared_configs(repository: Path) -> list[Problem]:
    problems: list[Problem] = []
    configs = repository / "configs"
    for path in sorted(configs.rglob("*.pbtxt")) if configs.is_dir() else []:
        _parse(path, problems)
    return problems


def _check_unique(entries: Sequence[ModelEntry]) -> list[Problem]:
    problems = []
    seen: dict[str, ModelEntry] = {}
    for entry in entries:
        first = seen.setdefault(entry.name, entry)
        if first is not entry:
            problems.append(
                Problem(
                    entry.config_path,
                    f"model name {entry.name!r} is also used by {first.config_path}: "
                    "expected names unique across the backend folders",
                )
            )
    return problems


def validate_repository(repository: Path | None = None) -> list[Problem]:
    """Return every problem of the repository (empty: valid).

    Args:
        repository: Root holding the backend folders and ``configs/`` (default the project's).
    """
    repository = repository_dir(repository)
    if not repository.is_dir():
        return [Problem(repository, "expected a model repository folder, got no such folder")]
    problems = _check_shared_configs(repository)
    entries = discover_models(repository)
    if not entries:
        problems.append(
            Problem(repository, f"expected model folders in {', '.join(BACKEND_FOLDERS)}, got none")
        )
    index: dict[str, ModelEntry] = {}
    for entry in entries:
        index.setdefault(entry.name, entry)
        check_model(entry)
    for entry in entries:
        if entry.config is not None and backend_of(entry.config) == "ensemble":
            check_ensemble(entry, index)
    for entry in entries:
        problems += entry.problems
    problems += _check_unique(entries)
    LOGGER.info("validated %d models in %s: %d problems", len(entries), repository, len(problems))
    return problems


def validate_model(model_dir: Path) -> list[Problem]:
    """Return the single-model problems of one model folder (no ensemble or name checks)."""
    model_dir = Path(model_dir)
    folder = model_dir.parent.name
    if folder not in FOLDER_BACKENDS:
        return [Problem(model_dir, f"expected a model folder inside one of {BACKEND_FOLDERS}")]
    entry = ModelEntry(model_dir.name, folder, model_dir)
    if not entry.config_path.is_file():
        entry.add("expected a config.pbtxt in the model folder, got none")
    else:
        entry.config = _parse(entry.config_path, entry.problems)
    check_model(entry)
    return entry.problems


def live_problems(repository: Path | None = None, timeout: float = 180.0) -> list[Problem]:
    """Serve the repository with the embedded server; return a problem per model not READY."""
    import tempfile

    # Imported here: the server package is only needed for --live.
    from satwatch.server.embedded import ServerPorts, start_embedded_server

    repository = repository_dir(repository)
    with tempfile.TemporaryDirectory(prefix="satwatch-validate-") as scratch:
        running = start_embedded_server(
            repository,
            ports=ServerPorts.free(),
            log_file=Path(scratch) / "triton.log",
            timeout=timeout,
        )
        try:
            table = running.table
        finally:
            running.server.stop()
    folders = {entry.name: entry for entry in discover_models(repository)}
    problems = []
    for row in table:
        if not row.ready:
            path = folders[row.name].config_path if row.name in folders else repository
            reason = f": {row.reason}" if row.reason else ""
            problems.append(
                Problem(
                    path, f"model {row.name} version {row.version or '?'} is {row.state}{reason}"
                )
            )
    served = {row.name for row in table}
    for name, entry in folders.items():
        if name not in served and entry.folder != "tensorrt":
            problems.append(Problem(entry.config_path, f"model {name} is not served at all"))
    return problems


def main() -> None:
    """``python -m satwatch.repository.validate``: the validate command on its own."""
    import typer

    from satwatch.repository.cli import validate_command

    typer.run(validate_command)


if __name__ == "__main__":
    main()
