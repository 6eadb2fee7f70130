"""``satwatch serve``, ``stop``, ``status`` and ``sample-demo`` (the server alone, in seconds)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from satwatch.commands._console import CONSOLE, ERRORS, fail
from satwatch.exceptions import SatwatchError, ServerError
from satwatch.paths import PROJECT_ROOT, repository_dir
from satwatch.server.embedded import (
    RunningServer,
    ServerPorts,
    check_ports_free,
    is_loopback,
    start_embedded_server,
)
from satwatch.server.launcher import process_group_members, stop_process_group
from satwatch.server.status import ModelStatus, model_table, short_reason
from satwatch.server.supervisor import ADMIN_KEY_ENV, Recovery, Supervisor, start_thread

LOGGER = logging.getLogger(__name__)

DEFAULT_PID_FILE = PROJECT_ROOT / "build" / "triton.pid"
DEFAULT_LOG_FILE = PROJECT_ROOT / "build" / "triton.log"


def print_table(table: list[ModelStatus], console: Console = CONSOLE) -> None:
    """Print the model table: name, version, state and why it is not ready."""
    view = Table(title="Models")
    for column in ("model", "version", "state", "reason"):
        view.add_column(column, overflow="fold")
    for row in table:
        colour = "green" if row.ready else "red"
        view.add_row(row.name, row.version, f"[{colour}]{row.state}[/]", short_reason(row.reason))
    console.print(view)


def _print_running(running: RunningServer) -> None:
    print_table(running.table)
    ready = sum(row.ready for row in running.table)
    CONSOLE.print(
        f"{ready}/{len(running.table)} models READY after {running.startup_seconds:.1f} s · "
        f"HTTP {running.http_url} · gRPC {running.grpc_url} · metrics {running.metrics_url}",
        highlight=False,
    )


def _read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    # A stale file may name a recycled pid: only a live tritonserver counts.
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"tritonserver" in command else None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so both stop the server the same clean way."""

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_recovery(recovery: Recovery) -> None:
    colour = "red" if recovery.error else "yellow"
    CONSOLE.print(f"[{colour}]{recovery.describe()}[/]", highlight=False)


def _wait_foreground(running: RunningServer, timeout: float, supervised: bool) -> None:
    CONSOLE.print("serving; Ctrl-C or SIGTERM stops it")
    watcher = None
    if supervised:
        supervisor = Supervisor(running.server.pid, _address(running), running.admin_key)
        _, watcher = start_thread(supervisor, on_recovery=_print_recovery)
    try:
        while running.server.is_running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        if watcher is not None:
            watcher.set()  # no reload while the models unload for the shutdown
        CONSOLE.print("stopping tritonserver...")
        running.server.stop(timeout)
        CONSOLE.print(f"tritonserver {running.server.pid} stopped")
        return
    finally:
        if watcher is not None:
            watcher.set()
    code = running.server.process.returncode
    running.server.stop(timeout)  # its stubs, if any are left
    if code != 0:  # 0: stopped from elsewhere (`satwatch stop`)
        raise ServerError(f"tritonserver exited with code {code}; log {running.server.log_file}")
    CONSOLE.print(f"tritonserver {running.server.pid} stopped")


def serve(
    repository: Path = typer.Option(
        None,
        "--repository",
        "-r",
        help="Model repository root (default: $SATWATCH_REPOSITORY or ./triton-repository).",
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 for every interface)."),
    http_port: int = typer.Option(8000, help="HTTP/REST port."),
    grpc_port: int = typer.Option(8001, help="gRPC port."),
    metrics_port: int = typer.Option(8002, help="Prometheus metrics port."),
    admin_key: str = typer.Option(
        None,
        envvar="SATWATCH_ADMIN_KEY",
        help="Key (header 'admin-key') for the model load/unload, repository index and "
        "shared-memory APIs. A random one is made and printed when not given.",
    ),
    allow_admin: bool = typer.Option(
        False, "--allow-admin", help="Leave those APIs open to anyone who reaches the port."
    ),
    timeout: float = typer.Option(120.0, help="Seconds to wait for the server to get ready."),
    detach: bool = typer.Option(
        False, "--detach", help="Return once ready and leave the server running in the background."
    ),
    pid_file: Path = typer.Option(DEFAULT_PID_FILE, help="Where the server's pid is written."),
    log_file: Path = typer.Option(DEFAULT_LOG_FILE, help="Where the server's output goes."),
    supervise: bool = typer.Option(
        True,
        "--supervise/--no-supervise",
        help="Reload a model whose backend stub died (crash, kill -9); recoveries are printed "
        "(foreground) or logged to <log-file stem>.supervisor.log (--detach).",
    ),
    replicas: int = typer.Option(
        1,
        "--replicas",
        min=1,
        help="Run this many servers on free loopback ports behind nginx (Debian's package), "
        "which listens on --http-port/--grpc-port and passes a request a dead replica did "
        "not answer on to another one. In the foreground only; each replica's metrics stay "
        "on its own port.",
    ),
) -> None:
    """Serve the model repository with the embedded Triton server (no GPU, no Docker needed).

    Each backend folder (onnx, pytorch, python, ensemble; tensorrt only with a GPU) becomes
    one --model-repository. Models that fail to load are listed with the reason; the others
    serve. Prints the model table once ready. A supervisor reloads any model whose backend
    stub dies, within about a second of the death plus the model's load time. With
    --replicas N, N such servers run behind nginx on the given HTTP and gRPC ports.
    """
    with _sigterm_as_interrupt():
        try:
            if replicas > 1:
                if detach:
                    raise ServerError("--replicas runs in the foreground: leave out --detach")
                key = None if allow_admin else admin_key or secrets.token_urlsafe(16)
                _serve_replicas(
                    repository_dir(repository),
                    replicas,
                    ServerPorts(http_port, grpc_port, metrics_port),
                    host=host,
                    admin_key=key,
                    timeout=timeout,
                    log_folder=log_file.parent / "replicas",
                    supervise=supervise,
                    show_key=key is not None and not admin_key,
                )
                return
            _serve(
                repository_dir(repository),
                ServerPorts(http_port, grpc_port, metrics_port),
                host=host,
                admin_key=admin_key,
                allow_admin=allow_admin,
                timeout=timeout,
                detach=detach,
                pid_file=pid_file,
                log_file=log_file,
                supervise=supervise,
            )
        except SatwatchError as error:
            raise fail(error) from None
        except KeyboardInterrupt:
            raise typer.Exit(code=130) from None


def _serve(
    repository: Path,
    ports: ServerPorts,
    *,
    host: str,
    admin_key: str | None,
    allow_admin: bool,
    timeout: float,
    detach: bool,
    pid_file: Path,
    log_file: Path,
    supervise: bool,
) -> None:
    if (pid := _read_pid(pid_file)) is not None:
        raise ServerError(
            f"a server already runs with pid {pid} (pid file {pid_file}); "
            "run `satwatch stop` or give another --pid-file"
        )
    _warn_if_exposed(host)
    check_ports_free(host, ports)
    key = None if allow_admin else admin_key or secrets.token_urlsafe(16)
    running = start_embedded_server(
        repository, ports=ports, log_file=log_file, host=host, admin_key=key, timeout=timeout
    )
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{running.server.pid}\n")
    try:
        _print_running(running)
        if key is not None and not admin_key:
            CONSOLE.print(f"admin key (header 'admin-key'): {key}", highlight=False)
        if detach:
            if supervise:
                _start_detached_supervisor(running, log_file, pid_file)
            CONSOLE.print(
                f"running in the background, pid {running.server.pid}, log {log_file}; "
                "`satwatch stop` ends it",
                highlight=False,
            )
            return
        _wait_foreground(running, timeout=30.0, supervised=supervise)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM once the server is up is the normal way to end it.
        running.server.stop()
        CONSOLE.print(f"tritonserver {running.server.pid} stopped")
    except BaseException:
        running.server.stop()
        raise
    finally:
        if not detach or not running.server.is_running():
            pid_file.unlink(missing_ok=True)


def _serve_replicas(
    repository: Path,
    count: int,
    front: ServerPorts,
    *,
    host: str,
    admin_key: str | None,
    timeout: float,
    log_folder: Path,
    supervise: bool,
    show_key: bool,
) -> None:
    """Replicas behind nginx until Ctrl-C / SIGTERM; a replica that dies is reported."""
    from satwatch.server.balancer import start_replicas

    _warn_if_exposed(host)
    check_ports_free(host, front)
    with CONSOLE.status(f"starting {count} replicas..."):
        replicas = start_replicas(
            repository, count, front, log_folder=log_folder, host=host,
            admin_key=admin_key, timeout=timeout,
        )  # fmt: skip
    watchers = []
    try:
        _print_replicas(replicas.servers, host, front, admin_key if show_key else None)
        if supervise:
            for running in replicas.servers:
                supervisor = Supervisor(running.server.pid, _address(running), admin_key)
                watchers.append(start_thread(supervisor, on_recovery=_print_recovery)[1])
        alive = {running.server.pid for running in replicas.servers}
        CONSOLE.print("serving; Ctrl-C or SIGTERM stops every replica and nginx")
        while alive:
            for running in replicas.servers:
                if running.server.pid in alive and not running.server.is_running():
                    alive.discard(running.server.pid)
                    ERRORS.print(
                        f"replica pid {running.server.pid} exited; {len(alive)} serving",
                        highlight=False,
                    )
            time.sleep(0.5)
        raise ServerError("every replica exited")
    except KeyboardInterrupt:
        CONSOLE.print("stopping the replicas...")
    finally:
        for watcher in watchers:
            watcher.set()
        replicas.stop()


def _print_replicas(
    servers: list[RunningServer], host: str, front: ServerPorts, admin_key: str | None
) -> None:
    view = Table(title="Replicas")
    for column in ("replica", "pid", "models READY", "HTTP", "gRPC", "metrics", "ready after"):
        view.add_column(column)
    for index, running in enumerate(servers, 1):
        ready = f"{sum(row.ready for row in running.table)}/{len(running.table)}"
        view.add_row(
            str(index), str(running.server.pid), ready, running.http_url, running.grpc_url,
            running.metrics_url, f"{running.startup_seconds:.1f} s",
        )  # fmt: skip
    CONSOLE.print(view)
    CONSOLE.print(
        f"nginx balances HTTP http://{host}:{front.http} · gRPC {host}:{front.grpc}",
        highlight=False,
    )
    if admin_key is not None:
        CONSOLE.print(f"admin key (header 'admin-key'): {admin_key}", highlight=False)


def _address(running: RunningServer) -> str:
    return running.http_url.split("//", 1)[1]


def supervisor_log(log_file: Path) -> Path:
    """Where a detached server's supervisor logs (beside the server log)."""
    return log_file.with_name(f"{log_file.stem}.supervisor.log")


def _start_detached_supervisor(running: RunningServer, log_file: Path, pid_file: Path) -> None:
    """Start ``python -m satwatch.server.supervisor`` in a session of its own.

    It ends by itself once the server has exited (``satwatch stop``, or a crash), removing
    the pid file a crashed server leaves.
    """
    pid = running.server.pid
    env = dict(os.environ)
    env.pop(ADMIN_KEY_ENV, None)
    if running.admin_key:
        env[ADMIN_KEY_ENV] = running.admin_key
    command = [
        sys.executable,
        "-m",
        "satwatch.server.supervisor",
        f"--server-pid={pid}",
        f"--http-address={_address(running)}",
        f"--log-file={supervisor_log(log_file)}",
        f"--pid-file={pid_file}",
    ]
    subprocess.Popen(  # noqa: S603 - our own module, no shell
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        # Not in the server's group: that is another session, which setpgid may not join.
        start_new_session=True,
    )


def _warn_if_exposed(host: str) -> None:
    if is_loopback(host):
        return
    ERRORS.print(
        f"[bold yellow]warning:[/] binding {host}: Triton has no authentication, so anyone "
        "who reaches these ports can run inference and read metrics. Only the model-control "
        "and shared-memory APIs are guarded (--admin-key; never --allow-admin here). Protect "
        "the ports with a firewall or security group, put a TLS/auth reverse proxy in front "
        "(nginx, an ingress), or keep 127.0.0.1 and reach it through an SSH tunnel.",
        highlight=False,
        soft_wrap=True,
    )


def stop(
    pid_file: Path = typer.Option(DEFAULT_PID_FILE, help="The pid file `satwatch serve` wrote."),
    timeout: float = typer.Option(30.0, help="Seconds to wait for a clean exit before killing."),
) -> None:
    """Stop a server started by `satwatch serve` (SIGINT, then SIGKILL of its whole group)."""
    pid = _read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        raise fail(ServerError(f"no running tritonserver named by {pid_file}"))
    stop_process_group(pid, timeout)
    pid_file.unlink(missing_ok=True)
    left = process_group_members(pid)
    if left:
        raise fail(ServerError(f"processes {left} of tritonserver {pid} are still alive"))
    CONSOLE.print(f"tritonserver {pid} stopped")


def status(
    url: str = typer.Option("http://127.0.0.1:8000", help="The server's HTTP URL."),
    admin_key: str = typer.Option(None, envvar="SATWATCH_ADMIN_KEY", help="The admin key, if set."),
) -> None:
    """Print the model table of a running server (repository index API)."""
    try:
        print_table(model_table(url.rstrip("/"), admin_key))
    except SatwatchError as error:
        raise fail(error) from None


def demo(
    workdir: Path = typer.Option(
        None, help="Folder for the sample repository and log (default: a temporary one)."
    ),
    http_port: int = typer.Option(0, help="HTTP port (default: a free one)."),
    grpc_port: int = typer.Option(0, help="gRPC port (default: a free one)."),
    metrics_port: int = typer.Option(0, help="Metrics port (default: a free one)."),
) -> None:
    """Build a tiny demonstration repository, serve it, query it over HTTP and gRPC, stop.

    Every backend runs: ONNX, TorchScript, Python and an ensemble chaining them. Exits 1
    when an answer differs from the expected numbers.
    """
    free = ServerPorts.free()
    ports = ServerPorts(
        http_port or free.http, grpc_port or free.grpc, metrics_port or free.metrics
    )
    run = _run_demo_in(workdir, ports)
    if not all(answer.ok for answer in run.answers):
        raise fail(ServerError("some demo answers differ from the expected numbers"))
    CONSOLE.print("[green]every answer is exact[/]")


def _run_demo_in(workdir: Path | None, ports: ServerPorts):
    from satwatch.server.demo import run_demo  # noqa: PLC0415 - torch/onnx import only here

    def on_ready(running: RunningServer) -> None:
        _print_running(running)

    try:
        with CONSOLE.status("building the sample repository and starting Triton..."):
            if workdir is not None:
                result = run_demo(workdir, ports, on_ready=on_ready)
            else:
                with tempfile.TemporaryDirectory(prefix="satwatch-demo-") as folder:
                    result = run_demo(Path(folder), ports, on_ready=on_ready)
    except SatwatchError as error:
        raise fail(error) from None
    answers = Table(title="Answers")
    for column in ("model", "protocol", "output", "expected", "exact"):
        answers.add_column(column)
    for answer in result.answers:
        answers.add_row(
            answer.model,
            answer.protocol,
            str(answer.output.tolist()),
            str(answer.expected.tolist()),
            "[green]yes[/]" if answer.ok else "[red]NO[/]",
        )
    CONSOLE.print(answers)
    return result


COMMANDS: dict[str, Callable] = {
    "serve": serve,
    "stop": stop,
    "status": status,
    "sample-demo": demo,
}


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``stop``, ``status`` and ``sample-demo`` to the root ``satwatch`` app."""
    for name, command in COMMANDS.items():
        app.command(name)(command)
