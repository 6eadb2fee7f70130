"""Run the embedded ``tritonserver`` process: start, wait until ready, stop.

The server runs in its own process group (with its Python backend stubs), with the venv's
``bin/`` first on ``PATH`` so the stubs import the venv's packages, and with the wheel's
``nvidia_pytriton.libs/`` on ``LD_LIBRARY_PATH``. Stopping sends SIGINT (Triton unloads its
models and ends its stubs), then SIGKILL to the whole group after a timeout, or as soon as no
live stub is left while the server still waits for a dead one, so no
``triton_python_backend_stub`` is left behind and a dead stub never holds the shutdown up.

Example::

    server = TritonServer(config, log_file=Path("build/triton.log"))
    server.start()
    server.wait_ready(timeout=60)
    ...
    server.stop()
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import tritonclient.http as httpclient

from satwatch.exceptions import ServerError
from satwatch.server.backend_common import REPOSITORIES_ENV
from satwatch.server.backends import TritonDistribution, find_distribution
from satwatch.server.config import TritonServerConfig
from satwatch.server.supervisor import live_stubs, remove_shared_memory, stub_command_lines

LOGGER = logging.getLogger(__name__)


def server_environment(
    distribution: TritonDistribution, config: TritonServerConfig, base: dict | None = None
) -> dict[str, str]:
    """Return the environment ``tritonserver`` needs.

    The venv's ``bin/`` goes first on ``PATH``: the stub then runs with the venv's packages
    (``PYTHONPATH`` or ``VIRTUAL_ENV`` alone do not do it; checked).
    """
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, *filter(None, [env.get("PATH")])])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(distribution.libs), *filter(None, [env.get("LD_LIBRARY_PATH")])]
    )
    # Lets satwatch's backends find a model's file while auto-completing its config.
    env[REPOSITORIES_ENV] = os.pathsep.join(str(p) for p in config.model_repositories)
    return env


def process_group_members(pgid: int) -> list[int]:
    """Return the live (not zombie) processes of process group ``pgid``."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and _alive(pid):
                members.append(pid)
        except OSError:  # ended meanwhile
            continue
    return members


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _running(pid: int, process: subprocess.Popen | None) -> bool:
    return process.poll() is None if process is not None else _alive(pid)


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _exited_or_only_dead_stubs_left(
    pid: int, process: subprocess.Popen | None, grace: float = 2.0
) -> Callable[[], bool]:
    """A stop condition: the server exited, or it has had no live stub for ``grace`` seconds.

    Triton waits up to its exit timeout (30 s) for a model whose stub is dead to unload, which
    never happens; once every live stub has ended, nothing is left that a clean exit saves.
    """
    since: list[float] = []

    def done() -> bool:
        if not _running(pid, process):
            return True
        if live_stubs(pid):
            since.clear()
            return False
        since[:] = since or [time.monotonic()]
        return time.monotonic() - since[0] > grace

    return done


def stop_process_group(
    pid: int, timeout: float = 30.0, process: subprocess.Popen | None = None
) -> None:
    """Stop the server ``pid`` (leader of its own group): SIGINT, then SIGKILL the group.

    Args:
        pid: The ``tritonserver`` process id, which is also its process group id.
        timeout: Seconds to wait for a clean exit before killing.
        process: The ``Popen`` when this process started it (so it is reaped).
    """
    regions = [args[2] for args in stub_command_lines(pid).values()]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    _wait_until(_exited_or_only_dead_stubs_left(pid, process), timeout)
    if _running(pid, process):
        LOGGER.warning(
            "tritonserver %d did not exit (waiting for models whose backend stub is dead, or "
            "past %.0f s); killing it",
            pid,
            timeout,
        )
    else:
        # A clean exit ends the stubs too; give them a moment before killing what is left.
        _wait_until(lambda: not process_group_members(pid), 2.0)
    if process_group_members(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _wait_until(lambda: not process_group_members(pid), 5.0)
    if process is not None:
        process.wait(timeout=10)
    remove_shared_memory(regions)


class TritonServer:
    """One ``tritonserver`` process.

    Args:
        config: Its flags.
        log_file: Where its output goes (created with its parents).
        distribution: The Triton files; default :func:`find_distribution`.
    """

    def __init__(
        self,
        config: TritonServerConfig,
        log_file: Path,
        distribution: TritonDistribution | None = None,
    ) -> None:
        self.config = config
        self.log_file = Path(log_file)
        self.distribution = distribution or find_distribution()
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        """The server's process id (and process group id)."""
        if self.process is None:
            raise ServerError("tritonserver: expected a started server, got none started")
        return self.process.pid

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the HTTP endpoint."""
        return f"http://{self._client_host()}:{self.config['http-port']}"

    def _client_host(self) -> str:
        host = str(self.config.flags.get("http-address", "127.0.0.1"))
        return "127.0.0.1" if host in ("0.0.0.0", "") else host

    def start(self) -> None:
        """Start the server in its own process group, output to the log file (truncated)."""
        args = [str(self.distribution.server), *self.config.to_args()]
        LOGGER.info("starting %s", " ".join(self.config.redacted_args()))
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(self.distribution, self.config),
                start_new_session=True,  # its own group: Ctrl-C reaches us, we stop it
            )

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until ``/v2/health/ready`` answers 200 (``is_server_ready``); return the seconds.

        Raises:
            ServerError: If the server exits or is not ready within ``timeout``; the message
                carries the end of the log.
        """
        started = time.monotonic()
        address = f"{self._client_host()}:{self.config['http-port']}"
        with httpclient.InferenceServerClient(
            address, connection_timeout=2, network_timeout=2
        ) as client:
            while time.monotonic() - started < timeout:
                if self.process is not None and self.process.poll() is not None:
                    raise ServerError(
                        f"tritonserver exited with code {self.process.returncode} before it "
                        f"was ready; log {self.log_file}:\n{self.log_tail()}"
                    )
                try:
                    if client.is_server_ready():
                        return time.monotonic() - started
                # Not listening yet (refused, timed out) or closed the connection mid-answer.
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.1)
        raise ServerError(
            f"tritonserver: expected ready within {timeout:.0f} s, got not ready; "
            f"log {self.log_file}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 15) -> str:
        """Return the last lines of the server log."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def is_running(self) -> bool:
        """Whether the process is still running."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and every process of its group; idempotent."""
        if self.process is None:
            return
        stop_process_group(self.process.pid, timeout, self.process)
        LOGGER.info("tritonserver %d stopped (exit code %s)", self.pid, self.process.returncode)
