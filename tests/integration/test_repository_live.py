"""The repository's ensembles, deploy script and --live validation in the real embedded Triton.

The sample repository (stand-in models with the contracts' tensors, the project's checked-in
ensemble configs) is served once; the tests check that the ensembles load and carry state,
that deploying version 2 of a served model while requests flow (HTTP and gRPC threads) fails
none of them and leaves both versions answering with 2 the default, and that
``validate --live`` reports a model that does not load.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from satwatch.repository.deploy import deploy_onnx
from satwatch.repository.sample import build_sample_repository, make_detector_onnx
from satwatch.repository.validate import live_problems

pytestmark = pytest.mark.integration

MODELS = ("SMAP_E-1", "tranad_sat1", "preprocessing", "postprocessing")
ENSEMBLES = ("multi_detector", "anomaly_pipeline")


@pytest.fixture(scope="module")
def served(triton_factory: Callable, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    repository = build_sample_repository(tmp_path_factory.mktemp("repo-live") / "repository")
    served = triton_factory(repository)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client(served) -> httpclient.InferenceServerClient:  # noqa: ANN001
    return httpclient.InferenceServerClient(served.http_address)


def _infer(client, model: str, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict:  # noqa: ANN001
    inputs = []
    for name, array in arrays.items():
        item = httpclient.InferInput(name, list(array.shape), "FP32")
        item.set_data_from_numpy(array)
        inputs.append(item)
    requested = [httpclient.InferRequestedOutput(name) for name in outputs]
    result = client.infer(model, inputs, outputs=requested)
    return {name: result.as_numpy(name) for name in outputs}


def test_every_model_and_both_ensembles_are_ready(client) -> None:  # noqa: ANN001
    for name in (*MODELS, *ENSEMBLES):
        assert client.is_model_ready(name), name


def test_multi_detector_carries_every_state_from_chunk_to_chunk(client) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    series = rng.normal(size=(30, 25)).astype(np.float32)
    names = [
        "final_result",
        "decision",
        "events",
        "encoder_state_out",
        "context_out",
        "post_state_out",
    ]
    first = _infer(client, "multi_detector", {"raw_input": series[:20]}, names)
    # Both stand-in detectors score the feature mean; postprocessing takes the max.
    np.testing.assert_allclose(first["final_result"], series[:20].mean(axis=1), rtol=1e-5)
    assert first["decision"].dtype == bool and first["events"].shape == (0, 3)
    assert first["encoder_state_out"].shape == (1, 4)  # zero state fed when absent
    np.testing.assert_array_equal(first["context_out"], series[11:20])
    state = {
        "raw_input": series[20:],
        "encoder_state": np.full((1, 4), 7.0, np.float32),
        "context": first["context_out"],
        "post_state": first["post_state_out"],
    }
    second = _infer(client, "multi_detector", state, names)
    np.testing.assert_array_equal(second["encoder_state_out"], state["encoder_state"])
    np.testing.assert_array_equal(second["context_out"], series[21:30])
    assert second["post_state_out"].tolist() == [30.0]  # 20 steps, then 10 more


def test_anomaly_pipeline_scores_with_one_detector(client) -> None:  # noqa: ANN001
    series = np.linspace(0, 2, 50, dtype=np.float32).reshape(2, 25)
    result = _infer(client, "anomaly_pipeline", {"raw_input": series}, ["final_result"])
    np.testing.assert_allclose(result["final_result"], series.mean(axis=1), rtol=1e-5)


class _Traffic:
    """Requests to a model without a version, sent one after another from a thread.

    Records the version that answered each request and every failure; stops when told, or
    after ``limit`` requests or ``seconds`` (bounded whatever happens).
    """

    def __init__(self, protocol: str, address: str, model: str, limit: int = 4000) -> None:
        self.protocol, self.address, self.model, self.limit = protocol, address, model, limit
        self.versions: list[str] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self, seconds: float = 90.0) -> None:
        module = httpclient if self.protocol == "http" else grpcclient
        client = module.InferenceServerClient(self.address)
        item = module.InferInput("input_data", [3, 25], "FP32")
        item.set_data_from_numpy(np.ones((3, 25), np.float32))
        deadline = time.monotonic() + seconds
        try:
            while not self.stop.is_set() and len(self.versions) < self.limit:
                if time.monotonic() > deadline:
                    break
                try:
                    result = client.infer(self.model, [item])
                except Exception as error:  # noqa: BLE001 - every failure is recorded
                    self.failures.append(f"{type(error).__name__}: {error}")
                    continue
                response = result.get_response()
                version = (
                    response["model_version"] if self.protocol == "http" else response.model_version
                )
                self.versions.append(version)
        finally:
            client.close()

    def wait_for(self, version: str, count: int, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while self.versions.count(version) < count and time.monotonic() < deadline:
            time.sleep(0.05)


def test_deploying_version_2_while_requests_flow_serves_both_with_2_the_default(
    served, client, tmp_path: Path
) -> None:  # noqa: ANN001
    traffic = [_Traffic("http", served.http_address, "SMAP_E-1")]
    traffic.append(_Traffic("grpc", served.grpc_address, "SMAP_E-1"))
    for flow in traffic:
        flow.thread.start()
    try:
        for flow in traffic:
            flow.wait_for("1", 20)
        # Deployed and loaded over the admin API while both threads keep sending.
        deployment = deploy_onnx(
            make_detector_onnx(tmp_path / "v2.onnx"),
            "SMAP_E-1",
            repository=served.repository,
            keep=2,
            url=served.http_url,
            admin_key=served.admin_key,
        )
        for flow in traffic:
            flow.wait_for("2", 20)
    finally:
        for flow in traffic:
            flow.stop.set()
        for flow in traffic:
            flow.thread.join(timeout=60)
    assert deployment.version == 2 and deployment.loaded
    for flow in traffic:
        assert flow.failures == [], (flow.protocol, flow.failures[:3])
        assert flow.versions.count("1") >= 20 and flow.versions.count("2") >= 20, flow.protocol
        # One switch: once version 2 answered, every later request got version 2.
        switch = flow.versions.index("2")
        assert set(flow.versions[:switch]) == {"1"} and set(flow.versions[switch:]) == {"2"}

    assert client.is_model_ready("SMAP_E-1", "1")
    assert client.is_model_ready("SMAP_E-1", "2")
    metadata = client.get_model_metadata("SMAP_E-1")
    assert sorted(metadata["versions"]) == ["1", "2"]
    item = httpclient.InferInput("input_data", [3, 25], "FP32")
    item.set_data_from_numpy(np.ones((3, 25), np.float32))
    for version in ("1", "2"):  # a client can ask for either
        asked = client.infer("SMAP_E-1", [item], model_version=version)
        assert asked.get_response()["model_version"] == version
    default = client.infer("SMAP_E-1", [item])
    assert default.get_response()["model_version"] == "2"


def test_live_validation_names_a_model_that_does_not_load(tmp_path: Path) -> None:
    repository = build_sample_repository(tmp_path / "repository")
    for name in ENSEMBLES:
        shutil.rmtree(repository / "ensemble" / name)  # keep the server start short
    shutil.rmtree(repository / "pytorch")
    model = repository / "python" / "preprocessing" / "1" / "model.py"
    model.write_text("raise RuntimeError('broken on purpose')\n")
    problems = [str(p) for p in live_problems(repository, timeout=120)]
    assert any("preprocessing" in p and "UNAVAILABLE" in p for p in problems), problems
    assert not any("SMAP_E-1" in p for p in problems), problems
