"""The anomaly event log (SQLite) and its webhook delivery.

:class:`EventLog` keeps one row per event, keyed by ``(channel, stream_id, start)``: an
event reported again by a later chunk of the same stream (longer, or closed) updates its row
instead of adding one, and a report never shrinks it (``end`` and ``peak`` keep their
largest value), so the row is the same whichever writer commits last. The database runs in
WAL mode with a busy timeout and every write is one ``BEGIN IMMEDIATE`` transaction, so
writers at once (several model instances, each its own process, or threads) wait for each
other instead of failing, and no event is lost. A commit is on disk when ``record`` returns
(``synchronous = FULL``): it survives a ``kill -9`` of the server, and a power loss too.

:class:`WebhookNotifier` POSTs each new event as JSON to an operator's URL from a background
thread fed by a queue, off the request path, with a timeout. A delivered event is marked
``delivered``; a failed one stays undelivered with its error and attempt count and is sent
again by :meth:`WebhookNotifier.retry_undelivered`, which the thread runs every
``retry_interval`` seconds, however busy the queue is; ``on_failure`` (a metric) hears of
each failed delivery. Before each POST the notifier claims the event in the log for a lease,
so two notifiers on one log (two model instances) never send the same event at once.

Example::

    log = EventLog(Path("events.db"))
    notifier = WebhookNotifier(log, "http://127.0.0.1:9000/alerts").start()
    new = log.record("E-1", "EPS", stream_id, events)      # events: (N, 3) start, end, peak
    notifier.submit(new)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import queue
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
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
    last_error TEXT, claimed_until REAL,
    UNIQUE (channel, stream_id, start)
)
"""
# Columns added after the first release, added to an older log when it is opened.
_ADDED_COLUMNS = {"claimed_until": "REAL"}
_COLUMNS = 'id, channel, subsystem, stream_id, start, "end", peak, first_seen, delivered, attempts'

# A delivery's claim outlives the POST's own timeouts (connect, then the answer) by this
# margin; a notifier killed mid-POST holds its events no longer than that.
_LEASE_MARGIN = 10.0


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
        self._enable_wal()
        # One write transaction: instances opening a new (or older) log at once create the
        # table and add missing columns exactly once.
        with self._connect(write=True) as connection:
            connection.execute(_SCHEMA)
            known = {row[1] for row in connection.execute("PRAGMA table_info(events)")}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in known:
                    connection.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")

    def _enable_wal(self) -> None:
        """Switch the file to WAL mode (persistent in the file; outside a transaction).

        The switch needs the file to itself, and SQLite answers "database is locked" at once,
        without its busy handler, while another connection has it open: Triton initialises a
        model's instances side by side, so each retries here until ``busy_timeout``.
        """
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.01
        while True:
            try:
                with self._connect() as connection:
                    connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        # One connection per call: safe from any thread, and WAL lets readers run beside one
        # writer. isolation_level=None: transactions are the explicit BEGIN below.
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            # In WAL mode NORMAL already survives a killed process (COMMIT has written the WAL
            # to the OS), but a power loss or kernel crash can roll back the last commits.
            # FULL fsyncs the WAL at each COMMIT, so an event ``record`` returned is on disk.
            # Writes are rare (only chunks that report events, and delivery marks), so the
            # fsync per commit costs little.
            connection.execute("PRAGMA synchronous = FULL")
            if write:
                # IMMEDIATE takes the write lock up front: a writer never has to upgrade a
                # read lock, the one case where SQLite answers "database is locked" at once
                # instead of waiting; so the busy timeout is all the retrying needed.
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

        Returns:
            The events this call inserted; a known event (updated) is never returned again,
            whichever process reported it first.
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
                    # An event only grows: a late or repeated report (a client resending
                    # an earlier chunk, another instance committing after us) never undoes
                    # a later one.
                    connection.execute(
                        'UPDATE events SET "end" = MAX("end", ?), peak = MAX(peak, ?), '
                        "updated = ? WHERE channel = ? AND stream_id = ? AND start = ?",
                        (int(end), float(peak), now, *key),
                    )
        return self.get(new_ids)

    def get(self, ids: Sequence[int]) -> list[EventRecord]:
        """The events with these ids, in id order."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return self._select(f"WHERE id IN ({marks})", list(ids))

    def events(self, channel: str | None = None) -> list[EventRecord]:
        """All events (of one channel), in id order."""
        where, args = ("WHERE channel = ?", [channel]) if channel else ("", [])
        return self._select(where, args)

    def undelivered(self) -> list[EventRecord]:
        """Events not yet delivered to the webhook, in id order."""
        return self._select("WHERE delivered = 0", [])

    def _select(self, where: str, args: list) -> list[EventRecord]:
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM events {where} ORDER BY id", args
            ).fetchall()
        return [EventRecord(*row[:8], bool(row[8]), row[9]) for row in rows]

    def claim(self, event_id: int, lease: float) -> bool:
        """Take the delivery of one undelivered event for ``lease`` seconds.

        Returns:
            ``False`` when the event is delivered already or another claim on it still
            runs (another notifier, maybe in another process, is sending it).
        """
        # Wall-clock time: the processes sharing the log share no monotonic clock.
        now = time.time()
        with self._connect(write=True) as connection:
            cursor = connection.execute(
                "UPDATE events SET claimed_until = ? WHERE id = ? AND delivered = 0 "
                "AND (claimed_until IS NULL OR claimed_until <= ?)",
                (now + lease, event_id, now),
            )
        return cursor.rowcount == 1

    def mark(self, event_id: int, delivered: bool, error: str | None = None) -> None:
        """Record a delivery attempt of one event (and release its claim)."""
        with self._connect(write=True) as connection:
            connection.execute(
                "UPDATE events SET delivered = ?, attempts = attempts + 1, last_error = ?, "
                "claimed_until = NULL WHERE id = ?",
                (int(delivered), error, event_id),
            )


class WebhookNotifier:
    """Delivers new events to a webhook URL from a background thread."""

    def __init__(
        self,
        log: EventLog,
        url: str,
        *,
        timeout: float = 2.0,
        retry_interval: float = 60.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """Prepare delivery to ``url``; call :meth:`start` to run the thread.

        Args:
            log: The event log the events are in (and their delivery is marked in).
            url: Where each event is POSTed.
            timeout: Seconds each blocking step of one POST may take.
            retry_interval: Seconds between two passes that queue every undelivered event.
            on_failure: Called (from the delivery thread) after each delivery that failed.
        """
        self.log = log
        self.url = url
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.on_failure = on_failure
        self._queue: queue.Queue[EventRecord | None] = queue.Queue()
        # Ids queued or being sent: each is in the queue at most once, and never queued
        # again while its POST runs.
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookNotifier:
        """Start the delivery thread (and queue what an earlier run left undelivered)."""
        # Each thread its own stop flag: one that close() gave up on never runs on beside
        # the thread of a later start().
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="satwatch-webhook", daemon=True
        )
        self._thread.start()
        self.retry_undelivered()
        return self

    def submit(self, events: Sequence[EventRecord]) -> None:
        """Queue events for delivery (each id at most once in the queue); never blocks long."""
        with self._lock:
            for event in events:
                if event.id not in self._pending:
                    self._pending.add(event.id)
                    self._queue.put(event)

    def retry_undelivered(self) -> int:
        """Queue every undelivered event again; return how many are undelivered."""
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
        """Deliver what is queued, then stop the thread; return within ``timeout`` seconds.

        When the webhook is too slow for that, the thread stops after the POST it is
        sending; what is still queued stays undelivered in the log (nothing is lost) and the
        next :meth:`start` queues it again.
        """
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            LOGGER.warning(
                "webhook %s: closed with %d events undelivered; they are sent on the next start",
                self.url,
                len(self._pending),
            )
        self._thread = None

    def deliver(self, event: EventRecord) -> bool:
        """Claim one event, POST it and mark it delivered or not.

        Returns:
            Whether this call delivered it; ``False`` too when another notifier holds it.
        """
        if not self.log.claim(event.id, lease=2 * self.timeout + _LEASE_MARGIN):
            LOGGER.debug(
                "webhook %s: event %d delivered or being sent elsewhere", self.url, event.id
            )
            return False
        body = json.dumps(event.payload()).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                ok, error = 200 <= response.status < 300, f"HTTP {response.status}"
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        self.log.mark(event.id, ok, None if ok else error)
        if not ok:
            LOGGER.warning("webhook %s: event %d undelivered (%s)", self.url, event.id, error)
            self._failed()
        return ok

    def _failed(self) -> None:
        if self.on_failure is not None:
            try:
                self.on_failure()
            except Exception:  # noqa: BLE001  a failing hook must not end the thread
                LOGGER.exception("webhook %s: on_failure hook failed", self.url)

    def _run(self, stop: threading.Event) -> None:
        # The retry pass runs on a monotonic deadline checked after every item and on every
        # queue timeout: a queue that is never empty (steady traffic) cannot postpone it.
        next_retry = time.monotonic() + self.retry_interval
        while not stop.is_set():
            try:
                event = self._queue.get(timeout=max(0.0, next_retry - time.monotonic()))
            except queue.Empty:
                event = None
            else:
                try:
                    if event is None:  # close()'s sentinel: everything before it is done
                        return
                    self._send(event, stop)
                finally:
                    self._queue.task_done()
            if time.monotonic() >= next_retry:
                self._retry_pass()
                next_retry = time.monotonic() + self.retry_interval

    def _send(self, event: EventRecord, stop: threading.Event) -> None:
        try:
            if not stop.is_set():
                self.deliver(event)
        except Exception:  # noqa: BLE001  the thread must outlive any one event
            LOGGER.exception("webhook delivery of event %d failed", event.id)
            self._failed()
        finally:
            # Only now: a retry pass meanwhile must not queue the event a second time.
            with self._lock:
                self._pending.discard(event.id)

    def _retry_pass(self) -> None:
        try:
            self.retry_undelivered()
        except Exception:  # noqa: BLE001  a log locked for too long must not end the thread
            LOGGER.exception(
                "webhook %s: retry pass failed; next in %gs", self.url, self.retry_interval
            )
