"""The command-line flags satwatch gives ``tritonserver``, kept apart from the process.

:class:`TritonServerConfig` knows every flag it may emit and refuses any other, so a typo
fails here with a clear message instead of as a cryptic server start-up error.

Example::

    folders = repository_folders(Path("triton-repository"), gpu=gpu_available())
    config = TritonServerConfig.for_repository(folders, backend_dir, admin_key="s3cret")
    config["http-port"] = 9000
    args = config.to_args()   # ["--model-repository=...", ..., "--http-port=9000"]
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from satwatch.exceptions import ServerError

LOGGER = logging.getLogger(__name__)

BACKEND_FOLDERS = ("onnx", "tensorrt", "pytorch", "python", "ensemble")
"""The repository's backend folders, each served as its own ``--model-repository``."""

MODEL_LOAD_THREADS = 32
"""Models Triton loads at once (``--model-load-thread-count``; see ``for_repository``)."""

ALLOWED_FLAGS = frozenset(
    {
        "model-repository",  # repeated: one per backend folder
        "backend-directory",
        "backend-config",
        "model-config-name",
        "model-control-mode",
        "load-model",
        "exit-on-error",
        "strict-readiness",
        "strict-model-config",
        "disable-auto-complete-config",
        "exit-timeout-secs",
        "model-load-thread-count",
        "http-address",
        "http-port",
        "http-restricted-api",
        "allow-http",
        "grpc-address",
        "grpc-port",
        "grpc-restricted-protocol",
        "allow-grpc",
        "metrics-address",
        "metrics-port",
        "allow-metrics",
        "allow-gpu-metrics",
        "log-verbose",
        "log-info",
        "log-warning",
        "log-error",
        "log-file",
        "id",
    }
)
"""Flags of ``tritonserver`` 2.51 that satwatch may set (checked with ``tritonserver --help``)."""

RESTRICTED_GROUPS = "model-repository,shared-memory"
"""API groups kept behind the admin key: load/unload, repository index, shared memory."""

ADMIN_HEADER = "admin-key"
"""The request header carrying the admin key."""


def gpu_available() -> bool:
    """Return whether an NVIDIA GPU is here (``/dev/nvidia0``, or ``nvidia-smi -L`` lists one)."""
    if Path("/dev/nvidia0").exists():
        return True
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and b"GPU" in listed.stdout


def repository_folders(repository: Path, gpu: bool) -> list[Path]:
    """Return the backend folders of ``repository`` to serve, logging each one skipped.

    Args:
        repository: The model repository root holding ``onnx/``, ``pytorch/``...
        gpu: Whether a GPU is present; ``tensorrt/`` is skipped without one.

    Raises:
        ServerError: If no folder holds any model.
    """
    folders = []
    for name in BACKEND_FOLDERS:
        folder = repository / name
        models = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        if not models:
            LOGGER.info("skipping %s: absent or holds no model folder", folder)
        elif name == "tensorrt" and not gpu:
            LOGGER.info("skipping %s: TensorRT plans need an NVIDIA GPU and none is here", folder)
        else:
            folders.append(folder.resolve())
    if not folders:
        raise ServerError(
            f"repository {repository}: expected model folders in one of "
            f"{', '.join(BACKEND_FOLDERS)}, got none"
        )
    return folders


def served_config(model: Path, config_name: str | None) -> Path:
    """The config file Triton reads for ``model``: ``configs/<name>.pbtxt`` where present."""
    named = model / "configs" / f"{config_name}.pbtxt"
    return named if config_name and named.is_file() else model / "config.pbtxt"


def configs_complete(folders: list[Path], config_name: str | None) -> bool:
    """Whether every model's served config declares its inputs and outputs.

    Then Triton's auto-complete has nothing to add, and turning it off saves the short-lived
    stub process the Python backend starts per model just to ask it. A missing folder, or a
    missing, unreadable or partial config, keeps auto-complete on (Triton fills it, or reports
    the problem).
    """
    if not all(folder.is_dir() for folder in folders):
        return False
    for folder in folders:
        for model in (p for p in folder.iterdir() if p.is_dir()):
            path = served_config(model, config_name)
            try:
                config = text_format.Parse(path.read_text(), mc.ModelConfig())
            except (OSError, text_format.ParseError):
                return False
            if not (config.input and config.output):
                return False
    return True


@dataclass
class TritonServerConfig:
    """The flags of one ``tritonserver`` run.

    Attributes:
        model_repositories: Folders passed as repeated ``--model-repository`` flags.
        flags: Every other flag, name without ``--`` -> value (``None`` for a bare switch).
    """

    model_repositories: list[Path]
    flags: dict[str, str | int | bool | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.flags:
            self._check(name)

    @staticmethod
    def _check(name: str) -> None:
        if name not in ALLOWED_FLAGS or name == "model-repository":
            raise ServerError(
                f"unknown tritonserver flag {name!r}: expected one of "
                f"{', '.join(sorted(ALLOWED_FLAGS - {'model-repository'}))}"
            )

    def __setitem__(self, name: str, value: str | int | bool | None) -> None:
        self._check(name)
        self.flags[name] = value

    def __getitem__(self, name: str) -> str | int | bool | None:
        return self.flags[name]

    def __contains__(self, name: object) -> bool:
        return name in self.flags

    @classmethod
    def for_repository(
        cls,
        repositories: list[Path],
        backend_directory: Path,
        *,
        gpu: bool = False,
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        admin_key: str | None = None,
    ) -> TritonServerConfig:
        """Return satwatch's standard flags.

        Failed models leave the others serving (``exit-on-error=false``, readiness not
        strict); models load explicitly so later versions can be loaded over the API; the
        repository and shared-memory APIs need ``admin_key`` unless it is ``None``.
        """
        flags: dict[str, str | int | bool | None] = {
            "backend-directory": str(backend_directory),
            "exit-on-error": False,
            "strict-readiness": False,
            "model-control-mode": "explicit",
            "load-model": "*",
            # Each model starts a Python stub, mostly waiting on imports: loading 32 at once
            # made the 60-model repository READY in 20-21 s against 33-35 s with Triton's
            # default, on 2 cores (16: 23-25 s, 64: 20 s; measured 2026-12-02).
            "model-load-thread-count": MODEL_LOAD_THREADS,
            "http-address": host,
            "http-port": http_port,
            "grpc-address": host,
            "grpc-port": grpc_port,
            "metrics-address": host,
            "metrics-port": metrics_port,
            "log-verbose": 0,
        }
        config_name = None if gpu else "cpu"
        if config_name:
            # Reads <model>/configs/cpu.pbtxt where present, config.pbtxt elsewhere.
            flags["model-config-name"] = config_name
            flags["allow-gpu-metrics"] = False
        if configs_complete(list(repositories), config_name):
            # The Python backend starts one stub per model only to auto-complete its config:
            # without them the 88-model seed repository was READY in 20-21 s against 44-48 s
            # (2 cores, measured 2026-12-02). A model loaded later through the API then needs
            # a complete config too.
            flags["disable-auto-complete-config"] = None
        if admin_key is not None:
            restriction = f"{RESTRICTED_GROUPS}:{ADMIN_HEADER}={admin_key}"
            flags["http-restricted-api"] = restriction
            flags["grpc-restricted-protocol"] = restriction
        return cls(list(repositories), flags)

    def _pairs(self) -> Iterator[tuple[str, str | None]]:
        for folder in self.model_repositories:
            yield "model-repository", str(folder)
        for name, value in self.flags.items():
            if isinstance(value, bool):
                yield name, "true" if value else "false"
            else:
                yield name, None if value is None else str(value)

    def to_args(self) -> list[str]:
        """Return the flags as ``tritonserver`` arguments (``--name=value``)."""
        return [
            f"--{name}" if value is None else f"--{name}={value}" for name, value in self._pairs()
        ]

    def redacted_args(self) -> list[str]:
        """Return :meth:`to_args` with the admin key hidden, for logs."""
        marker = f"{ADMIN_HEADER}="
        return [
            arg.split(marker, 1)[0] + marker + "***" if marker in arg else arg
            for arg in self.to_args()
        ]
