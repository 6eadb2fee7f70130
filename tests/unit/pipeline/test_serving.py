"""Helpers of the Python models that need no server."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.exceptions import DataError
from satwatch.pipeline.serving import decode_channel, parameters


def test_channel_id_decoding() -> None:
    assert decode_channel(np.array([b"A-1"], dtype=object)) == "A-1"
    assert decode_channel(np.array([["T-2 "]], dtype=object)) == "T-2"
    assert decode_channel(None) == "E-1"
    with pytest.raises(DataError, match="expected one string, got 2"):
        decode_channel(np.array([b"A-1", b"E-1"], dtype=object))
    with pytest.raises(DataError, match="empty string"):
        decode_channel(np.array([b""], dtype=object))


def test_parameters_of_a_json_config() -> None:
    config = {"parameters": {"fusion": {"string_value": "vote"}, "x": {}}}
    assert parameters(config) == {"fusion": "vote", "x": ""}
    assert parameters({}) == {}
