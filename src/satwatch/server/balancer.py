"""Several embedded servers behind nginx: stateless replicas, one address.

A stream's state travels with its requests, so any replica scores any chunk the same way:
nginx spreads requests over the replicas (``proxy_pass`` for HTTP, ``grpc_pass`` for gRPC)
and passes a request that a dead replica did not answer on to the next one (the requests are
pure functions of their inputs, so sending one again is safe: ``non_idempotent``). The
client retries too (:mod:`satwatch.client.connection`), for the requests nginx cannot pass on.

Each replica keeps its own metrics port; nginx does not balance metrics (Prometheus scrapes
every replica).

Example::

    replicas = start_replicas(repository, 3, ServerPorts(), log_folder=Path("build/replicas"))
    ...
    replicas.stop()
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from satwatch.exceptions import ServerError
from satwatch.server.embedded import RunningServer, ServerPorts, start_embedded_server

LOGGER = logging.getLogger(__name__)

NGINX_FALLBACK = Path("/usr/sbin/nginx")
"""Where Debian's nginx package puts the binary (often not on a user's PATH)."""

FAIL_TIMEOUT_S = 10
"""Seconds nginx leaves a replica out after a request to it failed."""


def find_nginx() -> Path:
    """The nginx binary.

    Raises:
        ServerError: If there is none (with how to install it).
    """
    found = shutil.which("nginx")
    if found:
        return Path(found)
    if NGINX_FALLBACK.is_file():
        return NGINX_FALLBACK
    raise ServerError("nginx not found: install it (Debian: apt-get install nginx) for replicas")


def nginx_config(host: str, front: ServerPorts, replicas: list[ServerPorts], prefix: Path) -> str:
    """The nginx.conf balancing HTTP and gRPC of ``front`` over ``replicas`` (``prefix``: its
    scratch folder: pid, logs and temporary bodies, so nginx needs no system folder)."""
    http = "\n".join(
        f"    server 127.0.0.1:{r.http} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s;"
        for r in replicas
    )
    grpc = "\n".join(
        f"    server 127.0.0.1:{r.grpc} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s;"
        for r in replicas
    )
    tries = len(replicas)
    return f"""# Written by satwatch serve --replicas: {len(replicas)} embedded Triton servers.
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  # Telemetry chunks and their answers have no size limit of nginx's own.
  client_max_body_size 0;
  upstream triton_http {{
{http}
    keepalive 32;
  }}
  upstream triton_grpc {{
{grpc}
    keepalive 32;
  }}
  server {{
    listen {host}:{front.http};
    location / {{
      proxy_pass http://triton_http;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 300s;
      # A request carries its stream's state: any replica may answer it again.
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries {tries};
    }}
  }}
  server {{
    listen {host}:{front.grpc} http2;
    location / {{
      grpc_pass grpc://triton_grpc;
      grpc_read_timeout 300s;
      grpc_next_upstream error timeout http_502 http_503 non_idempotent;
      grpc_next_upstream_tries {tries};
    }}
  }}
}}
"""


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Balancer:
    """nginx in front of the replicas, in its own process group."""

    def __init__(self, host: str, front: ServerPorts, replicas: list[ServerPorts], prefix: Path):
        self.host, self.front, self.prefix = host, front, Path(prefix)
        self.config = nginx_config(host, front, replicas, self.prefix)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start nginx, wait until both front ports accept connections.

        Raises:
            ServerError: If nginx is missing, refuses the config or does not listen in time.
        """
        nginx = find_nginx()
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.config)
        log = (self.prefix / "nginx.out").open("wb")
        self.process = subprocess.Popen(
            [str(nginx), "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        ports = (self.front.http, self.front.grpc)
        while not all(_accepts(self.host, port) for port in ports):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = (self.prefix / "nginx.out").read_text(errors="replace").strip()
                raise ServerError(f"nginx did not start on {self.host}:{ports}: {output}")
            time.sleep(0.1)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop nginx and its worker (SIGTERM: fast shutdown; then SIGKILL); idempotent."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Replicas:
    """Running replicas and the balancer in front of them."""

    servers: list[RunningServer]
    balancer: Balancer

    def stop(self) -> None:
        """Stop the balancer, then every replica (all at once: each unloads every model)."""
        self.balancer.stop()
        if self.servers:
            with ThreadPoolExecutor(len(self.servers)) as pool:
                list(pool.map(lambda running: running.server.stop(), self.servers))


def start_replicas(
    repository: Path,
    count: int,
    front: ServerPorts,
    *,
    log_folder: Path,
    host: str = "127.0.0.1",
    admin_key: str | None = None,
    timeout: float = 120.0,
) -> Replicas:
    """Start ``count`` embedded servers on free loopback ports and nginx on ``front``.

    Raises:
        ServerError: If ``count`` < 1, nginx is missing, or a replica does not get ready (the
            ones started are stopped then).
    """
    if count < 1:
        raise ServerError(f"replicas: expected at least 1, got {count}")
    find_nginx()  # before minutes of model loading
    ports = [ServerPorts.free() for _ in range(count)]

    def start(index: int) -> RunningServer:
        return start_embedded_server(
            repository,
            ports=ports[index],
            log_file=Path(log_folder) / f"replica-{index + 1}.log",
            admin_key=admin_key,
            timeout=timeout,
        )

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(start, index) for index in range(count)]
    servers, failures = [], []
    for future in futures:
        try:
            servers.append(future.result())
        except ServerError as error:
            failures.append(str(error))
    balancer = Balancer(host, front, ports, Path(log_folder) / "nginx")
    replicas = Replicas(servers, balancer)
    if failures:
        replicas.stop()
        raise ServerError(f"{len(failures)} of {count} replicas did not start: {failures[0]}")
    try:
        balancer.start()
    except ServerError:
        replicas.stop()
        raise
    return replicas
