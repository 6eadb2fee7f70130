"""The built repository served by the real embedded Triton: Python models, BLS, ensembles.

The seed repository (all 27 channels, tiny detectors trained for one epoch) is built once per
session with :func:`satwatch.repository.build.build_repository`, its ``custom_logic`` pointed
at a webhook served by the test, and served with ``triton_factory``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from satwatch.data import SEED_CHANNELS, load_dataset
from satwatch.detectors import omnianomaly, registry, tranad
from satwatch.detectors.artifacts import load_trained
from satwatch.detectors.normalization import Normalisation
from satwatch.pipeline.calibration_file import load_thresholds
from satwatch.pipeline.eventlog import EventLog
from satwatch.pipeline.postprocess import PostSettings, postprocess
from satwatch.repository.config import load_config, parameter_dict
from satwatch.repository.seed import stream_states

from .builders import Built, built_repository, served_repository, webhook_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MODELS = [
    *(f"SMAP_{channel}" for channel in SEED_CHANNELS),
    "tranad_sat1",
    "tranad_sat1_core",
    *(f"nearest_SMAP_{channel}" for channel in SEED_CHANNELS),
    *(f"predictor_SMAP_{channel}" for channel in SEED_CHANNELS),
    "preprocessing",
    "postprocessing",
    "custom_logic",
    "multi_detector",
    "anomaly_pipeline",
]
"""Every model ``satwatch build`` makes (88; ``tensorrt/`` needs a GPU)."""
RESULTS = ("final_result", "decision", "events")


@pytest.fixture(scope="session")
def webhook() -> ThreadingHTTPServer:
    """A local HTTP server collecting the JSON bodies POSTed to it (shared, see builders)."""
    return webhook_server()


@pytest.fixture(scope="session")
def built(tmp_path_factory, shared_data: Path, webhook: ThreadingHTTPServer) -> Built:
    """The small repository, built once per session (shared with test_detect)."""
    return built_repository(tmp_path_factory, shared_data, webhook)


@pytest.fixture(scope="session")
def served(triton_factory, built: Built):
    return served_repository(triton_factory, built)


@pytest.fixture(scope="session")
def http(served) -> Iterator[httpclient.InferenceServerClient]:
    """An HTTP client, closed before the server stops (open connections delay its exit)."""
    client = httpclient.InferenceServerClient(served.http_address)
    yield client
    client.close()


@pytest.fixture(scope="session")
def grpc(served) -> Iterator[grpcclient.InferenceServerClient]:
    """A gRPC client, closed before the server stops."""
    client = grpcclient.InferenceServerClient(served.grpc_address)
    yield client
    client.close()


@pytest.fixture(scope="session")
def window(shared_data: Path) -> np.ndarray:
    """E-1 test steps 4800..6399 (its labelled anomalies) with a gross injected fault."""
    raw = load_dataset(shared_data).channel("E-1").test[4800:6400].astype(np.float32).copy()
    raw[300:360, 0] = 3.0  # far outside the training range: every detector must flag it
    return raw


def _inputs(protocol: ModuleType, **arrays: np.ndarray) -> list:
    """``InferInput``s of ``tritonclient.http`` or ``.grpc`` (the same API) for named arrays."""
    inputs = []
    for name, array in arrays.items():
        dtype = "BYTES" if array.dtype == object else "FP32"
        item = protocol.InferInput(name, list(array.shape), dtype)
        item.set_data_from_numpy(array)
        inputs.append(item)
    return inputs


def _infer(http, model: str, outputs: list[str], **arrays: np.ndarray) -> dict[str, np.ndarray]:
    result = http.infer(model, _inputs(httpclient, **arrays))
    return {name: result.as_numpy(name) for name in outputs}


def _channel(name: str) -> np.ndarray:
    return np.array([name.encode()], dtype=object)


def test_every_model_of_the_seed_build_is_ready_over_http_and_grpc(http, grpc, served) -> None:
    assert len(MODELS) == 88
    for model in MODELS:
        assert http.is_model_ready(model), model
        assert grpc.is_model_ready(model), model
    # The server's own list: these 88 models, all READY, nothing else.
    index = http.get_model_repository_index(headers=served.admin_headers)
    states = {row["name"]: row.get("state") for row in index}
    assert states == dict.fromkeys(MODELS, "READY")
    # Triton's gRPC restricted protocols take the key under a prefixed header name.
    grpc_admin = {"triton-grpc-protocol-admin-key": served.admin_key}
    listed = grpc.get_model_repository_index(headers=grpc_admin).models
    assert {m.name: m.state for m in listed} == dict.fromkeys(MODELS, "READY")


def test_custom_logic_on_another_channel_equals_its_steps(http, shared_data: Path) -> None:
    channel = "T-1"  # neither E-1 nor A-1: routed by the catalog to its detectors
    raw = load_dataset(shared_data).channel(channel).test[:1200].astype(np.float32).copy()
    raw[500:560, 0] = 3.0  # far outside the training range
    kinds = registry.kinds()
    custom = _infer(
        http,
        "custom_logic",
        [*RESULTS, "subsystem", *(f"{d}_{o}" for d in kinds for o in ("score", "detected"))],
        channel_id=_channel(channel),
        raw_input=raw,
    )
    assert custom["subsystem"].tolist() == [b"TCS"]
    normalized = _infer(
        http, "preprocessing", ["normalized"], raw_input=raw, channel_id=_channel(channel)
    )["normalized"]
    answers = {
        d.kind: _infer(
            http,
            d.served_name(channel),
            ["anomaly_score", "anomaly_detected"],
            input_data=normalized,
        )
        for d in registry.detectors()
    }
    scores = {f"score{i + 1}": answers[kind]["anomaly_score"] for i, kind in enumerate(kinds)}
    steps = _infer(http, "postprocessing", list(RESULTS), **scores, channel_id=_channel(channel))
    for name in RESULTS:
        np.testing.assert_array_equal(custom[name], steps[name], err_msg=name)
    for detector, answer in answers.items():
        np.testing.assert_array_equal(custom[f"{detector}_score"], answer["anomaly_score"])
        np.testing.assert_array_equal(custom[f"{detector}_detected"], answer["anomaly_detected"])
    # The fused decision (dynamic policy, smoothed) reacts a few steps late: overlap the fault.
    assert any(s <= 559 and e >= 500 for s, e, _ in custom["events"]), custom["events"]


def test_multi_detector_equals_its_steps_and_the_offline_pipeline(
    http, grpc, built, window
) -> None:
    result = grpc.infer("multi_detector", _inputs(grpcclient, raw_input=window))
    ensemble = {name: result.as_numpy(name) for name in (*RESULTS, "post_state_out")}

    normalized = _infer(http, "preprocessing", ["normalized"], raw_input=window)["normalized"]
    score1 = _infer(http, "SMAP_E-1", ["anomaly_score"], input_data=normalized)
    score2 = _infer(http, "tranad_sat1", ["anomaly_score"], input_data=normalized)
    steps = _infer(
        http,
        "postprocessing",
        [*RESULTS, "post_state_out"],
        score1=score1["anomaly_score"],
        score2=score2["anomaly_score"],
    )
    for name in RESULTS:
        np.testing.assert_array_equal(ensemble[name], steps[name], err_msg=name)
    assert len(ensemble["events"]) >= 1
    assert ensemble["events"][0][0] <= 359 and ensemble["events"][0][1] >= 300  # the fault

    omni_model, card = load_trained(built.artifacts / "omni" / "SMAP_E-1")
    tranad_model, _ = load_trained(built.artifacts / "tranad" / "tranad_sat1")
    offline_input = Normalisation.from_dict(card["normalisation"]["E-1"]).apply(window)
    np.testing.assert_allclose(normalized, offline_input, atol=1e-6)
    repository = built.repository / "python" / "postprocessing"
    settings = PostSettings.from_parameters(
        parameter_dict(load_config(repository / "config.pbtxt"))
    )
    offline = postprocess(
        [omnianomaly.score(omni_model, offline_input), tranad.score(tranad_model, offline_input)],
        load_thresholds(repository / "1" / "thresholds.json")["E-1"].head(2),  # its 2 scores
        settings,
    )
    np.testing.assert_allclose(ensemble["final_result"], offline.final, atol=1e-4)


def test_custom_logic_fuses_its_detectors_as_postprocessing_and_logs_events(
    http, built, window, webhook
) -> None:
    kinds = registry.kinds()
    custom = _infer(
        http,
        "custom_logic",
        [*RESULTS, "subsystem", "post_state_out", *(f"{d}_score" for d in kinds)],
        channel_id=_channel("E-1"),
        raw_input=window,
    )
    scores = {f"score{i + 1}": custom[f"{d}_score"] for i, d in enumerate(kinds)}
    steps = _infer(http, "postprocessing", list(RESULTS), **scores, channel_id=_channel("E-1"))
    for name in RESULTS:
        np.testing.assert_array_equal(custom[name], steps[name], err_msg=name)
    assert custom["subsystem"].tolist() == [b"EPS"]
    stream = int(custom["post_state_out"][1])
    log = EventLog(built.repository / "python" / "custom_logic" / "events.db")
    logged = [(e.start, e.end) for e in log.events("E-1") if e.stream_id == stream]
    assert logged == [(int(s), int(e)) for s, e, _ in custom["events"]]
    assert logged  # the injected fault is an event
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        posted = [b for b in webhook.received if b["stream_id"] == stream]
        if len(posted) == len(logged):
            break
        time.sleep(0.2)
    assert [(b["channel"], b["subsystem"], b["start"]) for b in posted] == [
        ("E-1", "EPS", start) for start, _ in logged
    ]


def test_custom_logic_streams_chunks_like_the_whole_window(http, built, window) -> None:
    names = stream_states()
    whole = _infer(
        http, "custom_logic", list(RESULTS), channel_id=_channel("E-1"), raw_input=window
    )
    state: dict[str, np.ndarray] = {}
    finals, decisions, events = [], [], {}
    for start in range(0, window.shape[0], 400):
        out = _infer(
            http,
            "custom_logic",
            [*RESULTS, *(f"{n}_out" for n in names)],
            channel_id=_channel("E-1"),
            raw_input=window[start : start + 400],
            **state,
        )
        state = {n: out[f"{n}_out"] for n in names}
        finals.append(out["final_result"])
        decisions.append(out["decision"])
        events |= {int(row[0]): tuple(row[:2]) for row in out["events"]}
    final = np.concatenate(finals)
    # The detectors' scores agree to float rounding (TranAD's matrix products take other shapes
    # in chunks: about 1e-7 apart), but the fusion raises each z-score to dt_z_power (0.5).
    # Where a score sits at its training median (z near 0, as TranAD's does on E-1) a square
    # root turns a z difference d into up to sqrt(d): 1e-6 becomes 1e-3 before the weight and
    # the smoothing shrink it.
    np.testing.assert_allclose(final, whole["final_result"], atol=1e-3)
    clear = np.abs(whole["final_result"] - 1.0) > 1e-4
    np.testing.assert_array_equal(np.concatenate(decisions)[clear], whole["decision"][clear])
    assert sorted(events.values()) == [tuple(row[:2]) for row in whole["events"]]
    stream = int(state["post_state"][1])
    log = EventLog(built.repository / "python" / "custom_logic" / "events.db")
    # Reported again by later chunks, each event is one row, updated in place.
    assert sorted((e.start, e.end) for e in log.events("E-1") if e.stream_id == stream) == sorted(
        events.values()
    )


def test_custom_logic_serves_a_second_channel(http) -> None:
    raw = np.zeros((64, 25), np.float32)
    out = _infer(
        http,
        "custom_logic",
        ["final_result", "subsystem"],
        channel_id=_channel("A-1"),
        raw_input=raw,
    )
    assert out["final_result"].shape == (64,)
    assert out["subsystem"].tolist() == [b"ACS"]


def test_unknown_channel_is_refused_naming_it(http, grpc, window) -> None:
    known = ", ".join(sorted(SEED_CHANNELS))
    with pytest.raises(InferenceServerException, match=f"unknown channel 'Q-9'.*{known}"):
        http.infer(
            "custom_logic", _inputs(httpclient, channel_id=_channel("Q-9"), raw_input=window)
        )
    with pytest.raises(InferenceServerException, match="unknown channel 'Q-9'") as error:
        grpc.infer(
            "custom_logic", _inputs(grpcclient, channel_id=_channel("Q-9"), raw_input=window)
        )
    assert "INVALID_ARGUMENT" in str(error.value.status())


def test_a_foreign_post_state_is_the_callers_error(http, grpc, window) -> None:
    # Postprocessing refuses it; custom_logic must pass that on as the caller's bad input
    # (400 / INVALID_ARGUMENT), although Triton reports every failed BLS step as INTERNAL.
    garbage = np.full(50, 7.0, np.float32)
    arrays = {"channel_id": _channel("E-1"), "raw_input": window, "post_state": garbage}
    with pytest.raises(InferenceServerException, match="post_state: expected") as error:
        http.infer("custom_logic", _inputs(httpclient, **arrays))
    assert error.value.status() == "400"
    with pytest.raises(InferenceServerException, match="post_state: expected") as error:
        grpc.infer("custom_logic", _inputs(grpcclient, **arrays))
    assert "INVALID_ARGUMENT" in str(error.value.status())


def test_nan_telemetry_is_refused_and_the_server_keeps_serving(http, window) -> None:
    broken = window.copy()
    broken[5, 0] = np.nan
    broken[9, 3] = np.inf
    expected = r"NaN/Inf value\(s\), first in row 5 \(row\(s\) 5, 9; column\(s\) 0, 3\)"
    for model, arrays in (
        ("preprocessing", {"raw_input": broken}),
        ("multi_detector", {"raw_input": broken}),
        ("custom_logic", {"channel_id": _channel("E-1"), "raw_input": broken}),
    ):
        with pytest.raises(InferenceServerException, match=expected):
            http.infer(model, _inputs(httpclient, **arrays))
    assert http.is_server_ready()
    out = _infer(http, "multi_detector", ["final_result"], raw_input=window)
    assert np.isfinite(out["final_result"]).all()
