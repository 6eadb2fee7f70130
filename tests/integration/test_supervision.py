"""Faults that used to take a model down for good: an empty chunk, a killed backend stub.

The seed repository (tiny detectors, see ``builders``) is served by ``satwatch serve
--detach``, which starts the supervisor. Each test leaves every model answering as before.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from satwatch.commands.server import supervisor_log
from satwatch.server.supervisor import Supervisor, live_stubs, stub_command_lines

from .builders import built_repository, served_repository, webhook_server

pytestmark = pytest.mark.integration

RECOVERY_TIMEOUT = 120.0
"""Seconds a model may take to answer again after its stub is killed (a hang guard only)."""

ERRORS_DURING_AN_OUTAGE = ("is not healthy", "has no available versions", "is not ready")
"""What a request meets while a model is down: the dead stub, then the unloaded model."""


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_data: Path, triton_factory):
    built = built_repository(tmp_path_factory, shared_data, webhook_server())
    return served_repository(triton_factory, built)


@pytest.fixture(scope="module")
def http(served):
    client = httpclient.InferenceServerClient(served.http_address, network_timeout=60.0)
    yield client
    client.close()


def _request(module, model: str, steps: int = 64) -> list:
    """A valid request for ``model`` with ``steps`` time steps of mid-range telemetry."""
    values = np.linspace(-0.5, 0.5, steps * 25, dtype=np.float32).reshape(steps, 25)
    arrays = {"raw_input" if model in ("custom_logic", "preprocessing") else "input_data": values}
    if model == "custom_logic":
        arrays = {"channel_id": np.array([b"A-1"], dtype=object), **arrays}
    inputs = []
    for name, array in arrays.items():
        dtype = "BYTES" if name == "channel_id" else "FP32"
        tensor = module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


OUTPUT = {"custom_logic": "final_result", "preprocessing": "normalized"}


def _answer(client, model: str) -> np.ndarray:
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    result = client.infer(model, _request(module, model))
    return result.as_numpy(OUTPUT.get(model, "anomaly_score"))


@pytest.mark.parametrize("model", ["SMAP_E-2", "tranad_sat1", "preprocessing", "custom_logic"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_empty_chunk_is_refused_and_the_model_lives_on(served, http, model, protocol) -> None:
    before = _answer(http, model)
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(
        served.grpc_address if protocol == "grpc" else served.http_address
    )
    try:
        with pytest.raises(InferenceServerException, match=r"shape \[0, 25\]") as refused:
            client.infer(model, _request(module, model, steps=0))
        assert "an empty tensor" in refused.value.message()
        np.testing.assert_array_equal(_answer(client, model), before)
    finally:
        client.close()
    assert http.is_model_ready(model)


def _stubs_of(served, model: str) -> dict[str, int]:
    """The live backend stubs of ``model``: instance name -> pid."""
    return {i: pid for (name, _, i), pid in live_stubs(served.pid).items() if name == model}


def _kill_stub(served, model: str) -> int:
    return _kill_instance(served, model)[1]


def _kill_instance(served, model: str) -> tuple[str, int]:
    """Kill the first stub of ``model``; return its instance name and pid."""
    stubs = _stubs_of(served, model)
    assert stubs, f"no backend stub of {model} found"
    instance, pid = sorted(stubs.items())[0]
    os.kill(pid, signal.SIGKILL)
    return instance, pid


def _watch_readiness(served, model: str, stop: threading.Event, seen: list[bool]) -> None:
    """Record every answer of ``/v2/models/<model>/ready`` until ``stop`` is set."""
    client = httpclient.InferenceServerClient(served.http_address, network_timeout=10.0)
    try:
        while not stop.is_set():
            seen.append(bool(client.is_model_ready(model)))
            time.sleep(0.01)
    finally:
        client.close()


def _wait_for_recovery(served, http, model: str) -> dict:
    """Poll until ``model`` answers; return the seconds, errors met and readiness seen."""
    started = time.monotonic()
    errors: list[str] = []
    readiness: list[bool] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_readiness, args=(served, model, stop, readiness))
    watcher.start()
    try:
        while time.monotonic() - started < RECOVERY_TIMEOUT:
            try:
                answer = _answer(http, model)
                seconds = time.monotonic() - started
                break
            except InferenceServerException as error:
                errors.append(error.message())
            time.sleep(0.02)
        else:
            pytest.fail(f"{model} did not answer within {RECOVERY_TIMEOUT:.0f} s: {errors[-3:]}")
    finally:
        stop.set()
        watcher.join()
    return {"seconds": seconds, "errors": errors, "readiness": readiness, "answer": answer}


@pytest.mark.parametrize("model", ["SMAP_A-1", "tranad_sat1", "custom_logic"])
def test_a_killed_stub_is_replaced_and_the_model_answers_as_before(served, http, model) -> None:
    before = _answer(http, model)
    time.sleep(0.6)  # the supervisor has seen every stub (and noted its shared memory)
    regions = {pid: args[2] for pid, args in stub_command_lines(served.pid).items()}
    instances = len(_stubs_of(served, model))
    instance, pid = _kill_instance(served, model)
    recovery = _wait_for_recovery(served, http, model)
    np.testing.assert_array_equal(recovery["answer"], before)
    if instances == 1:
        assert False in recovery["readiness"], "readiness never said the model was down"
    # (With several instances the others may answer at once; the dead one is replaced all
    # the same.)
    for message in recovery["errors"]:
        assert any(clue in message for clue in ERRORS_DURING_AN_OUTAGE), message
    died = f"model '{model}': backend stub {instance} (pid {pid}) died"
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while died not in supervisor_log(served.log_file).read_text():
        assert time.monotonic() < deadline, f"the supervisor never saw {instance} die"
        time.sleep(0.1)
    while len(_stubs_of(served, model)) < instances or pid in _stubs_of(served, model).values():
        assert time.monotonic() < deadline, f"{model} has not got {instances} stubs back"
        time.sleep(0.1)
    assert not (Path("/dev/shm") / regions[pid]).exists(), "the dead stub's memory is left"
    _record(served, model, recovery)


def _record(served, model: str, recovery: dict) -> None:
    """Keep the figures beside the server log (``recovery.json``) for whoever measures."""
    path = served.log_file.with_name("recovery.json")
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[model] = {"seconds": round(recovery["seconds"], 2), "errors": len(recovery["errors"])}
    path.write_text(json.dumps(figures, indent=1))
    print(f"{model}: answering again {recovery['seconds']:.2f} s after kill -9")  # noqa: T201


def test_other_models_keep_answering_while_one_is_down(served, http) -> None:
    neighbour = _answer(http, "SMAP_E-1")
    _kill_stub(served, "SMAP_D-2")
    np.testing.assert_array_equal(_answer(http, "SMAP_E-1"), neighbour)
    _wait_for_recovery(served, http, "SMAP_D-2")
    assert http.is_server_ready()


def test_a_stub_that_died_before_the_supervisor_first_looked_is_replaced(
    triton_for_test, sample_repository: Path
) -> None:
    # Between the server's readiness and a detached supervisor's first check there is a
    # window: a stub dying in it was never seen alive. The supervisor watches what Triton
    # serves, so it is found dead like any other.
    served = triton_for_test(sample_repository, "--no-supervise")
    client = httpclient.InferenceServerClient(served.http_address, network_timeout=60.0)
    rows = httpclient.InferInput("input_data", [2, 4], "FP32")
    rows.set_data_from_numpy(np.ones((2, 4), np.float32))
    before = client.infer("sample_python", [rows]).as_numpy("output")
    pid = _kill_stub(served, "sample_python")
    supervisor = Supervisor(served.pid, served.http_address, served.admin_key)
    recoveries = []
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while not recoveries and time.monotonic() < deadline:
        recoveries = supervisor.check()
        time.sleep(0.25)
    assert [(r.model, r.pid, r.error) for r in recoveries] == [("sample_python", -1, "")]
    assert "before the supervisor saw it" in recoveries[0].describe()
    assert pid not in live_stubs(served.pid).values()
    np.testing.assert_array_equal(client.infer("sample_python", [rows]).as_numpy("output"), before)
    # Nothing else was taken for dead.
    assert all(not supervisor.check() for _ in range(3))
    client.close()
