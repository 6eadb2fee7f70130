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

Run: ``satwatch validate [--repository DIR] [--live]`` or
``triton-repository/scripts/validate_models.sh``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from satwatch.exceptions import SatwatchError
from satwatch.paths import repository_dir
from satwatch.repository.compare import compare_onnx, compare_torchscript, probe_torchscript
from satwatch.repository.config import backend_of, load_config
from satwatch.repository.ensemble_checks import ensemble_problems
from satwatch.repository.signatures import onnx_signature, torchscript_signature

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


def _check_model_file(entry: ModelEntry, backend: str, model_file: Path) -> None:
    assert entry.config is not None
    try:
        if backend == "onnxruntime":
            messages = compare_onnx(entry.config, onnx_signature(model_file))
        elif backend == "pytorch":
            messages = compare_torchscript(entry.config, torchscript_signature(model_file))
            messages = messages or probe_torchscript(entry.config, model_file)
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


def check_ensemble(entry: ModelEntry, index: dict[str, ModelEntry]) -> None:
    """Check an ensemble's steps against the models of ``index``."""
    if entry.config is None:
        return
    models = {name: item.config for name, item in index.items()}
    versions = {name: version_folders(item.model_dir) for name, item in index.items()}
    for message in ensemble_problems(entry.config, models, versions):
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
