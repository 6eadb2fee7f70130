"""The stream state: round trip through the FP32 vector, wrong states refused."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.exceptions import DataError
from satwatch.pipeline.dynamic_threshold import ArrivalState
from satwatch.pipeline.poststate import PostState, stream_id_of


def test_state_round_trip_and_wrong_state_refused() -> None:
    state = PostState(42, 17, np.array([1, 2, 3, 4], np.float32), (10, 12, 3.5))
    back = PostState.from_array(state.to_array(), window=5)
    assert (back.stream_id, back.offset, back.run) == (42, 17, (10, 12, 3.5))
    np.testing.assert_array_equal(back.history, state.history)
    assert stream_id_of(state.to_array()) == 42
    with pytest.raises(DataError, match="smoothing window 3"):
        PostState.from_array(state.to_array(), window=3)
    with pytest.raises(DataError, match="post_state"):
        PostState.from_array(np.zeros(2, np.float32), window=5)
    with pytest.raises(DataError, match="version-2 state, got 3 values"):
        stream_id_of(np.zeros(3, np.float32))


def test_dynamic_state_travels_appended_to_the_vector() -> None:
    carry = ArrivalState(1.5, 2.5, 4.0, True, np.array([0.5, 1.0, 1.5]))
    state = PostState(7, 3, np.zeros(4, np.float32), None, carry)
    back = PostState.from_array(state.to_array(), window=5, dynamic=True)
    assert back.run is None and back.carry is not None
    np.testing.assert_array_equal(back.carry.to_array(), carry.to_array())
    with pytest.raises(DataError, match="ratio threshold policy"):
        PostState.from_array(state.to_array(), window=5)
    with pytest.raises(DataError, match="dynamic threshold policy"):
        PostState.from_array(PostState.start(5, 1).to_array(), 5, dynamic=True)


def test_new_streams_get_distinct_ids() -> None:
    ids = {PostState.start(5).stream_id for _ in range(20)}
    assert len(ids) > 15
