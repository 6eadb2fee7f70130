"""The SQLite event log (concurrent writers) and webhook delivery to a local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from satwatch.pipeline.eventlog import EventLog, WebhookNotifier


class _Hook(BaseHTTPRequestHandler):
    received: list[dict]
    status: int

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received, server.status = [], 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
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
    log = EventLog(tmp_path / "events.db")
    (event,) = log.record("E-1", "EPS", 1, np.array([[0, 4, 3.0]], np.float32))
    log.mark(event.id, delivered=False, error="earlier failure")
    notifier = WebhookNotifier(log, _url(webhook), timeout=2, retry_interval=0.2)
    notifier.start()  # queues what an earlier run left undelivered
    try:
        assert notifier.flush(10)
    finally:
        notifier.close()
    assert log.events()[0].delivered
