"""The batching and validation shared by satwatch's Python-based backends (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.server.backend_common import (
    RequestError,
    TensorSpec,
    input_specs,
    parameter,
    run_batched,
    validate,
)

F32 = np.dtype(np.float32)
INPUTS = [TensorSpec("x", F32, (2,)), TensorSpec("state", F32, (2,), optional=True)]
OUTPUTS = [TensorSpec("y", F32, (2,)), TensorSpec("n", np.dtype(np.int32), (1,))]


class CountingModel:
    """y = 2x (+ state), n = row index within the run; records every call's batch."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, inputs):
        self.calls.append(inputs)
        x = inputs["x"]
        y = 2 * x if inputs["state"] is None else 2 * x + inputs["state"]
        return {"y": y.astype(np.float64), "n": np.arange(len(x))[:, None]}


def _x(*rows):
    return np.array(rows, dtype=np.float32)


def test_batched_requests_run_once_and_split_back_by_rows():
    model = CountingModel()
    results = run_batched([{"x": _x([1, 2])}, {"x": _x([3, 4], [5, 6])}], INPUTS, OUTPUTS, 8, model)
    assert len(model.calls) == 1
    assert model.calls[0]["x"].shape == (3, 2)
    np.testing.assert_array_equal(results[0]["y"], _x([2, 4]))
    np.testing.assert_array_equal(results[1]["y"], _x([6, 8], [10, 12]))
    assert results[1]["n"].tolist() == [[1], [2]]


def test_outputs_are_cast_to_the_config_dtypes():
    results = run_batched([{"x": _x([1, 2])}], INPUTS, OUTPUTS, 8, CountingModel())
    assert results[0]["y"].dtype == np.float32
    assert results[0]["n"].dtype == np.int32


def test_a_bad_request_gets_its_own_error_and_the_others_still_answer():
    model = CountingModel()
    results = run_batched(
        [{"x": _x([1, 2])}, {"x": _x([1, 2, 3])}, {"x": _x([7, 8])}], INPUTS, OUTPUTS, 8, model
    )
    assert isinstance(results[1], RequestError)
    assert "input 'x': expected shape [-1, 2], got [1, 3]" in str(results[1])
    np.testing.assert_array_equal(results[0]["y"], _x([2, 4]))
    np.testing.assert_array_equal(results[2]["y"], _x([14, 16]))
    assert len(model.calls) == 1 and model.calls[0]["x"].shape == (2, 2)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"z": _x([1, 2])}, "unexpected input 'z'"),
        ({}, "input 'x' is required but missing"),
        ({"x": np.array([[1, 2]], np.float64)}, "expected dtype TYPE_FP32, got TYPE_FP64"),
        ({"x": _x([1, 2]), "state": _x([1, 2], [3, 4])}, "expected batch size 1"),
    ],
)
def test_validate_names_the_tensor_the_expected_and_the_got(inputs, message):
    with pytest.raises(RequestError, match=message.replace("[", r"\[")):
        validate(inputs, INPUTS, batched=True)


def test_optional_input_absent_is_passed_as_none():
    checked = validate({"x": _x([1, 2])}, INPUTS, batched=True)
    assert list(checked) == ["x", "state"] and checked["state"] is None


def test_requests_with_and_without_an_optional_input_run_in_separate_groups():
    model = CountingModel()
    results = run_batched(
        [{"x": _x([1, 1])}, {"x": _x([1, 1]), "state": _x([10, 20])}, {"x": _x([2, 2])}],
        INPUTS,
        OUTPUTS,
        8,
        model,
    )
    assert len(model.calls) == 2
    np.testing.assert_array_equal(results[0]["y"], _x([2, 2]))
    np.testing.assert_array_equal(results[1]["y"], _x([12, 22]))
    np.testing.assert_array_equal(results[2]["y"], _x([4, 4]))


def test_unbatched_model_runs_each_request_on_its_own():
    specs = [TensorSpec("x", F32, (-1, 2)), TensorSpec("state", F32, (2,), optional=True)]
    model = CountingModel()
    results = run_batched([{"x": _x([1, 2], [3, 4])}, {"x": _x([5, 6])}], specs, OUTPUTS, 0, model)
    assert [call["x"].shape for call in model.calls] == [(2, 2), (1, 2)]
    np.testing.assert_array_equal(results[1]["y"], _x([10, 12]))


def test_a_failing_run_answers_its_requests_with_an_error_instead_of_raising():
    def broken(inputs):
        raise ValueError("boom")

    results = run_batched([{"x": _x([1, 2])}, {"x": _x([1])}], INPUTS, OUTPUTS, 8, broken)
    assert "inference failed: boom" in str(results[0])
    assert isinstance(results[1], RequestError)


def test_a_request_the_runner_refuses_is_the_clients_error_not_the_servers():
    def needs_state(inputs):
        if inputs["state"] is None:
            raise RequestError("input 'state' left out, and the model gives it no default")
        return {"y": inputs["x"] + inputs["state"], "n": np.zeros((len(inputs["x"]), 1))}

    specs = [TensorSpec("x", F32, (-1, 2)), TensorSpec("state", F32, (2,), optional=True)]
    plain, stateful = {"x": _x([1, 2])}, {"x": _x([1, 2]), "state": _x([1, 1])[0]}
    results = run_batched([plain, stateful], specs, OUTPUTS, 0, needs_state)
    assert isinstance(results[0], RequestError) and "'state' left out" in str(results[0])
    np.testing.assert_array_equal(results[1]["y"], _x([2, 3]))


def test_outputs_with_the_wrong_number_of_rows_fail_the_batch():
    def short(inputs):
        return {"y": inputs["x"][:1], "n": np.zeros((1, 1))}

    results = run_batched([{"x": _x([1, 2])}, {"x": _x([3, 4])}], INPUTS, OUTPUTS, 8, short)
    assert all("expected 2 rows" in str(result) for result in results)


def test_missing_output_is_reported_by_name():
    results = run_batched(
        [{"x": _x([1, 2])}], INPUTS, OUTPUTS, 8, lambda inputs: {"y": inputs["x"]}
    )
    assert "no output 'n'" in str(results[0])


def test_specs_and_parameters_come_from_the_config():
    config = {
        "input": [{"name": "a", "data_type": "TYPE_FP32", "dims": [-1, 25], "optional": True}],
        "parameters": {"intra_op_thread_count": {"string_value": "3"}},
    }
    assert input_specs(config) == [TensorSpec("a", F32, (-1, 25), optional=True)]
    assert parameter(config, "intra_op_thread_count", 0) == 3
    assert parameter(config, "inter_op_thread_count", 0) == 0


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.zeros((0, 2), np.float32)}, r"'x'.*got shape \[0, 2\] \(an empty tensor\)"),
        ({"x": _x([1, np.nan])}, r"'x'.*first in row 0"),
        ({"x": _x([1, 2]), "state": _x([np.inf, 0])}, r"'state'.*NaN/Inf"),
    ],
)
def test_empty_and_non_finite_inputs_never_reach_the_runtime(inputs, message):
    model = CountingModel()
    results = run_batched([inputs, {"x": _x([1, 2])}], INPUTS, OUTPUTS, 8, model)
    assert isinstance(results[0], RequestError)
    with pytest.raises(RequestError, match=message):
        raise results[0]
    np.testing.assert_array_equal(results[1]["y"], [[2, 4]])
    assert [len(call["x"]) for call in model.calls] == [1]
