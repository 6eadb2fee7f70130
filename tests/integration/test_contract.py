"""The serving contract of every detector and every served model, over HTTP and gRPC.

One table, :data:`MODELS`, names each model of the seed build and how a valid request is made
from real test telemetry (steps 4800..5799 of a channel: its labelled anomalies): the
detectors take the ``preprocessing`` model's output, postprocessing the detectors' scores. The
27 ``SMAP_*`` OmniAnomaly models share one config template; SMAP_E-1 and SMAP_P-7 stand for
them. Every check reads the tensors from the model's config as the server reports it:

1. the metadata (HTTP and gRPC) names the config's tensors with its datatypes and shapes, and
   a valid request returns exactly the declared outputs, one row per step where per-step;
2. batch of 1 = batch of N: requests sent at once each get the answer they get alone (every
   served model has ``max_batch_size`` 0, so Triton passes its backend one request per
   execution however many arrive at once: checked with the model's statistics);
3. chunked = whole series: chunks of 64 steps, each ``<x>_out`` passed back as the next chunk's
   ``<x>``, give the per-step outputs of one request over the whole series bit for bit (chunk
   sizes that are multiples of 16, ``satwatch.client.sources.ALIGNMENT``);
4. an empty tensor, a NaN and a wrong feature width in the main input are refused (HTTP 400 /
   gRPC ``INVALID_ARGUMENT``, naming the tensor) and the model answers as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from satwatch.data import load_dataset

from .builders import built_repository, served_repository, webhook_server

pytestmark = pytest.mark.integration

SERIES = slice(4800, 5800)  # 1,000 test steps: 15 chunks of 64 and one of 40
CHUNK = 64
ROWS = slice(0, 200)  # a valid request
CONCURRENT = 6  # requests sent at once, half over HTTP, half over gRPC
PROTOCOLS = ("http", "grpc")
ROUNDS = 3
EVENTS = "events"  # a per-request output whose rows are events, not steps
STREAM_ID = 1  # post_state[1] is a stream's random id (PostState.to_array); the rest is state
REFUSED = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}  # by PROTOCOLS


@dataclass(frozen=True)
class Series:
    """One channel's test telemetry as each kind of model takes it."""

    channel_id: np.ndarray  # BYTES [1]
    raw: np.ndarray  # (T, 25) telemetry
    normalized: np.ndarray  # (T, 25) preprocessing's answer: the detectors' input
    omni: np.ndarray  # (T,) the channel's OmniAnomaly score
    tranad: np.ndarray  # (T,) TranAD's score


Request = Callable[[Series, slice], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Model:
    name: str
    channels: tuple[str, ...]  # the first one for single-series checks
    request: Request

    def __str__(self) -> str:
        return self.name


def _detector(s: Series, rows: slice) -> dict[str, np.ndarray]:
    return {"input_data": s.normalized[rows]}


def _telemetry(s: Series, rows: slice) -> dict[str, np.ndarray]:
    return {"raw_input": s.raw[rows], "channel_id": s.channel_id}


def _scores(s: Series, rows: slice) -> dict[str, np.ndarray]:
    return {"score1": s.omni[rows], "score2": s.tranad[rows], "channel_id": s.channel_id}


def _e1_telemetry(s: Series, rows: slice) -> dict[str, np.ndarray]:
    return {"raw_input": s.raw[rows]}  # the seed ensembles chain SMAP_E-1


BOTH = ("E-1", "P-7")
MODELS = [
    Model("SMAP_E-1", ("E-1",), _detector),
    Model("SMAP_P-7", ("P-7",), _detector),
    Model("tranad_sat1", BOTH, _detector),
    Model("nearest_SMAP_E-1", ("E-1",), _detector),
    Model("preprocessing", BOTH, _telemetry),
    Model("postprocessing", BOTH, _scores),
    Model("custom_logic", BOTH, _telemetry),
    Model("multi_detector", ("E-1",), _e1_telemetry),
    Model("anomaly_pipeline", ("E-1",), _e1_telemetry),
]


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_data: Path, triton_factory):
    built = built_repository(tmp_path_factory, shared_data, webhook_server())
    return served_repository(triton_factory, built)


def _client(served, protocol: str):
    if protocol == "grpc":
        return grpcclient.InferenceServerClient(served.grpc_address)
    return httpclient.InferenceServerClient(served.http_address, network_timeout=60.0)


@pytest.fixture(scope="module")
def protocols(served):
    """One HTTP and one gRPC client (for this thread: the HTTP client is gevent's)."""
    clients = {protocol: _client(served, protocol) for protocol in REFUSED}
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def http(protocols):
    return protocols["http"]


@pytest.fixture(scope="module")
def configs(http) -> dict[str, dict]:
    return {model.name: http.get_model_config(model.name) for model in MODELS}


@pytest.fixture(scope="module")
def series(http, configs, shared_data: Path) -> dict[str, Series]:
    dataset = load_dataset(shared_data)
    found = {}
    for channel in BOTH:
        raw = np.ascontiguousarray(dataset.channel(channel).test[SERIES], dtype=np.float32)
        channel_id = np.array([channel.encode()], dtype=object)
        request = {"raw_input": raw, "channel_id": channel_id}
        normalized = _infer(http, configs["preprocessing"], request)["normalized"]
        detector = {"input_data": normalized}
        omni = _infer(http, configs[f"SMAP_{channel}"], detector)["anomaly_score"]
        tranad = _infer(http, configs["tranad_sat1"], detector)["anomaly_score"]
        found[channel] = Series(channel_id, raw, normalized, omni, tranad)
    return found


# --- helpers -------------------------------------------------------------------------------


def _protocol(client) -> str:
    return "grpc" if isinstance(client, grpcclient.InferenceServerClient) else "http"


def _batched(config: dict) -> bool:
    return config.get("max_batch_size", 0) > 0


def _send(client, config: dict, arrays: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """Every output of one request over one series: name -> (datatype, values).

    A model whose config batches (``max_batch_size > 0``) gets the series as a batch of 1.
    """
    module = grpcclient if _protocol(client) == "grpc" else httpclient
    inputs = []
    for name, array in arrays.items():
        array = array[None] if _batched(config) else array
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(config["name"], inputs)
    response = result.get_response(as_json=True) if module is grpcclient else result.get_response()
    answer = {}
    for output in response["outputs"]:
        values = result.as_numpy(output["name"])
        answer[output["name"]] = (output["datatype"], values[0] if _batched(config) else values)
    return answer


def _infer(client, config: dict, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: values for name, (_, values) in _send(client, config, arrays).items()}


def _datatype(config_type: str) -> str:
    """A config's ``TYPE_FP32`` as the protocols name it (``FP32``; ``TYPE_STRING``: BYTES)."""
    name = config_type.removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def _states(config: dict) -> list[str]:
    """Inputs ``<x>`` that are optional and come back as an output ``<x>_out``."""
    outputs = {o["name"] for o in config["output"]}
    return [
        i["name"] for i in config["input"] if i.get("optional") and f"{i['name']}_out" in outputs
    ]


def _per_step(config: dict) -> list[str]:
    """Outputs with one row per time step of the request (not the events, not a state)."""
    states = {f"{name}_out" for name in _states(config)}
    return [
        o["name"]
        for o in config["output"]
        if o["dims"][0] == -1 and o["name"] not in states and o["name"] != EVENTS
    ]


def _main_input(config: dict) -> str:
    """The first required FP32 input: the telemetry, the normalised steps or the first score."""
    return next(
        i["name"]
        for i in config["input"]
        if i["data_type"] == "TYPE_FP32" and not i.get("optional")
    )


def _comparable(name: str, values: np.ndarray) -> np.ndarray:
    return np.delete(values, STREAM_ID) if name.startswith("post_state") else values


def _assert_same(answer: dict[str, np.ndarray], expected: dict[str, np.ndarray], what: str) -> None:
    """The same outputs, bit for bit (a postprocessing state's stream id aside)."""
    assert answer.keys() == expected.keys(), what
    for name, values in expected.items():
        np.testing.assert_array_equal(
            _comparable(name, answer[name]), _comparable(name, values), err_msg=f"{what}: {name}"
        )


def _refusal(client, config: dict, arrays: dict[str, np.ndarray]) -> tuple[str, str]:
    """(status, message) of the error a request gets; ``("answered", "")`` for a success."""
    try:
        _send(client, config, arrays)
    except InferenceServerException as error:
        return str(error.status()), error.message()
    return "answered", ""


def _all_at_once(served, config: dict, requests: list[dict]) -> list[dict[str, np.ndarray]]:
    """Send the requests at once, each from its own thread and client, alternately HTTP, gRPC."""
    barrier = threading.Barrier(len(requests))

    def send(index: int) -> dict[str, np.ndarray]:
        client = _client(served, PROTOCOLS[index % 2])
        try:
            barrier.wait()
            return _infer(client, config, requests[index])
        finally:
            client.close()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, range(len(requests))))


def _counts(http, model: str) -> tuple[int, int]:
    """(requests answered, backend executions) of a model, once its statistics settle.

    A backend reports its statistics just after its responses: read until two reads agree.
    """

    def read() -> tuple[int, int]:
        stats = http.get_inference_statistics(model)["model_stats"][0]
        return stats["inference_count"], stats["execution_count"]

    counts = read()
    for _ in range(50):
        time.sleep(0.1)
        counts, before = read(), counts
        if counts == before:
            return counts
    raise AssertionError(f"{model}: statistics still changing: {counts}")


# --- the contract --------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=str)
def test_metadata_and_answers_carry_the_config_tensor_names_and_datatypes(
    model, protocols, configs, series
) -> None:
    config = configs[model.name]
    batch = [-1] if _batched(config) else []
    declared = {
        kind: {t["name"]: (_datatype(t["data_type"]), [*batch, *t["dims"]]) for t in config[kind]}
        for kind in ("input", "output")
    }
    request = model.request(series[model.channels[0]], ROWS)
    steps = ROWS.stop - ROWS.start
    per_step = _per_step(config)
    for protocol, client in protocols.items():
        as_json = {"as_json": True} if protocol == "grpc" else {}
        metadata = client.get_model_metadata(model.name, **as_json)
        for kind in ("input", "output"):
            listed = {
                t["name"]: (t["datatype"], [int(d) for d in t["shape"]])
                for t in metadata[f"{kind}s"]
            }
            assert listed == declared[kind], f"{protocol} metadata {kind}s"
        answer = _send(client, config, request)
        assert answer.keys() == declared["output"].keys(), protocol
        for name, (datatype, values) in answer.items():
            expected_type, dims = declared["output"][name]
            dims = dims[len(batch) :]
            assert datatype == expected_type, f"{protocol} {name}"
            assert values.dtype == np.dtype(triton_to_np_dtype(datatype)), f"{protocol} {name}"
            assert values.ndim == len(dims), f"{protocol} {name}: {values.shape} for {dims}"
            for size, dim in zip(values.shape, dims, strict=True):
                assert dim in (-1, size), f"{protocol} {name}: {values.shape} for {dims}"
            if name in per_step:
                assert values.shape[0] == steps, f"{protocol} {name}: {values.shape}"


@pytest.mark.parametrize("model", MODELS, ids=str)
def test_requests_sent_at_once_each_get_the_answer_they_get_alone(
    model, served, protocols, configs, series
) -> None:
    config = configs[model.name]
    # Different rows (and lengths) and, where the model takes one, channels: mixed-up rows show.
    requests = [
        model.request(series[model.channels[i % len(model.channels)]], slice(96 * i, 160 + 128 * i))
        for i in range(CONCURRENT)
    ]
    alone = [_infer(protocols[PROTOCOLS[i % 2]], config, r) for i, r in enumerate(requests)]
    answered, executions = _counts(protocols["http"], model.name)
    for _ in range(ROUNDS):
        together = _all_at_once(served, config, requests)
        for index, (answer, expected) in enumerate(zip(together, alone, strict=True)):
            _assert_same(answer, expected, f"request {index} ({PROTOCOLS[index % 2]})")
    answered_now, executions_now = _counts(protocols["http"], model.name)
    assert answered_now - answered == ROUNDS * CONCURRENT
    if not _batched(config) and config.get("platform") != "ensemble":
        # max_batch_size 0 turns Triton's dynamic batcher off (its `dynamic_batching` block is
        # inert, triton-inference-server/server#5215): the backend gets one request at a time.
        assert executions_now - executions == ROUNDS * CONCURRENT


@pytest.mark.parametrize("model", MODELS, ids=str)
def test_chunks_passing_the_state_back_equal_one_request_over_the_whole_series(
    model, http, configs, series
) -> None:
    config = configs[model.name]
    states = _states(config)
    assert bool(states) == (model.name != "preprocessing"), states  # only it has no state
    telemetry = series[model.channels[0]]
    steps = telemetry.raw.shape[0]
    whole = _infer(http, config, model.request(telemetry, slice(0, steps)))
    carried: dict[str, np.ndarray] = {}
    chunks = []
    for start in range(0, steps, CHUNK):
        request = {**model.request(telemetry, slice(start, start + CHUNK)), **carried}
        answer = _infer(http, config, request)
        carried = {name: answer[f"{name}_out"] for name in states}
        chunks.append(answer)
    assert len(chunks) == 16
    for name in _per_step(config):
        chunked = np.concatenate([chunk[name] for chunk in chunks])
        np.testing.assert_array_equal(chunked, whole[name], err_msg=name)
    # The state after the last chunk is the whole series' state.
    _assert_same(
        {f"{name}_out": values for name, values in carried.items()},
        {f"{name}_out": whole[f"{name}_out"] for name in states},
        "the last state",
    )


@pytest.mark.parametrize("model", MODELS, ids=str)
def test_bad_input_is_refused_and_the_model_answers_as_before(
    model, http, protocols, configs, series
) -> None:
    config = configs[model.name]
    request = model.request(series[model.channels[0]], ROWS)
    before = _infer(http, config, request)
    main = _main_input(config)
    value = request[main]
    nan = value.copy()
    nan.flat[nan.size // 2] = np.nan  # one value, mid-request
    # One feature short; a score (one per step) given as two columns.
    width = value[:, :-1] if value.ndim == 2 else np.stack([value, value], axis=1)
    bad = {"empty": value[:0], "NaN": nan, "wrong width": width}
    answers = {
        (protocol, kind): _refusal(client, config, {**request, main: array})
        for protocol, client in protocols.items()
        for kind, array in bad.items()
    }
    statuses = {key: status for key, (status, _) in answers.items()}
    assert statuses == {key: REFUSED[key[0]] for key in answers}
    unnamed = [key for key, (_, message) in answers.items() if main not in message]
    assert unnamed == [], {key: answers[key][1] for key in unnamed}
    _assert_same(_infer(http, config, request), before, "after the refusals")
