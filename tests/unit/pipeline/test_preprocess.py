"""Preprocessing: normalisation with the detectors' statistics, and the NaN/Inf policy."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.detectors.normalization import Normalisation
from satwatch.exceptions import DataError
from satwatch.pipeline.preprocess import NormalisationTable, check_raw, preprocess


def _stats() -> Normalisation:
    train = np.zeros((4, 25), np.float32)
    train[:, 0] = [-1.0, 0.0, 0.5, 1.0]
    return Normalisation.fit(train)


def test_preprocess_applies_the_training_statistics() -> None:
    raw = np.zeros((2, 25), np.float32)
    raw[:, 0] = [0.0, 1.0]
    raw[1, 3] = 1.0  # a command never issued in training: x - min, no division by zero
    out = preprocess(raw, _stats())
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], [0.5, 1.0])
    assert out[1, 3] == 1.0


def test_nan_and_inf_are_refused_naming_rows_and_columns() -> None:
    raw = np.zeros((10, 25), np.float32)
    raw[3, 0] = np.nan
    raw[7, 4] = np.inf
    with pytest.raises(
        DataError, match=r"2 NaN/Inf value\(s\), first in row 3 \(row\(s\) 3, 7; column\(s\) 0, 4\)"
    ):
        preprocess(raw, _stats())


def test_many_bad_rows_are_summarised() -> None:
    raw = np.full((9, 25), np.nan, np.float32)
    with pytest.raises(DataError, match="row\\(s\\) 0, 1, 2, 3, 4 and 4 more"):
        check_raw(raw, 25)


@pytest.mark.parametrize("shape", [(3, 24), (0, 25), (25,)])
def test_wrong_shapes_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(DataError, match=r"expected shape \(T>=1, 25\)"):
        check_raw(np.zeros(shape, np.float32), 25)


def test_a_row_of_another_width_names_the_channel_and_its_width() -> None:
    with pytest.raises(DataError, match=r"\(T>=1, 7\) of channel 'X-1' .*got \(4, 25\)"):
        check_raw(np.zeros((4, 25), np.float32), 7, "X-1")
    assert check_raw(np.zeros((4, 7)), 7, "X-1").dtype == np.float32


def test_table_round_trip_and_unknown_channel(tmp_path) -> None:
    table = NormalisationTable({"E-1": _stats()})
    loaded = NormalisationTable.load(table.save(tmp_path / "normalisation.json"))
    np.testing.assert_array_equal(loaded.get("E-1").scale, _stats().scale)
    with pytest.raises(DataError, match="channel 'X-9'.*expected one of E-1"):
        loaded.get("X-9")
    with pytest.raises(DataError, match="normalisation statistics JSON"):
        NormalisationTable.load(tmp_path / "absent.json")
