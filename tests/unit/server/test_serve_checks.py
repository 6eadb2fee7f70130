"""What `satwatch serve` checks before it starts anything: exposure and busy ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from satwatch.cli import app
from satwatch.exceptions import ServerError
from satwatch.server.embedded import ServerPorts, check_ports_free, is_loopback


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on, on every interface."""
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "localhost", "::1"])
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "satwatch.example"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_a_busy_port_is_named(busy_port: int) -> None:
    free = ServerPorts.free()
    with pytest.raises(ServerError, match=rf"gRPC port {busy_port} on 0.0.0.0 is already in use"):
        check_ports_free("0.0.0.0", ServerPorts(free.http, busy_port, free.metrics))


def test_binding_every_interface_warns_that_triton_has_no_authentication(
    busy_port: int, tmp_path
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "serve",
            "--host",
            "0.0.0.0",
            "--http-port",
            str(busy_port),
            "--pid-file",
            str(tmp_path / "triton.pid"),
            "--repository",
            str(tmp_path),
        ],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 1
    assert "Triton has no authentication" in result.output
    assert "--admin-key" in result.output and "reverse proxy" in result.output
    assert f"HTTP port {busy_port} on 0.0.0.0 is already in use" in result.output
    assert not (tmp_path / "triton.pid").exists()


def test_loopback_binding_does_not_warn(busy_port: int, tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        ["serve", "--http-port", str(busy_port), "--pid-file", str(tmp_path / "triton.pid")],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 1
    assert "already in use" in result.output
    assert "no authentication" not in result.output
