"""Property-based fuzzing of every served model kind, over HTTP and gRPC.

Hypothesis draws malformed requests (seeded, so every CI run sends the same cases) against
the built seed repository: the ONNX detector, TorchScript TranAD, the Python models, both
ensembles and ``custom_logic``. Every case must get a clear error (or, for the few kinds
listed in ``MAY_SUCCEED``, a success with finite outputs); afterwards the server is ready and
every model gives a valid request the same answer as before the sweep.

Which answers each kind of case may get (Triton's HTTP status / gRPC code):

* ``junk_json`` (HTTP only; a body that is not an inference request): 400, or 500 where Triton
  itself cannot parse the JSON (its documented answer to a malformed body);
* every other kind: 400 / ``INVALID_ARGUMENT`` (Triton's own checks and satwatch's), never a
  500 / ``INTERNAL``, never a dead model.

The answers met are written to ``fuzz_answers.json`` beside the server log.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from satwatch.data import SEED_CHANNELS
from satwatch.tensor_checks import MAX_STEPS

from .builders import built_repository, served_repository, webhook_server

pytestmark = pytest.mark.integration

MODELS = (
    "SMAP_E-1",
    "tranad_sat1",
    "preprocessing",
    "postprocessing",
    "custom_logic",
    "multi_detector",
    "anomaly_pipeline",
)
CASES_PER_PROTOCOL = int(os.environ.get("SATWATCH_FUZZ_CASES", "1000"))
"""Cases per protocol (HTTP, gRPC); ``SATWATCH_FUZZ_CASES`` changes it for a quick look."""
KINDS = (
    "wrong_name",
    "missing_input",
    "wrong_rank",
    "wrong_width",
    "wrong_dtype",
    "empty",
    "huge",
    "non_finite",
    "bad_channel",
    "bad_state",
    "truncated",
)
MAY_SUCCEED = {"bad_state"}
"""A state vector of the right shape holding other finite numbers is a valid (odd) state."""

HTTP_ERRORS = {"400"}
GRPC_ERRORS = {"StatusCode.INVALID_ARGUMENT"}
PATH_LIKE = ["../E-1", "../../etc/passwd", "/E-1", "E-1/../A-1", "..", ".", "E-1\x00", "C:\\E-1"]


@dataclass
class Sweep:
    """What the sweep met: (protocol, kind) -> Counter of answers."""

    answers: dict[str, Counter] = field(default_factory=dict)

    def note(self, protocol: str, kind: str, answer: str) -> None:
        self.answers.setdefault(f"{protocol} {kind}", Counter())[answer] += 1


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_data: Path, triton_factory):
    built = built_repository(tmp_path_factory, shared_data, webhook_server())
    return served_repository(triton_factory, built)


@pytest.fixture(scope="module")
def clients(served):
    http = httpclient.InferenceServerClient(served.http_address, network_timeout=60.0)
    grpc = grpcclient.InferenceServerClient(served.grpc_address)
    yield {"http": http, "grpc": grpc}
    http.close()
    grpc.close()


@pytest.fixture(scope="module")
def configs(clients) -> dict[str, dict]:
    """Each model's inputs as its config declares them: name -> (dtype, dims, optional)."""
    found = {}
    for model in MODELS:
        config = clients["http"].get_model_config(model)
        found[model] = {
            entry["name"]: (entry["data_type"], entry["dims"], entry.get("optional", False))
            for entry in config["input"]
        }
    return found


def _value(name: str, data_type: str, dims: list[int], rows: int = 8) -> np.ndarray:
    shape = [rows if d == -1 else d for d in dims]
    if data_type == "TYPE_STRING":
        return np.array([b"E-1"], dtype=object).reshape(shape)
    if data_type == "TYPE_BOOL":
        return np.zeros(shape, bool)
    size = int(np.prod(shape))
    return np.linspace(-0.5, 0.5, size, dtype=np.float32).reshape(shape)


def valid_request(config: dict) -> dict[str, np.ndarray]:
    """The required inputs of a model with plain in-range values (8 time steps)."""
    return {
        name: _value(name, data_type, dims)
        for name, (data_type, dims, optional) in config.items()
        if not optional
    }


def _tensors(module, arrays: dict[str, np.ndarray], declared: dict[str, list[int]]) -> list:
    inputs = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        if module is httpclient:
            tensor.set_data_from_numpy(array, binary_data=True)
        else:
            tensor.set_data_from_numpy(array)
        if name in declared:
            tensor.set_shape(declared[name])  # a shape the bytes do not fill: truncated
        inputs.append(tensor)
    return inputs


def _answer(client, model: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    result = client.infer(model, _tensors(module, arrays, {}))
    return {name: result.as_numpy(name) for name in _output_names(result)}


def _output_names(result) -> list[str]:
    """The outputs a result carries (an HTTP result's response is JSON, a gRPC one's protobuf)."""
    response = result.get_response()
    if isinstance(response, dict):
        return [output["name"] for output in response["outputs"]]
    return [output.name for output in response.outputs]


# --- what a case is made of --------------------------------------------------------------


def _float_inputs(config: dict) -> list[str]:
    return [n for n, (t, _, _) in config.items() if t == "TYPE_FP32" and n != "post_state"]


@st.composite
def cases(draw, configs: dict) -> tuple[str, str, dict, dict]:
    """(model, kind, arrays, truncated shapes) of one malformed request."""
    model = draw(st.sampled_from(MODELS))
    config = configs[model]
    arrays = valid_request(config)
    # Each case is of a kind the model can meet, so the answers table counts what it says.
    kind = draw(st.sampled_from([k for k in KINDS if _applies(k, config)]))
    targets = sorted(n for n in arrays if kind != "truncated" or arrays[n].dtype != object)
    target = draw(st.sampled_from(targets))
    truncated = MUTATIONS[kind](draw, config, arrays, target) or {}
    return model, kind, arrays, truncated


def _applies(kind: str, config: dict) -> bool:
    if kind == "bad_channel":
        return "channel_id" in config
    if kind == "bad_state":
        return bool(_states(config))
    return True


def _states(config: dict) -> list[str]:
    """The optional float inputs: the stream states a request may carry."""
    return [n for n, (t, _, optional) in config.items() if optional and t == "TYPE_FP32"]


def _wrong_name(draw, config, arrays, target):
    name = draw(st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=12))
    name = name if name not in config else f"{name}_x"
    arrays[name] = arrays.pop(target)


def _missing_input(draw, config, arrays, target):
    del arrays[target]  # with one required input: a request with no input at all


def _wrong_rank(draw, config, arrays, target):
    array = arrays[target]
    arrays[target] = array.reshape(-1) if array.ndim > 1 else array.reshape(1, *array.shape, 1)


def _wrong_width(draw, config, arrays, target):
    name = draw(st.sampled_from([n for n in arrays if arrays[n].ndim == 2] or [target]))
    width = draw(st.sampled_from([1, 24, 26, 55]))
    arrays[name] = np.zeros((arrays[name].shape[0], width), np.float32)


def _wrong_dtype(draw, config, arrays, target):
    array = arrays[target]
    if array.dtype == object:
        arrays[target] = np.zeros(array.shape, np.float32)
        return
    dtype = draw(st.sampled_from(["float64", "float16", "int32", "int64", "uint8", "bool", "S"]))
    arrays[target] = array.astype(object if dtype == "S" else dtype)
    if dtype == "S":
        arrays[target] = np.array([str(v).encode() for v in array.reshape(-1)], object).reshape(
            array.shape
        )


def _empty(draw, config, arrays, target):
    array = arrays[target]
    arrays[target] = array[:0]


def _huge(draw, config, arrays, target):
    name = draw(st.sampled_from([n for n in arrays if arrays[n].dtype == np.float32] or [target]))
    rows = MAX_STEPS + draw(st.integers(1, 64))
    arrays[name] = np.zeros((rows, *arrays[name].shape[1:]), arrays[name].dtype)


def _non_finite(draw, config, arrays, target):
    names = _float_inputs(config)
    name = draw(st.sampled_from(names))
    if name not in arrays:  # an optional input (a state), present with a bad value
        data_type, dims, _ = config[name]
        arrays[name] = _value(name, data_type, dims)
    array = arrays[name].copy()
    flat = array.reshape(-1)
    for _ in range(draw(st.integers(1, 3))):
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    arrays[name] = array


def _bad_channel(draw, config, arrays, target):
    known = set(SEED_CHANNELS)
    value = draw(
        st.one_of(
            st.sampled_from(PATH_LIKE).map(str.encode),
            st.binary(min_size=1, max_size=16).filter(lambda b: _not_utf8(b)),
            st.text(min_size=1, max_size=16)
            .filter(lambda t: t.strip() not in known)
            .map(str.encode),
            st.just(b""),
            st.just(b"   "),
        )
    )
    arrays["channel_id"] = np.array([value], dtype=object)
    return None


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _bad_state(draw, config, arrays, target):
    name = draw(st.sampled_from(_states(config)))
    dims = config[name][1]
    if draw(st.booleans()):  # the declared shape, other finite numbers
        shape = [draw(st.integers(1, 40)) if d == -1 else d for d in dims]
    else:
        shape = [draw(st.integers(1, 40)) for _ in dims]
    values = draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=8))
    arrays[name] = np.resize(np.array(values, np.float32), shape)
    return None


def _truncated(draw, config, arrays, target):
    declared = list(arrays[target].shape)
    declared[0] += draw(st.integers(1, 8))
    return {target: declared}


MUTATIONS = {
    "wrong_name": _wrong_name,
    "missing_input": _missing_input,
    "wrong_rank": _wrong_rank,
    "wrong_width": _wrong_width,
    "wrong_dtype": _wrong_dtype,
    "empty": _empty,
    "huge": _huge,
    "non_finite": _non_finite,
    "bad_channel": _bad_channel,
    "bad_state": _bad_state,
    "truncated": _truncated,
}


# --- sending and judging ---------------------------------------------------------------


def _send(client, model: str, arrays: dict, truncated: dict) -> dict[str, np.ndarray] | str:
    """The outputs of a success, or the error's status."""
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    try:
        result = client.infer(model, _tensors(module, arrays, truncated))
    except InferenceServerException as error:
        return str(error.status())
    return {"success": result}


def _judge(protocol: str, kind: str, model: str, answer, sweep: Sweep) -> None:
    if isinstance(answer, dict):
        sweep.note(protocol, kind, "success")
        assert kind in MAY_SUCCEED, f"{protocol} {model} {kind}: expected an error, got success"
        result = answer["success"]
        for name in _output_names(result):
            values = result.as_numpy(name)
            if values.dtype.kind == "f" and not name.startswith("post_state"):
                assert np.isfinite(values).all(), (
                    f"{model} {kind}: non-finite {name} with a success"
                )
        return
    sweep.note(protocol, kind, answer)
    allowed = HTTP_ERRORS if protocol == "http" else GRPC_ERRORS
    assert answer in allowed, f"{protocol} {model} {kind}: expected one of {allowed}, got {answer}"


JUNK = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    st.sampled_from(
        [
            b"{",
            b"[]",
            b'{"inputs": 5}',
            b'{"inputs": [{"name": "raw_input"}]}',
            b'{"inputs": [{"name": "input_data", "shape": [2, 25], "datatype": "FP32", '
            b'"data": [1, 2]}]}',
            b'{"inputs": [{"name": "input_data", "shape": [-1, 25], "datatype": "FP32", '
            b'"data": []}]}',
            b'{"inputs": [{"name": "input_data", "shape": [1, 25], "datatype": "FP32", '
            b'"data": ["x"]}]}',
        ]
    ),
)


def _post_junk(client: httpclient.InferenceServerClient, model: str, body: bytes) -> str:
    # tritonclient only builds well-formed bodies; its own transport sends these bytes as they are.
    response = client._post(f"v2/models/{model}/infer", body, {}, None)
    return str(response.status_code)


# --- the sweep ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def references(clients, configs) -> dict[str, dict[str, np.ndarray]]:
    """Each model's answer to a valid request before the sweep."""
    return {
        model: _answer(clients["http"], model, valid_request(configs[model])) for model in MODELS
    }


@pytest.fixture(scope="module")
def sweep(served) -> Sweep:
    recorded = Sweep()
    yield recorded
    path = served.log_file.with_name("fuzz_answers.json")
    answers = {key: dict(counter) for key, counter in sorted(recorded.answers.items())}
    path.write_text(json.dumps(answers, indent=1))
    print(json.dumps(answers, indent=1))  # noqa: T201 - the note's figures


def _sweep_settings(test):
    return settings(
        max_examples=CASES_PER_PROTOCOL,
        derandomize=True,  # the same cases on every run
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
    )(test)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_malformed_requests_get_clear_errors(protocol, clients, configs, references, sweep):
    client = clients[protocol]

    @_sweep_settings
    @given(case=cases(configs), junk=JUNK, as_junk=st.integers(0, 9))
    def one_case(case, junk, as_junk):
        model, kind, arrays, truncated = case
        if protocol == "http" and as_junk == 0:  # a tenth of the HTTP cases: not even a request
            answer = _post_junk(client, model, junk)
            sweep.note(protocol, "junk_json", answer)
            assert answer in {"400", "500"}, f"junk to {model}: {answer}"
            return
        _judge(protocol, kind, model, _send(client, model, arrays, truncated), sweep)

    one_case()


def test_after_the_sweep_every_model_is_ready_and_answers_as_before(
    clients, configs, references, sweep
):
    http = clients["http"]
    assert sum(sum(c.values()) for c in sweep.answers.values()) >= 2 * CASES_PER_PROTOCOL
    assert http.is_server_ready()
    for model in MODELS:
        assert http.is_model_ready(model), model
        after = _answer(http, model, valid_request(configs[model]))
        assert after.keys() == references[model].keys()
        for name, values in references[model].items():
            if not name.startswith("post_state"):  # it carries a new random stream id
                np.testing.assert_array_equal(after[name], values, err_msg=f"{model} {name}")
