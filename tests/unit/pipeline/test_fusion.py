"""Fusion of per-detector scores: max, mean and vote by hand."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.exceptions import DataError
from satwatch.pipeline.fusion import fuse


def test_fusion_max_mean_vote_by_hand() -> None:
    a = np.array([0.5, 2.0, 1.5], np.float32)
    b = np.array([1.5, 0.0, 0.5], np.float32)
    np.testing.assert_allclose(fuse([a, b], "max"), [1.5, 2.0, 1.5])
    np.testing.assert_allclose(fuse([a, b], "mean"), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(fuse([a, b], "vote"), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(fuse([a, a * 0 + 3], "vote"), [0.5, 1.0, 1.0])
    assert fuse([a, b], "mean").dtype == np.float32


def test_unknown_fusion_is_refused() -> None:
    with pytest.raises(DataError, match="fusion: expected one of max, mean, vote, got 'median'"):
        fuse([np.ones(2)], "median")
