"""Serve a model repository with the embedded Triton: the steps of ``satwatch serve``.

Picks the backend folders to serve, assembles the backend directory, starts
``tritonserver``, waits until it is ready and reads the model table.

Example::

    running = start_embedded_server(Path("triton-repository"), ports=ServerPorts(),
                                    admin_key="s3cret", log_file=Path("build/triton.log"))
    print(running.table)
    running.server.stop()
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

from satwatch.exceptions import ServerError
from satwatch.server.backends import assemble_backend_directory
from satwatch.server.config import TritonServerConfig, gpu_available, repository_folders
from satwatch.server.launcher import TritonServer
from satwatch.server.status import ModelStatus, explain_from_log, model_table

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerPorts:
    """The three ports of one server (Triton's defaults)."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> ServerPorts:
        """Return three ports free at this moment on 127.0.0.1."""
        sockets = [socket.socket() for _ in range(3)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            return cls(*(sock.getsockname()[1] for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def check_ports_free(host: str, ports: ServerPorts) -> None:
    """Refuse to start when a port is taken (e.g. ``satwatch serve`` already runs on it).

    Raises:
        ServerError: Naming the port, what uses it when that can be told, and what to do.
    """
    for label, port in (("HTTP", ports.http), ("gRPC", ports.grpc), ("metrics", ports.metrics)):
        with socket.socket() as probe:
            # As servers do: connections of an earlier server in TIME_WAIT do not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise ServerError(
                    f"{label} port {port} on {host} is already in use{_user_of(port)} "
                    f"({error.strerror}); is a server already running? Stop it with "
                    "`satwatch stop` or choose other ports (--http-port, --grpc-port, "
                    "--metrics-port)"
                ) from None


def _user_of(port: int) -> str:
    """`` by pid N (name)`` for the process listening on ``port``, when it can be told."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return ""
    for connection in connections:
        if connection.laddr and connection.laddr.port == port and connection.pid:
            with contextlib.suppress(psutil.Error):
                return f" by pid {connection.pid} ({psutil.Process(connection.pid).name()})"
    return ""


@dataclass
class RunningServer:
    """A started, ready server.

    Attributes:
        server: The process runner (``server.stop()`` ends it).
        table: Every model with version, state and reason at start-up.
        startup_seconds: From process start to ``/v2/health/ready`` answering 200.
        http_url: ``http://host:port``.
        grpc_url: ``host:port`` as ``tritonclient.grpc`` expects it.
        metrics_url: ``http://host:port/metrics``.
        admin_key: The key of the restricted APIs (``None`` with ``allow_admin``).
    """

    server: TritonServer
    table: list[ModelStatus]
    startup_seconds: float
    http_url: str
    grpc_url: str
    metrics_url: str
    admin_key: str | None


def start_embedded_server(
    repository: Path,
    *,
    ports: ServerPorts,
    log_file: Path,
    host: str = "127.0.0.1",
    admin_key: str | None = None,
    timeout: float = 120.0,
    backend_directory: Path | None = None,
) -> RunningServer:
    """Serve ``repository`` and return once it is ready.

    Args:
        repository: Root holding ``onnx/ pytorch/ python/ ensemble/`` (and ``tensorrt/``).
        ports: HTTP, gRPC and metrics ports.
        log_file: The server's log.
        host: Address to bind.
        admin_key: Key guarding the model-repository and shared-memory APIs; ``None``
            leaves them open.
        timeout: Seconds to wait for readiness.
        backend_directory: Where to assemble the backends; default ``build/triton-backends``.

    Raises:
        ServerError: If the repository has no model or the server does not get ready (the
            server is stopped then).
    """
    gpu = gpu_available()
    folders = repository_folders(Path(repository), gpu)
    backends = assemble_backend_directory(backend_directory)
    config = TritonServerConfig.for_repository(
        folders,
        backends,
        gpu=gpu,
        host=host,
        http_port=ports.http,
        grpc_port=ports.grpc,
        metrics_port=ports.metrics,
        admin_key=admin_key,
    )
    server = TritonServer(config, log_file)
    server.start()
    try:
        seconds = server.wait_ready(timeout)
        table = read_table(server, admin_key)
    except (ServerError, KeyboardInterrupt):
        server.stop()
        raise
    client_host = server.http_url.split("//", 1)[1].rsplit(":", 1)[0]
    LOGGER.info("tritonserver ready in %.1f s", seconds)
    return RunningServer(
        server=server,
        table=table,
        startup_seconds=seconds,
        http_url=server.http_url,
        grpc_url=f"{client_host}:{ports.grpc}",
        metrics_url=f"http://{client_host}:{ports.metrics}/metrics",
        admin_key=admin_key,
    )


def read_table(server: TritonServer, admin_key: str | None) -> list[ModelStatus]:
    """Return the model table of ``server``, reasons completed from its log."""
    table = model_table(server.http_url, admin_key)
    try:
        log_text = server.log_file.read_text(errors="replace")
    except OSError:
        log_text = ""
    return explain_from_log(table, log_text)
