"""The channel catalog: channel -> subsystem and the served detector models (SQLite).

``satwatch build`` writes it to ``python/custom_logic/1/catalog.db``; ``custom_logic`` reads
it through :class:`Catalog`, which keeps the rows in memory and reads the file again when it
changes (its mtime, size or inode), so rebuilding the catalog needs no model reload. The file
is replaced atomically (written beside, then renamed), so a reader never sees half a catalog.

Tables::

    channels(channel PRIMARY KEY, spacecraft, subsystem)
    models(channel, position, detector, model, states, core)   -- position 0 = score1

``states`` is the comma-separated list of the state tensors a stream passes back to that
model; ``core`` the model behind it when ``model`` is a Python front (else empty). The
thresholds are not here: they are calibration, in postprocessing's ``thresholds.json`` only.

Example::

    write_catalog(path, [ChannelEntry("E-1", "SMAP", "EPS", (
        ModelEntry("omni", "SMAP_E-1", ("encoder_state", "decoder_state")),
        ModelEntry("tranad", "tranad_sat1", ("context",), core="tranad_sat1_core")))])
    Catalog(path).lookup("E-1").subsystem   # 'EPS'
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

CATALOG_FILE = "catalog.db"

_SCHEMA = """
CREATE TABLE channels (channel TEXT PRIMARY KEY, spacecraft TEXT NOT NULL,
                       subsystem TEXT NOT NULL);
CREATE TABLE models (channel TEXT NOT NULL REFERENCES channels(channel),
                     position INTEGER NOT NULL, detector TEXT NOT NULL, model TEXT NOT NULL,
                     states TEXT NOT NULL, core TEXT NOT NULL DEFAULT '',
                     PRIMARY KEY (channel, position));
"""


@dataclass(frozen=True)
class ModelEntry:
    """One served detector of a channel.

    Attributes:
        detector: The detector kind (``omni``).
        model: Served model name (``SMAP_E-1``, ``tranad_sat1``).
        states: The state inputs a stream passes back (each model output ``<name>_out``).
        core: The model behind ``model`` when that is a Python front that only fills
            missing states (``tranad_sat1_core``); a request carrying every state may call
            it directly, with the same answer. Empty otherwise.
    """

    detector: str
    model: str
    states: tuple[str, ...] = ()
    core: str = ""


@dataclass(frozen=True)
class ChannelEntry:
    """One channel of the catalog.

    Attributes:
        channel: Channel id (``E-1``).
        spacecraft: ``SMAP`` or ``MSL``.
        subsystem: EPS, ACS, FSW, TCS, Data, SS or PS.
        models: Detectors in score order (score1, score2, ...).
    """

    channel: str
    spacecraft: str
    subsystem: str
    models: tuple[ModelEntry, ...]


def write_catalog(path: Path, entries: Iterable[ChannelEntry]) -> Path:
    """Write the catalog to ``path``, replacing any previous one atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(partial) as connection:
        connection.executescript(_SCHEMA)
        for entry in entries:
            connection.execute(
                "INSERT INTO channels VALUES (?, ?, ?)",
                (entry.channel, entry.spacecraft, entry.subsystem),
            )
            connection.executemany(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (entry.channel, i, m.detector, m.model, ",".join(m.states), m.core)
                    for i, m in enumerate(entry.models)
                ],
            )
    connection.close()
    os.replace(partial, path)
    return path


def read_catalog(path: Path) -> dict[str, ChannelEntry]:
    """Read every channel of the catalog at ``path``.

    Raises:
        DataError: If the file is missing or not a catalog.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: channel catalog not found (run `satwatch build`)")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            channels = connection.execute("SELECT * FROM channels").fetchall()
            columns = {row[1] for row in connection.execute("PRAGMA table_info(models)")}
            # A catalog built before fronts had cores: every call goes through the front.
            core = "core" if "core" in columns else "''"
            models = connection.execute(
                f"SELECT channel, detector, model, states, {core} FROM models "
                "ORDER BY channel, position"
            )
            by_channel: dict[str, list[ModelEntry]] = {}
            for channel, detector, model, states, core in models.fetchall():
                by_channel.setdefault(channel, []).append(
                    ModelEntry(detector, model, tuple(filter(None, states.split(","))), core)
                )
        finally:
            connection.close()
    except (sqlite3.DatabaseError, ValueError) as error:
        raise DataError(f"{path}: not a channel catalog of this layout: {error}") from error
    return {
        name: ChannelEntry(name, spacecraft, subsystem, tuple(by_channel.get(name, ())))
        for name, spacecraft, subsystem in channels
    }


class Catalog:
    """The catalog at a path, cached in memory and reread when the file changes."""

    def __init__(self, path: Path) -> None:
        """Remember the path; the file is read at the first lookup."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._entries: dict[str, ChannelEntry] = {}
        self.loads = 0
        """How many times the file was read (for tests and logs)."""

    def _current(self) -> dict[str, ChannelEntry]:
        try:
            stat = self.path.stat()
        except OSError as error:
            raise DataError(f"{self.path}: channel catalog not found (run `satwatch build`)") from (
                error
            )
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if signature != self._signature:
                self._entries = read_catalog(self.path)
                self._signature = signature
                self.loads += 1
                LOGGER.info("catalog %s loaded: %d channels", self.path, len(self._entries))
            return self._entries

    def channels(self) -> list[str]:
        """Channel ids in the catalog."""
        return sorted(self._current())

    def lookup(self, channel: str) -> ChannelEntry:
        """Return the entry of ``channel``.

        Raises:
            DataError: For a channel the catalog does not hold (naming it and the known ones).
        """
        entries = self._current()
        if channel not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise DataError(f"unknown channel {channel!r}: the catalog holds {known}")
        return entries[channel]
