"""Telemetry sources: files, rows on standard input, a channel's test split."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from satwatch.client.sources import (
    check_chunk,
    check_rows,
    from_dataset,
    from_file,
    from_lines,
    read_file,
)
from satwatch.data import load_dataset
from satwatch.exceptions import DataError


def _rows(count: int) -> np.ndarray:
    return np.arange(count * 25, dtype=np.float32).reshape(count, 25) / 7


def test_npy_and_csv_files_give_the_same_chunks(tmp_path: Path) -> None:
    rows = _rows(10)
    np.save(tmp_path / "rows.npy", rows)
    header = ",".join(f"c{i}" for i in range(25))
    lines = [header] + [",".join(f"{v:.9g}" for v in row) for row in rows]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    for name in ("rows.npy", "rows.csv"):
        telemetry = from_file(tmp_path / name, "E-1", chunk=4)
        chunks = list(telemetry.chunks)
        assert [c.shape[0] for c in chunks] == [4, 4, 2]
        assert telemetry.total == 10 and telemetry.labels is None
        np.testing.assert_allclose(np.concatenate(chunks), rows, rtol=1e-7)


def test_a_file_of_any_width_is_read_and_a_shapeless_one_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "narrow.npy", np.ones((5, 7), np.float32))
    assert read_file(tmp_path / "narrow.npy").shape == (5, 7)
    np.save(tmp_path / "flat.npy", np.zeros(5, np.float32))
    with pytest.raises(DataError, match=r"expected telemetry rows \(T, F\).*\(5,\)"):
        read_file(tmp_path / "flat.npy")
    with pytest.raises(DataError, match=r"of 25 columns.*\(5, 24\)"):
        check_rows(np.zeros((5, 24)), "rows", 25)
    with pytest.raises(DataError, match="file not found"):
        read_file(tmp_path / "missing.npy")
    (tmp_path / "rows.txt").write_text("1\n")
    with pytest.raises(DataError, match=r"expected a \.npy or \.csv file"):
        read_file(tmp_path / "rows.txt")


def test_rows_on_standard_input_are_sent_as_chunks_arrive() -> None:
    rows = _rows(7)
    text = "\n".join(" ".join(str(v) for v in row) for row in rows) + "\n\n"
    chunks = list(from_lines(io.StringIO(text), "E-1", chunk=3).chunks)
    assert [c.shape for c in chunks] == [(3, 25), (3, 25), (1, 25)]
    np.testing.assert_allclose(np.concatenate(chunks), rows)


def test_a_bad_row_on_standard_input_names_its_line() -> None:
    text = ",".join(["1"] * 25) + "\n" + ",".join(["1"] * 3) + "\n"
    with pytest.raises(DataError, match="standard input line 2: expected 25 values .*got 3"):
        list(from_lines(io.StringIO(text), "E-1", chunk=8).chunks)
    seven = "\n".join(",".join(["2"] * 7) for _ in range(3)) + "\n"
    assert [c.shape for c in from_lines(io.StringIO(seven), "X-1", chunk=2).chunks] == [
        (2, 7),
        (1, 7),
    ]


def test_a_channel_test_split_comes_with_its_labels(synth_data: Path) -> None:
    dataset = load_dataset(synth_data)
    telemetry = from_dataset(dataset, "E-1", chunk=1000)
    channel = dataset.channel("E-1")
    assert telemetry.total == channel.test.shape[0]
    assert telemetry.labels is not None and telemetry.labels.sum() == channel.labels.sum()
    assert telemetry.label_events == [(e.start, e.end) for e in channel.events]
    assert sum(c.shape[0] for c in telemetry.chunks) == telemetry.total


def test_chunk_sizes_below_one_are_refused() -> None:
    assert check_chunk(256) == 256
    with pytest.raises(DataError, match="at least 1 step, got 0"):
        check_chunk(0)
