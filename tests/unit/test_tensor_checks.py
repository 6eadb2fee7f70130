"""The request rules of every served model: not empty, within the limits, finite."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.exceptions import DataError
from satwatch.tensor_checks import MAX_ELEMENTS, MAX_STEPS, check_tensor


@pytest.mark.parametrize("shape", [(0, 25), (4, 0), (0,), (0, 0)])
def test_a_zero_length_axis_is_refused_naming_the_tensor_and_shape(shape) -> None:
    with pytest.raises(DataError, match=rf"'input_data'.*got shape \[{shape[0]}"):
        check_tensor("input_data", np.zeros(shape, np.float32))


def test_more_steps_than_the_limit_are_refused_with_the_limit() -> None:
    array = np.zeros((MAX_STEPS + 1, 1), np.float32)
    with pytest.raises(DataError, match=rf"at most {MAX_STEPS} time steps.*got {MAX_STEPS + 1}"):
        check_tensor("input_data", array)


def test_more_values_than_the_limit_are_refused() -> None:
    array = np.zeros((MAX_STEPS, MAX_ELEMENTS // MAX_STEPS + 1), np.float32)
    with pytest.raises(DataError, match=rf"at most {MAX_ELEMENTS} values"):
        check_tensor("input_data", array)


def test_the_limits_themselves_are_accepted() -> None:
    check_tensor("input_data", np.zeros((MAX_STEPS, MAX_ELEMENTS // MAX_STEPS), np.float32))


def test_non_finite_values_name_the_first_bad_row_and_the_columns() -> None:
    array = np.zeros((20, 4), np.float32)
    array[12, 1] = np.inf
    array[7, 3] = np.nan
    with pytest.raises(
        DataError, match=r"'context'.*2 NaN/Inf value\(s\), first in row 7 \(row\(s\) 7, 12; column"
    ):
        check_tensor("context", array)


def test_a_one_dimensional_score_names_its_bad_row() -> None:
    with pytest.raises(DataError, match=r"'score1'.*first in row 2 \(row\(s\) 2\)"):
        check_tensor("score1", np.array([0.1, 0.2, np.nan], np.float32))


def test_post_state_may_hold_nan_because_the_server_writes_it() -> None:
    check_tensor("post_state", np.array([1.0, np.nan, np.inf], np.float32))


def test_bytes_and_bool_tensors_are_checked_for_size_only() -> None:
    check_tensor("channel_id", np.array([b"E-1"], dtype=object))
    check_tensor("end_of_stream", np.array([True]))
    with pytest.raises(DataError, match="'channel_id'"):
        check_tensor("channel_id", np.array([], dtype=object))
