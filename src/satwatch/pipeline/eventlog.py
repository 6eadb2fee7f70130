"""The anomaly event log (SQLite) and its webhook delivery.

:class:`EventLog` keeps one row per event, keyed by ``(channel, stream_id, start)``: an
event reported again by a later chunk of the same stream (longer, or closed) updates its row
instead of adding one. The database runs in WAL mode with a busy timeout and every write is
one ``BEGIN IMMEDIATE`` transaction, so requests writing at once (several model instances,
or threads) wait for each other instead of failing, and no event is lost.

:class:`WebhookNotifier` POSTs each new event as JSON to an operator's URL from a background
thread fed by a queue, off the request path, with a timeout. A delivered event is marked
``delivered``; a failed one stays undelivered with its error and attempt count and is sent
again by :meth:`WebhookNotifier.retry_undelivered`, which the thread also runs whenever it
has been idle for ``retry_interval`` seconds.

Example::

    log = EventLog(Path("events.db"))
    notifier = WebhookNotifier(log, "http://127.0.0.1:9000/alerts").start()
    new = log.record("E-1", "EPS", stream_id, events)      # events: (N, 3) start, end, peak
    notifier.submit(new)
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger(__name__)

EVENT_LOG_FILE = "events.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL, subsystem TEXT NOT NULL, stream_id INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, peak REAL NOT NULL,
    first_seen TEXT NOT NULL, updated TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (channel, stream_id, start)
);
"""
_COLUMNS = 'id, channel, subsystem, stream_id, start, "end", peak, first_seen, delivered, attempts'


@dataclass(frozen=True)
class EventRecord:
    """One row of the event log."""

    id: int
    channel: str
    subsystem: str
    stream_id: int
    start: int
    end: int
    peak: float
    first_seen: str
    delivered: bool
    attempts: int

    def payload(self) -> dict:
        """The JSON body POSTed to the webhook."""
        body = asdict(self)
        body.pop("delivered")
        body.pop("attempts")
        return body


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class EventLog:
    """The SQLite event log at ``path`` (created with its schema when absent)."""

    def __init__(self, path: Path, busy_timeout: float = 30.0) -> None:
        """Open (create) the log; ``busy_timeout`` seconds is how long a writer waits."""
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        # One connection per call: safe from any thread, and WAL lets readers run beside one
        # writer. isolation_level=None: transactions are the explicit BEGIN below.
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            # In WAL mode NORMAL stays consistent after a crash; it skips an fsync per commit.
            connection.execute("PRAGMA synchronous = NORMAL")
            if write:
                connection.execute("BEGIN IMMEDIATE")
            yield connection
            if write:
                connection.execute("COMMIT")
        except BaseException:
            if write and connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def record(
        self, channel: str, subsystem: str, stream_id: int, events: np.ndarray | Sequence
    ) -> list[EventRecord]:
        """Insert new events and update known ones; return the new ones.

        Args:
            channel: Channel id.
            subsystem: The channel's subsystem.
            stream_id: The stream the events belong to (from ``post_state``).
            events: ``(N, 3)`` rows ``(start, end, peak)``.
        """
        rows = np.asarray(events, np.float64).reshape(-1, 3)
        if rows.size == 0:
            return []
        new_ids = []
        now = _now()
        with self._connect(write=True) as connection:
            for start, end, peak in rows:
                key = (channel, int(stream_id), int(start))
                cursor = connection.execute(
                    'INSERT INTO events (channel, subsystem, stream_id, start, "end", peak, '
                    "first_seen, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (channel, stream_id, start) DO NOTHING",
                    (channel, subsystem, key[1], key[2], int(end), float(peak), now, now),
                )
                if cursor.rowcount:
                    new_ids.append(cursor.lastrowid)
                else:
                    connection.execute(
                        'UPDATE events SET "end" = ?, peak = ?, updated = ? '
                        "WHERE channel = ? AND stream_id = ? AND start = ?",
                        (int(end), float(peak), now, *key),
                    )
        return self.get(new_ids)

    def get(self, ids: Sequence[int]) -> list[EventRecord]:
        """The events with these ids, in id order."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM events WHERE id IN ({marks}) ORDER BY id", list(ids)
            ).fetchall()
        return [EventRecord(*row[:8], bool(row[8]), row[9]) for row in rows]

    def events(self, channel: str | None = None) -> list[EventRecord]:
        """All events (of one channel), in id order."""
        where, args = ("WHERE channel = ?", [channel]) if channel else ("", [])
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM events {where} ORDER BY id", args
            ).fetchall()
        return [EventRecord(*row[:8], bool(row[8]), row[9]) for row in rows]

    def undelivered(self) -> list[EventRecord]:
        """Events not yet delivered to the webhook."""
        return [event for event in self.events() if not event.delivered]

    def mark(self, event_id: int, delivered: bool, error: str | None = None) -> None:
        """Record a delivery attempt of one event."""
        with self._connect(write=True) as connection:
            connection.execute(
                "UPDATE events SET delivered = ?, attempts = attempts + 1, last_error = ? "
                "WHERE id = ?",
                (int(delivered), error, event_id),
            )


class WebhookNotifier:
    """Delivers new events to a webhook URL from a background thread."""

    def __init__(
        self, log: EventLog, url: str, *, timeout: float = 2.0, retry_interval: float = 60.0
    ) -> None:
        """Prepare delivery to ``url``; call :meth:`start` to run the thread."""
        self.log = log
        self.url = url
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._queue: queue.Queue[EventRecord | None] = queue.Queue()
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookNotifier:
        """Start the delivery thread (and queue what an earlier run left undelivered)."""
        self._thread = threading.Thread(target=self._run, name="satwatch-webhook", daemon=True)
        self._thread.start()
        self.retry_undelivered()
        return self

    def submit(self, events: Sequence[EventRecord]) -> None:
        """Queue events for delivery (each id at most once in the queue)."""
        with self._lock:
            for event in events:
                if event.id not in self._pending:
                    self._pending.add(event.id)
                    self._queue.put(event)

    def retry_undelivered(self) -> int:
        """Queue every undelivered event again; return how many were queued."""
        events = self.log.undelivered()
        self.submit(events)
        return len(events)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is delivered (or failed); ``False`` on timeout."""
        done = threading.Event()

        def waiter() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=waiter, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after what is queued."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def deliver(self, event: EventRecord) -> bool:
        """POST one event; mark it delivered or not; return whether it was."""
        body = json.dumps(event.payload()).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                ok, error = 200 <= response.status < 300, f"HTTP {response.status}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        self.log.mark(event.id, ok, None if ok else error)
        if not ok:
            LOGGER.warning("webhook %s: event %d undelivered (%s)", self.url, event.id, error)
        return ok

    def _run(self) -> None:
        while True:
            try:
                event = self._queue.get(timeout=self.retry_interval)
            except queue.Empty:
                self.retry_undelivered()
                continue
            try:
                if event is None:
                    return
                with self._lock:
                    self._pending.discard(event.id)
                try:
                    self.deliver(event)
                except Exception:  # noqa: BLE001  the thread must outlive any one event
                    LOGGER.exception("webhook delivery of event %d failed", event.id)
            finally:
                self._queue.task_done()
