"""Assemble the backend directory the embedded ``tritonserver`` runs with.

The ``nvidia-pytriton`` wheel carries Triton's server, its Python backend and one Python
backend stub per Python version. The directory built here holds::

    python/libtriton_python.so            copied: Triton refuses a library whose real path
                                          escapes the backend directory (checked)
    python/triton_python_backend_utils.py symlink to the wheel's
    python/triton_python_backend_stub     symlink to the stub for the running interpreter
    onnxruntime/model.py                  satwatch's Python-based ONNX Runtime backend
    pytorch/model.py                      satwatch's Python-based TorchScript backend

Each file is written to a temporary name and renamed, so servers started at the same time
can share one directory.

Example::

    backend_dir = assemble_backend_directory()
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from satwatch.exceptions import ServerError
from satwatch.paths import PROJECT_ROOT

LOGGER = logging.getLogger(__name__)

SATWATCH_BACKENDS = ("onnxruntime", "pytorch")
"""satwatch's own Python-based backends, packaged under ``satwatch/server/backends/``."""


@dataclass(frozen=True)
class TritonDistribution:
    """Where the ``nvidia-pytriton`` wheel keeps Triton's files.

    Attributes:
        root: The wheel's ``pytriton/tritonserver`` folder.
        libs: The wheel's ``nvidia_pytriton.libs`` folder (goes on ``LD_LIBRARY_PATH``).
    """

    root: Path
    libs: Path

    @property
    def server(self) -> Path:
        """The ``tritonserver`` executable."""
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        """The folder with ``libtriton_python.so`` and ``triton_python_backend_utils.py``."""
        return self.root / "backends" / "python"

    def stub(self, version: tuple[int, int] | None = None) -> Path:
        """The Python backend stub for ``version`` (default: the running interpreter)."""
        major, minor = version or sys.version_info[:2]
        return (
            self.root / "python_backend_stubs" / f"{major}.{minor}" / "triton_python_backend_stub"
        )


def find_distribution() -> TritonDistribution:
    """Locate the installed ``nvidia-pytriton`` wheel's Triton files.

    Raises:
        ServerError: If the wheel or one of its parts is missing.
    """
    try:
        import pytriton  # noqa: PLC0415 - only needed to find the wheel's folder
    except ImportError:
        raise ServerError(
            "expected the nvidia-pytriton wheel (Triton's server) installed, got no module "
            "'pytriton'; run `make install`"
        ) from None
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    distribution = TritonDistribution(root=root, libs=root.parents[1] / "nvidia_pytriton.libs")
    for needed in (distribution.server, distribution.python_backend, distribution.libs):
        if not needed.exists():
            raise ServerError(f"nvidia-pytriton is incomplete: expected {needed}, got nothing")
    if not distribution.stub().exists():
        have = sorted(p.name for p in (root / "python_backend_stubs").iterdir())
        raise ServerError(
            f"no Python backend stub for Python {sys.version_info[0]}.{sys.version_info[1]}: "
            f"expected {distribution.stub()}, the wheel has {have}"
        )
    return distribution


def default_backend_directory() -> Path:
    """Return ``build/triton-backends/py<X.Y>`` in the checkout."""
    major, minor = sys.version_info[:2]
    return PROJECT_ROOT / "build" / "triton-backends" / f"py{major}.{minor}"


def _write_atomically(target: Path, data: bytes, mode: int) -> None:
    if target.is_file() and not target.is_symlink() and target.read_bytes() == data:
        return
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
        handle.write(data)
    os.chmod(handle.name, mode)
    os.replace(handle.name, target)


def _link_atomically(target: Path, source: Path) -> None:
    if target.is_symlink() and Path(os.readlink(target)) == source:
        return
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(source)
    os.replace(temporary, target)


def assemble_backend_directory(
    target: Path | None = None, distribution: TritonDistribution | None = None
) -> Path:
    """Build (or refresh) the backend directory and return it.

    Args:
        target: Where to build it; default :func:`default_backend_directory`.
        distribution: The Triton files; default :func:`find_distribution`.
    """
    target = Path(target or default_backend_directory()).resolve()
    distribution = distribution or find_distribution()
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    library = distribution.python_backend / "libtriton_python.so"
    _write_atomically(python_dir / library.name, library.read_bytes(), 0o755)
    utils = distribution.python_backend / "triton_python_backend_utils.py"
    _link_atomically(python_dir / utils.name, utils)
    _link_atomically(python_dir / "triton_python_backend_stub", distribution.stub())
    packaged = resources.files("satwatch.server") / "backends"
    for name in SATWATCH_BACKENDS:
        (target / name).mkdir(exist_ok=True)
        source = (packaged / name / "model.py").read_bytes()
        _write_atomically(target / name / "model.py", source, 0o644)
    LOGGER.debug("backend directory ready at %s", target)
    return target
