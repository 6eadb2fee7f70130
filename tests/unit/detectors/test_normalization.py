"""Min-max normalisation fitted on training data, including constant training series."""

from __future__ import annotations

import json

import numpy as np
import pytest

from satwatch.data import load_dataset
from satwatch.detectors.normalization import Normalisation
from satwatch.exceptions import DataError


def test_constant_training_feature_becomes_zero_and_moves_by_its_own_size() -> None:
    train = np.array([[0.999, 0.0, -1.0], [0.999, 1.0, 1.0]], dtype=np.float32)
    stats = Normalisation.fit(train)
    assert stats.scale[0] == 1.0
    out = stats.apply(np.array([[0.999, 0.5, 0.0], [0.499, 1.0, 3.0]], dtype=np.float32))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 0], [0.0, -0.5], atol=1e-6)
    np.testing.assert_allclose(out[:, 1], [0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[:, 2], [0.5, 2.0], atol=1e-6)


def test_values_far_outside_training_range_are_clipped() -> None:
    stats = Normalisation.fit(np.array([[0.0], [1.0]]), clip=3.0)
    out = stats.apply(np.array([[100.0], [-100.0]]))
    np.testing.assert_array_equal(out[:, 0], [3.0, -3.0])


def test_dict_round_trip_through_json_gives_identical_output() -> None:
    train = np.random.default_rng(0).normal(size=(50, 4))
    stats = Normalisation.fit(train)
    again = Normalisation.from_dict(json.loads(json.dumps(stats.to_dict())))
    np.testing.assert_array_equal(stats.apply(train), again.apply(train))


def test_real_constant_channel_a1_normalises_without_nan(shared_data) -> None:
    chan = load_dataset(shared_data).channel("A-1")
    stats = Normalisation.fit(chan.train)
    train, test = stats.apply(chan.train), stats.apply(chan.test)
    assert np.isfinite(test).all()
    assert train.min() >= 0.0 and train.max() <= 1.0
    np.testing.assert_array_equal(train[:, 0], 0.0)  # A-1's value is constant in training


def test_wrong_feature_count_names_expected_and_got() -> None:
    stats = Normalisation.fit(np.zeros((3, 25)))
    with pytest.raises(DataError, match=r"\(T, 25\).*\(4, 3\)"):
        stats.apply(np.zeros((4, 3)))
