"""Where streamed telemetry comes from: a channel's test split, a file, or standard input.

Each source is a :class:`Telemetry`: the channel it belongs to (the server routes and
normalises by it), an iterator of raw ``(n, F)`` float32 chunks, the number of steps when it
is known, and the expert labels when they exist. F is the data's width (25 for SMAP, 55 for
MSL): a file's or a feed's rows must all have the width of the first; the server refuses a
width other than the channel's (naming both).

Rows on standard input are read as they arrive (comma- or space-separated, one time step per
line) and sent whenever ``chunk`` rows are there, so a live feed can be piped in.

Example::

    telemetry = from_dataset(load_dataset(), "E-1", chunk=256)
    for raw in telemetry.chunks:
        ...
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from satwatch.data import TelemetryDataset
from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

ALIGNMENT = 16
"""Chunk sizes that are multiples of this give scores bit-identical to one whole-series
request (measured: the runtimes' matrix kernels then cut every chunk into the same row
blocks as the whole series); other sizes differ by up to ~4e-6."""


@dataclass
class Telemetry:
    """One channel's stream.

    Attributes:
        channel: Channel id.
        chunks: Raw ``(n, F)`` float32 chunks, in order.
        total: Steps in the stream, when known.
        labels: Expert labels ``(total,)`` when known.
        label_events: Labelled events (inclusive ``(start, end)``) when known.
    """

    channel: str
    chunks: Iterator[np.ndarray]
    total: int | None = None
    labels: np.ndarray | None = None
    label_events: list | None = None


def check_chunk(chunk: int) -> int:
    """Validate a chunk size (>= 1); warn when it is not a multiple of :data:`ALIGNMENT`.

    Raises:
        DataError: For a size below 1.
    """
    if chunk < 1:
        raise DataError(f"chunk: expected at least 1 step, got {chunk}")
    if chunk % ALIGNMENT:
        LOGGER.warning(
            "chunk %d is not a multiple of %d: scores may differ from a whole-series request "
            "by ~1e-6",
            chunk,
            ALIGNMENT,
        )
    return chunk


def check_rows(rows: np.ndarray, where: str, features: int | None = None) -> np.ndarray:
    """Return ``rows`` as float32 ``(T, F)``: 2-D, at least one row and one column, and
    ``features`` columns when given (one 1-D row of that width is taken as ``(1, F)``).

    Raises:
        DataError: For another shape or no rows.
    """
    array = np.asarray(rows, dtype=np.float32)
    if array.ndim == 1 and features is not None and array.size == features:
        array = array.reshape(1, features)
    wrong_width = features is not None and array.ndim == 2 and array.shape[1] != features
    if array.ndim != 2 or 0 in array.shape or wrong_width:
        width = f"{features} columns" if features is not None else "one or more columns"
        raise DataError(
            f"{where}: expected telemetry rows (T, F) of {width} (the value and its command "
            f"flags), got shape {array.shape}"
        )
    return array


def split(array: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    """Consecutive chunks of ``chunk`` rows (the last may be shorter)."""
    for start in range(0, array.shape[0], chunk):
        yield array[start : start + chunk]


def from_dataset(dataset: TelemetryDataset, channel: str, chunk: int) -> Telemetry:
    """A channel's test split, with its labels."""
    data = dataset.channel(channel)
    test = check_rows(data.test, f"channel {channel} test split", data.num_features)
    events = [(e.start, e.end) for e in data.events]
    return Telemetry(channel, split(test, chunk), test.shape[0], data.labels, events)


def read_file(path: Path) -> np.ndarray:
    """Rows from a ``.npy`` or ``.csv`` file (a header line in a CSV is skipped).

    Raises:
        DataError: When the file is missing, unreadable or not ``(T, F)``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input {path}: file not found")
    try:
        if path.suffix == ".npy":
            rows = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            with path.open() as handle:
                rows = _parse_lines(handle, str(path))
        else:
            raise DataError(f"input {path}: expected a .npy or .csv file, got {path.suffix!r}")
    except (OSError, ValueError) as error:
        raise DataError(f"input {path}: unreadable ({error})") from error
    return check_rows(rows, f"input {path}")


def from_file(path: Path, channel: str, chunk: int) -> Telemetry:
    """A ``.npy``/``.csv`` file of raw rows for ``channel``."""
    rows = read_file(path)
    return Telemetry(channel, split(rows, chunk), rows.shape[0])


def from_lines(lines: TextIO | Iterable[str], channel: str, chunk: int) -> Telemetry:
    """Rows read from a text stream as they arrive, sent ``chunk`` at a time."""
    return Telemetry(channel, _line_chunks(lines, chunk))


def _parse_row(line: str, number: int, where: str, width: int | None = None) -> list[float] | None:
    """One row's values (None for a blank, comment or header line), ``width`` of them when
    given: a feed's rows all have its first row's width."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.replace(",", " ").split()
    try:
        values = [float(f) for f in fields]
    except ValueError:
        if number == 1:
            return None  # a header
        raise DataError(f"{where} line {number}: expected numbers, got {text[:60]!r}") from None
    if width is not None and len(values) != width:
        raise DataError(
            f"{where} line {number}: expected {width} values (as the first row), got {len(values)}"
        )
    return values


def _rows_of(lines: Iterable[str], where: str) -> Iterator[list[float]]:
    """The rows of a text stream, as they arrive, each of the first row's width."""
    width = None
    for number, line in enumerate(lines, 1):
        row = _parse_row(line, number, where, width)
        if row is not None:
            width = len(row)
            yield row


def _parse_lines(lines: Iterable[str], where: str) -> np.ndarray:
    rows = list(_rows_of(lines, where))
    return np.asarray(rows, np.float32).reshape(len(rows), len(rows[0]) if rows else 0)


def _line_chunks(lines: Iterable[str], chunk: int) -> Iterator[np.ndarray]:
    rows: list[list[float]] = []
    for row in _rows_of(lines, "standard input"):
        rows.append(row)
        if len(rows) == chunk:
            yield np.asarray(rows, np.float32)
            rows = []
    if rows:
        yield np.asarray(rows, np.float32)
