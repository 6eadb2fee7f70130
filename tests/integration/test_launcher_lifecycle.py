"""The launcher: models that fail to load, clean shutdown, no process left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from satwatch.server.embedded import ServerPorts
from satwatch.server.launcher import process_group_members
from satwatch.server.sample_repository import add_broken_models
from satwatch.server.supervisor import live_stubs, stub_command_lines

from .conftest import SATWATCH, WIDE_OUTPUT, serve_command

pytestmark = pytest.mark.integration


def _commands() -> dict[int, str]:
    """Every live process on the machine: pid -> command line."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found[int(cmdline.parent.name)] = command
    return found


def _triton_processes() -> dict[int, str]:
    """Every live tritonserver or Python backend stub on the machine: pid -> command."""
    return {
        pid: command
        for pid, command in _commands().items()
        if "tritonserver" in command or "triton_python_backend_stub" in command
    }


def _assert_gone(pid: int) -> None:
    assert process_group_members(pid) == []
    mine = {p: c for p, c in _triton_processes().items() if p == pid}
    assert mine == {}
    # The detached supervisor ends by itself within a check or two of the server's exit.
    deadline = time.monotonic() + 10
    while _supervisors_of(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _supervisors_of(pid) == []


def _supervisors_of(pid: int) -> list[int]:
    marker = f"satwatch.server.supervisor --server-pid={pid} "
    return [found for found, command in _commands().items() if marker in command]


def test_broken_models_are_reported_and_the_others_serve_then_stop_leaves_nothing(
    triton_for_test, sample_repository, tmp_path
):
    repository = tmp_path / "repository"
    shutil.copytree(sample_repository, repository)
    add_broken_models(repository)
    served = triton_for_test(repository)

    table = {
        line.split("│")[1].strip(): line for line in served.serve_output.splitlines() if "│" in line
    }
    assert "failed to read text proto" in table["broken_config"]
    assert "UNAVAILABLE" in table["broken_config"]
    assert "model file not found" in table["missing_file"]
    client = httpclient.InferenceServerClient(url=served.http_address)
    states = {
        row["name"]: row.get("state")
        for row in client.get_model_repository_index(headers=served.admin_headers)
    }
    assert states["missing_file"] == "UNAVAILABLE"
    for model in (
        "sample_affine",
        "sample_pipeline",
        "sample_python",
        "sample_state",
        "sample_torch",
    ):
        assert states[model] == "READY"
    x = np.ones((1, 4), dtype=np.float32)
    tensor = httpclient.InferInput("input_data", [1, 4], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("sample_python", [tensor]).as_numpy("output"), x - 1)
    client.close()

    stubs = [p for p in process_group_members(served.pid) if p != served.pid]
    assert stubs, "expected Python backend stubs in the server's process group"
    result = served.stop()
    assert result.returncode == 0, result.stderr
    assert f"tritonserver {served.pid} stopped" in result.stdout
    _assert_gone(served.pid)
    assert not served.pid_file.exists()


def test_foreground_serve_stops_cleanly_on_sigterm(sample_repository, tmp_path):
    repository = tmp_path / "repository"
    shutil.copytree(sample_repository / "python", repository / "python")  # fastest to load
    ports = ServerPorts.free()
    command = serve_command(repository, ports, tmp_path, detach=False)
    serve = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=WIDE_OUTPUT
    )
    try:
        lines = []
        for line in serve.stdout:  # until the launcher says it serves (or exits)
            lines.append(line)
            if line.startswith("serving"):
                break
        assert serve.poll() is None, "".join(lines)
        pid = int((tmp_path / "triton.pid").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{ports.http}/v2/health/ready") as answer:
            assert answer.status == 200
        serve.send_signal(signal.SIGTERM)
        rest, _ = serve.communicate(timeout=60)
        output = "".join(lines) + rest
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == 0, output
    assert "sample_python" in output and "READY" in output
    _assert_gone(pid)
    assert not (tmp_path / "triton.pid").exists()


def test_a_second_serve_on_the_same_pid_file_is_refused(triton_server):
    result = subprocess.run(
        serve_command(triton_server.repository, ServerPorts.free(), triton_server.pid_file.parent),
        capture_output=True,
        text=True,
        timeout=60,
        env=WIDE_OUTPUT,
    )
    assert result.returncode == 1
    assert f"a server already runs with pid {triton_server.pid}" in result.stderr


def test_stop_with_a_dead_stub_does_not_wait_for_tritons_exit_timeout(
    triton_for_test, sample_repository, tmp_path
):
    repository = tmp_path / "repository"
    shutil.copytree(sample_repository, repository)
    served = triton_for_test(repository, "--no-supervise")
    stubs = live_stubs(served.pid)
    regions = [Path("/dev/shm") / args[2] for args in stub_command_lines(served.pid).values()]
    dead = next(pid for (model, _, _), pid in stubs.items() if model == "sample_affine")
    os.kill(dead, signal.SIGKILL)
    result = served.stop()
    assert result.returncode == 0, result.stderr
    _assert_gone(served.pid)
    # Triton counts its 30 s exit timeout down once a second while a model will not unload.
    countdown = [line for line in served.log_file.read_text().splitlines() if "Timeout " in line]
    assert len(countdown) < 10, countdown[-1]
    assert "Exit timeout expired" not in served.log_file.read_text()
    assert [region for region in regions if region.exists()] == []  # the killed server's too


def test_serve_on_ports_in_use_says_so_plainly(triton_server, tmp_path):
    ports = ServerPorts(
        http=int(triton_server.http_address.rsplit(":", 1)[1]),
        grpc=int(triton_server.grpc_address.rsplit(":", 1)[1]),
        metrics=int(triton_server.metrics_url.rsplit(":", 1)[1].split("/")[0]),
    )
    result = subprocess.run(
        serve_command(triton_server.repository, ports, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        env=WIDE_OUTPUT,
    )
    assert result.returncode == 1
    assert f"HTTP port {ports.http} on 127.0.0.1 is already in use" in result.stderr
    assert f"by pid {triton_server.pid} (tritonserver)" in result.stderr
    assert not (tmp_path / "triton.pid").exists()


def test_a_crashed_server_leaves_no_pid_file_blocking_the_next_start(
    triton_factory, sample_repository, tmp_path
):
    repository = tmp_path / "repository"
    shutil.copytree(sample_repository / "python", repository / "python")  # fastest to load
    served = triton_factory(repository)
    time.sleep(0.6)  # the supervisor has seen every stub (and noted its shared memory)
    regions = [Path("/dev/shm") / args[2] for args in stub_command_lines(served.pid).values()]
    os.kill(served.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while served.pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not served.pid_file.exists(), "the supervisor left the crashed server's pid file"
    assert regions and [region for region in regions if region.exists()] == []
    served.stopped = True  # nothing left to stop
    os.killpg(served.pid, signal.SIGKILL)  # its orphaned stubs
    again = subprocess.run(
        serve_command(repository, ServerPorts.free(), served.pid_file.parent),
        capture_output=True,
        text=True,
        timeout=120,
        env=WIDE_OUTPUT,
    )
    assert again.returncode == 0, again.stderr
    subprocess.run([*SATWATCH, "stop", "--pid-file", str(served.pid_file)], check=True, timeout=90)
