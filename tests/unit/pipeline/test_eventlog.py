"""The SQLite event log (concurrent writers) and webhook delivery to a local HTTP server."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from satwatch.pipeline.eventlog import EventLog, WebhookNotifier

WRITER = Path(__file__).with_name("eventlog_writer.py")
sys.path.insert(0, str(WRITER.parent))
from eventlog_writer import SHARED  # noqa: E402  the helper beside this file


class _Hook(BaseHTTPRequestHandler):
    """Records each POST; answers ``server.status``, or 500 to the first ``server.fail_first``."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.received.append(body)  # type: ignore[attr-defined]
            failing = len(server.received) <= server.fail_first  # type: ignore[attr-defined]
            status = 500 if failing else server.status  # type: ignore[attr-defined]
            if 200 <= status < 300:
                server.delivered.append(body["id"])  # type: ignore[attr-defined]
        time.sleep(server.delay)  # type: ignore[attr-defined]
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received, server.delivered, server.lock = [], [], threading.Lock()  # type: ignore[attr-defined]
    server.status, server.fail_first, server.delay = 200, 0, 0.0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/alerts"


def test_new_events_inserted_known_ones_updated(tmp_path) -> None:
    log = EventLog(tmp_path / "events.db")
    new = log.record("E-1", "EPS", 5, np.array([[10, 12, 1.5]], np.float32))
    assert [(e.start, e.end, e.peak) for e in new] == [(10, 12, 1.5)]
    again = log.record("E-1", "EPS", 5, np.array([[10, 20, 2.5], [40, 44, 1.25]], np.float32))
    assert [e.start for e in again] == [40]  # 10 is known: updated, not new
    assert [(e.start, e.end, e.peak) for e in log.events("E-1")] == [(10, 20, 2.5), (40, 44, 1.25)]
    other_stream = log.record("E-1", "EPS", 6, np.array([[10, 12, 1.0]], np.float32))
    assert len(other_stream) == 1


def test_two_threads_writing_at_once_lose_no_event(tmp_path) -> None:
    path = tmp_path / "events.db"
    EventLog(path)
    per_thread, barrier = 80, threading.Barrier(2)

    def writer(stream: int) -> None:
        log = EventLog(path, busy_timeout=30)
        barrier.wait()
        for i in range(per_thread):
            log.record("E-1", "EPS", stream, np.array([[i * 10, i * 10 + 3, 1.0]]))

    threads = [threading.Thread(target=writer, args=(s,)) for s in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = EventLog(path).events()
    assert len(events) == 2 * per_thread
    assert {(e.stream_id, e.start) for e in events} == {
        (s, i * 10) for s in (1, 2) for i in range(per_thread)
    }


def test_webhook_receives_new_events_and_marks_them_delivered(tmp_path, webhook) -> None:
    log = EventLog(tmp_path / "events.db")
    notifier = WebhookNotifier(log, _url(webhook), timeout=2).start()
    try:
        new = log.record("T-1", "TCS", 9, np.array([[5, 9, 2.0]], np.float32))
        notifier.submit(new)
        assert notifier.flush(10)
    finally:
        notifier.close()
    assert webhook.received == [
        {
            "id": new[0].id,
            "channel": "T-1",
            "subsystem": "TCS",
            "stream_id": 9,
            "start": 5,
            "end": 9,
            "peak": 2.0,
            "first_seen": new[0].first_seen,
        }
    ]
    assert [e.delivered for e in log.events()] == [True]


def test_failing_webhook_keeps_the_event_undelivered_and_retries_it(tmp_path, webhook) -> None:
    log = EventLog(tmp_path / "events.db")
    webhook.status = 500
    notifier = WebhookNotifier(log, _url(webhook), timeout=2).start()
    try:
        notifier.submit(log.record("E-1", "EPS", 1, np.array([[0, 4, 3.0]], np.float32)))
        assert notifier.flush(10)
        (event,) = log.events()
        assert (event.delivered, event.attempts) == (False, 1)
        assert log.undelivered() == [event]
        webhook.status = 200
        assert notifier.retry_undelivered() == 1
        assert notifier.flush(10)
    finally:
        notifier.close()
    (event,) = log.events()
    assert (event.delivered, event.attempts) == (True, 2)
    assert len(webhook.received) == 2


def test_unreachable_webhook_times_out_without_losing_the_event(tmp_path) -> None:
    log = EventLog(tmp_path / "events.db")
    notifier = WebhookNotifier(log, "http://127.0.0.1:9/never", timeout=0.5)
    (event,) = log.record("E-1", "EPS", 1, np.array([[0, 4, 3.0]], np.float32))
    assert notifier.deliver(event) is False
    assert log.undelivered()[0].attempts == 1


def test_idle_thread_retries_undelivered_events(tmp_path, webhook) -> None:
    # The first POST fails and nothing else is submitted: only the thread's timed retry pass,
    # run while the queue is idle, can send the event again.
    log = EventLog(tmp_path / "events.db")
    webhook.fail_first, interval = 1, 0.5
    began = time.monotonic()
    notifier = WebhookNotifier(log, _url(webhook), timeout=2, retry_interval=interval).start()
    try:
        notifier.submit(log.record("E-1", "EPS", 1, np.array([[0, 4, 3.0]], np.float32)))
        assert notifier.flush(10)
        deadline = began + 20 * interval
        while not log.events()[0].delivered and time.monotonic() < deadline:
            time.sleep(0.05)
        waited = time.monotonic() - began
    finally:
        notifier.close()
    (event,) = log.events()
    assert (event.delivered, event.attempts) == (True, 2), "not retried while idle"
    assert waited >= interval  # by the timer, not by sending again at once
    assert len(webhook.received) == 2 and webhook.received[0] == webhook.received[1]


def _writer(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def test_instances_opening_a_new_log_at_once_all_open_it(tmp_path) -> None:
    # Triton initialises a model's instances side by side; the switch to WAL once answered
    # "database is locked" to all but one of them, and the model failed to load. The race is
    # rare in one try, so many fresh logs are opened by 8 threads at once.
    failures = []
    for trial in range(100):
        path, start = tmp_path / f"events-{trial}.db", threading.Barrier(8)

        def open_log(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                EventLog(path)
            except sqlite3.OperationalError as error:
                failures.append(error)

        threads = [threading.Thread(target=open_log) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_writer_processes_at_once_lose_no_event(tmp_path) -> None:
    # Separate processes, as Triton's model instances are separate stubs, on a new file:
    # they create the log at once, then write their own events and one they all share.
    path, writers, count = tmp_path / "events.db", 4, 40
    procs = [_writer(path, "concurrent", str(w), str(writers), str(count)) for w in range(writers)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:  # all of them open and waiting: start them together
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [0] * writers, [err for _, err in outputs]
    new_ids = [i for out, _ in outputs for i in json.loads(out)]

    events = EventLog(path).events()
    assert len(events) == writers * count + 1  # each distinct event once
    assert sorted(new_ids) == [e.id for e in events]  # and called new by one writer only
    rows = {(e.channel, e.stream_id, e.start): (e.end, e.peak) for e in events}
    for writer in range(writers):
        # Each event reported new, then again by the next call with its final end and peak;
        # the last one only once.
        expected = {start: (start + 5, 2.0 + writer) for start in range(0, (count - 1) * 10, 10)}
        expected[(count - 1) * 10] = ((count - 1) * 10 + 1, 1.0)
        mine = {start: row for (_, stream, start), row in rows.items() if stream == 100 + writer}
        assert mine == expected
    # The shared event ends where its longest report ended, whoever committed last, and a
    # late shorter report (a resent earlier chunk) does not shrink it.
    largest = (count - 1) * writers + writers - 1
    assert EventLog(path).record(SHARED[0], "SS", SHARED[1], [(SHARED[2], 1, 1.0)]) == []
    rows[SHARED] = next((e.end, e.peak) for e in EventLog(path).events(SHARED[0]))
    assert rows[SHARED] == (largest, float(largest))
    assert _integrity(path) == "ok"


def test_event_recorded_before_kill_9_is_there_after_reopening(tmp_path) -> None:
    path = tmp_path / "events.db"
    proc = _writer(path, "forever")
    try:
        # Acknowledged: ``record`` returned. Killed while it writes the next ones.
        acknowledged = [int(proc.stdout.readline()) for _ in range(40)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert _integrity(path) == "ok"
    log = EventLog(path)
    kept = {e.id: (e.start, e.end, e.peak) for e in log.events()}
    assert {i: kept.get(i) for i in acknowledged} == {
        i: (step, step + 3, 0.5 + step) for step, i in enumerate(acknowledged)
    }
    assert log.record("E-2", "EPS", 7, [(10_000, 10_003, 1.0)])  # and it takes new writes


def test_undelivered_events_are_retried_on_a_timer_under_steady_traffic(tmp_path, webhook):
    log = EventLog(tmp_path / "events.db")
    webhook.fail_first, interval, period = 3, 0.3, 0.03
    notifier = WebhookNotifier(log, _url(webhook), timeout=2, retry_interval=interval).start()
    stop, submitted = threading.Event(), []

    def producer() -> None:  # a new event every 30 ms: the queue is never idle for 0.3 s
        step = 0
        while not stop.wait(period):
            new = log.record("E-1", "EPS", 1, [(step * 10, step * 10 + 4, 1.0)])
            notifier.submit(new)
            submitted.extend(e.id for e in new)
            step += 1

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        deadline = time.monotonic() + 8 * interval
        while len(submitted) < 3 and time.monotonic() < deadline:
            time.sleep(period)
        failed = set(submitted[:3])
        while not failed <= set(webhook.delivered) and time.monotonic() < deadline:
            time.sleep(period)
        retried_at = len(submitted)
        time.sleep(2 * period)
        still_producing = len(submitted) > retried_at
    finally:
        stop.set()
        thread.join()
        notifier.close()
    assert failed <= set(webhook.delivered), "failed events not retried within 8 intervals"
    assert still_producing  # they were retried while traffic went on, not after it stopped
    assert max(Counter(webhook.delivered).values()) == 1  # never delivered twice


def test_two_notifiers_on_one_log_never_deliver_an_event_twice(tmp_path, webhook) -> None:
    # Two model instances, each its own notifier, both queueing what is undelivered.
    log = EventLog(tmp_path / "events.db")
    webhook.delay = 0.01  # a POST takes a while: the other notifier meets events in flight
    new = log.record("E-1", "EPS", 1, [(i * 10, i * 10 + 4, 1.0) for i in range(30)])
    first = WebhookNotifier(log, _url(webhook), retry_interval=0.05)
    second = WebhookNotifier(log, _url(webhook), retry_interval=0.05)
    first.submit(new)
    first.start()
    second.start()
    try:
        assert first.flush(10) and second.flush(10)
    finally:
        first.close()
        second.close()
    assert sorted(webhook.delivered) == [e.id for e in new]
    assert log.undelivered() == []


def test_close_returns_within_its_timeout_when_the_webhook_hangs(tmp_path) -> None:
    # A listening socket that never answers: each POST connects, then waits its timeout.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        log = EventLog(tmp_path / "events.db")
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/alerts"
        notifier = WebhookNotifier(log, url, timeout=0.5).start()
        notifier.submit(log.record("E-1", "EPS", 1, [(i * 10, i * 10 + 4, 1.0) for i in range(5)]))
        began = time.monotonic()
        notifier.close(timeout=0.3)
        assert time.monotonic() - began < 0.3 + 0.5  # its timeout, and slack for a busy host
        time.sleep(1.0)  # the thread ends after the POST it was sending
        attempts = sum(e.attempts for e in log.events())
        assert attempts <= 2
        time.sleep(0.6)
        assert sum(e.attempts for e in log.events()) == attempts  # stopped, not draining on
    assert len(log.undelivered()) == 5  # nothing lost: the next start sends them


def test_log_of_an_earlier_release_gains_the_claim_column_and_delivers(tmp_path, webhook):
    path = tmp_path / "events.db"
    with sqlite3.connect(path) as connection:  # the schema before delivery claims
        connection.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, "
            "subsystem TEXT NOT NULL, stream_id INTEGER NOT NULL, start INTEGER NOT NULL, "
            '"end" INTEGER NOT NULL, peak REAL NOT NULL, first_seen TEXT NOT NULL, '
            "updated TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, "
            "attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, "
            "UNIQUE (channel, stream_id, start))"
        )
        connection.execute(
            'INSERT INTO events (channel, subsystem, stream_id, start, "end", peak, first_seen, '
            "updated) VALUES ('E-1', 'EPS', 1, 0, 4, 3.0, 'then', 'then')"
        )
    connection.close()
    log = EventLog(path)
    notifier = WebhookNotifier(log, _url(webhook)).start()  # queues the old undelivered row
    try:
        assert notifier.flush(10)
    finally:
        notifier.close()
    assert [(e.start, e.delivered) for e in log.events()] == [(0, True)]
    assert webhook.delivered == [1]
