"""Model names and model folders that the repository tools may write.

A model name is a folder name inside a backend folder and a path segment of Triton's URLs
(``/v2/models/<name>``), so the tools accept only names that are both, safely:

    MODEL_NAME_PATTERN = [A-Za-z0-9][A-Za-z0-9_.-]{0,127}, and no ``..`` inside

That is 1 to 128 ASCII letters, digits, ``_``, ``.`` and ``-``, starting with a letter or a
digit. It rules out path traversal (``/``, ``\\``, ``..``, absolute paths), NUL and other
control characters, the empty name, ``.``/``..`` and hidden folders (a leading dot: the
validator skips those), and anything a URL would have to escape. Every seed and sample
model (``SMAP_E-1``, ``SMAP_E-1_trt``, ``tranad_sat1``, ``multi_detector``...) fits.

Writing a model folder is refused when it would replace another model: Triton serves the
backend folders together, so a name used in another backend folder is taken, and a folder
whose ``config.pbtxt`` names another model or backend belongs to someone else.

Example::

    check_model_name("SMAP_E-1")          # 'SMAP_E-1'
    check_model_name("../etc")            # RepositoryError
    model_folder(root, "onnx", "SMAP_E-1")  # root/onnx/SMAP_E-1, checked
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from satwatch.exceptions import RepositoryError
from satwatch.repository.config import backend_of, load_config
from satwatch.repository.validate import FOLDER_BACKENDS

LOGGER = logging.getLogger(__name__)

MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
"""The model names the repository tools accept (and ``..`` nowhere inside)."""

_NAME = re.compile(MODEL_NAME_PATTERN)


def check_model_name(name: str) -> str:
    """Return ``name`` if it is an acceptable model name (see ``MODEL_NAME_PATTERN``).

    Raises:
        RepositoryError: Naming the name and the rule it breaks.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise RepositoryError(
            f"model name {name!r}: expected 1-128 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit and without '..' (a folder name, never a path)"
        )
    return name


def check_model_target(model_dir: Path, name: str, backend: str) -> Path:
    """Check that ``model_dir`` may hold model ``name`` of ``backend``; return it.

    When ``model_dir`` sits in a backend folder of a repository, it must be the folder of
    ``backend`` and no other backend folder may hold ``name``. An existing ``config.pbtxt``
    must name ``name`` (or nothing) and ``backend``.

    Raises:
        RepositoryError: If the name is not acceptable or another model would be replaced;
            the message says where the other model is.
    """
    check_model_name(name)
    model_dir = Path(model_dir)
    folder = model_dir.parent.name
    if folder in FOLDER_BACKENDS:
        if FOLDER_BACKENDS[folder] != backend:
            raise RepositoryError(
                f"{model_dir}: a {backend} model belongs in a "
                f"{_folder_of(backend)}/ folder, not {folder}/"
            )
        _check_unique(model_dir.parent.parent, folder, name)
    _check_existing_config(model_dir, name, backend)
    return model_dir


def model_folder(repository: Path, folder: str, name: str) -> Path:
    """Return ``<repository>/<folder>/<name>`` once it is safe to write model ``name`` there.

    Raises:
        RepositoryError: If the name is not acceptable, the folder (through a symlink)
            resolves outside ``<repository>/<folder>``, or another model would be replaced.
    """
    check_model_name(name)
    if folder not in FOLDER_BACKENDS:
        raise RepositoryError(f"{folder!r}: expected one of {', '.join(FOLDER_BACKENDS)}")
    base = Path(repository) / folder
    model_dir = base / name
    # The name is one plain segment; only a symlink could still lead elsewhere.
    if model_dir.resolve().parent != base.resolve():
        raise RepositoryError(
            f"{model_dir}: resolves to {model_dir.resolve()}, outside {base}: expected a "
            "model folder inside the backend folder"
        )
    return check_model_target(model_dir, name, FOLDER_BACKENDS[folder])


def _folder_of(backend: str) -> str:
    return next(folder for folder, held in FOLDER_BACKENDS.items() if held == backend)


def _check_unique(repository: Path, folder: str, name: str) -> None:
    for other in FOLDER_BACKENDS:
        taken = repository / other / name
        if other != folder and taken.exists():
            raise RepositoryError(
                f"model name {name!r} is already used by {taken}: expected names unique "
                "across the backend folders (Triton serves them together); choose another name"
            )


def _check_existing_config(model_dir: Path, name: str, backend: str) -> None:
    path = model_dir / "config.pbtxt"
    if not path.exists():
        return
    try:
        config = load_config(path)
    except RepositoryError as error:
        # An unreadable config could be anyone's; replacing it would hide what it was.
        raise RepositoryError(f"{error}; refusing to write over it") from error
    if config.name and config.name != name:
        raise RepositoryError(
            f"{path} names model {config.name!r}: expected {name!r}; refusing to write over it"
        )
    if backend_of(config) != backend:
        raise RepositoryError(
            f"{path} is a {backend_of(config) or '(no backend)'!r} model: expected {backend!r}; "
            "refusing to write over it"
        )
