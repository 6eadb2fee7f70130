"""The SQLite channel catalog: lookups, unknown channels, reload when the file changes."""

from __future__ import annotations

import os

import pytest

from satwatch.exceptions import DataError
from satwatch.pipeline.catalog import Catalog, ChannelEntry, ModelEntry, read_catalog, write_catalog


def _entry(channel: str, subsystem: str, shared: str = "tranad_sat1") -> ChannelEntry:
    return ChannelEntry(
        channel,
        "SMAP",
        subsystem,
        (
            ModelEntry("omni", f"SMAP_{channel}", ("encoder_state", "decoder_state")),
            ModelEntry("tranad", shared, ("context",), core=f"{shared}_core"),
            ModelEntry("range", f"range_{channel}"),  # a detector that carries no state
        ),
    )


def test_written_catalog_reads_back(tmp_path) -> None:
    path = write_catalog(tmp_path / "catalog.db", [_entry("E-1", "EPS"), _entry("A-1", "ACS")])
    entries = read_catalog(path)
    assert entries["E-1"] == _entry("E-1", "EPS")
    assert [m.model for m in entries["A-1"].models] == ["SMAP_A-1", "tranad_sat1", "range_A-1"]
    assert [m.states for m in entries["A-1"].models] == [
        ("encoder_state", "decoder_state"),
        ("context",),
        (),
    ]
    assert [m.core for m in entries["A-1"].models] == ["", "tranad_sat1_core", ""]


def test_unknown_channel_is_named_with_the_known_ones(tmp_path) -> None:
    catalog = Catalog(write_catalog(tmp_path / "catalog.db", [_entry("E-1", "EPS")]))
    with pytest.raises(DataError, match="unknown channel 'Z-9': the catalog holds E-1"):
        catalog.lookup("Z-9")


def test_catalog_is_cached_and_reloaded_when_the_file_changes(tmp_path) -> None:
    path = write_catalog(tmp_path / "catalog.db", [_entry("E-1", "EPS")])
    catalog = Catalog(path)
    assert catalog.lookup("E-1").models[1].model == "tranad_sat1"
    catalog.lookup("E-1")
    assert catalog.loads == 1  # cached
    write_catalog(path, [_entry("E-1", "EPS", shared="tranad_sat2"), _entry("T-1", "TCS")])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert catalog.lookup("E-1").models[1].model == "tranad_sat2"
    assert catalog.lookup("T-1").subsystem == "TCS"
    assert catalog.loads == 2


def test_missing_or_broken_catalog_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataError, match="channel catalog not found"):
        Catalog(tmp_path / "absent.db").lookup("E-1")
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(DataError, match="not a channel catalog"):
        read_catalog(broken)


def test_a_catalog_built_before_cores_reads_with_none(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "catalog.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "CREATE TABLE channels (channel TEXT PRIMARY KEY, spacecraft TEXT, subsystem TEXT);"
            "CREATE TABLE models (channel TEXT, position INTEGER, detector TEXT, model TEXT,"
            " states TEXT);"
            "INSERT INTO channels VALUES ('E-1', 'SMAP', 'EPS');"
            "INSERT INTO models VALUES ('E-1', 0, 'tranad', 'tranad_sat1', 'context');"
        )
    connection.close()
    (model,) = read_catalog(path)["E-1"].models
    assert model == ModelEntry("tranad", "tranad_sat1", ("context",), core="")
