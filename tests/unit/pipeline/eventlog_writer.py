"""A separate process writing to one event log, as a Triton model instance (a stub) does.

Run by ``test_eventlog.py``; not a test itself. Two modes:

``eventlog_writer.py DB concurrent WRITER WRITERS COUNT``
    Prints ``ready``, waits for a line on stdin (so that every writer starts at once), then
    makes ``COUNT`` :meth:`EventLog.record` calls. Call ``i`` reports three rows: the writer's
    own event ``i`` (new), its event ``i - 1`` again with its final end (an update), and the
    event ``(channel "S-1", stream 0, start 0)`` that every writer shares, whose end grows
    to ``(COUNT - 1) * WRITERS + WRITER``. Prints the ids the log called new, as JSON.

``eventlog_writer.py DB forever``
    Records one new event after another and prints each id once ``record`` has returned,
    until it is killed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from satwatch.pipeline.eventlog import EventLog

SHARED = ("S-1", 0, 0)  # channel, stream id, start of the event every writer updates


def own_rows(writer: int, step: int) -> list[tuple[float, float, float]]:
    """The writer's own rows of call ``step``: event ``step`` new, event ``step - 1`` final."""
    rows = [(step * 10, step * 10 + 1, 1.0)]
    if step:
        rows.append(((step - 1) * 10, (step - 1) * 10 + 5, 2.0 + writer))
    return rows


def concurrent(log: EventLog, writer: int, writers: int, count: int) -> None:
    """Write ``count`` calls once stdin says go; print the new ids."""
    print("ready", flush=True)
    sys.stdin.readline()
    new = []
    for step in range(count):
        new += [e.id for e in log.record("E-1", "EPS", 100 + writer, own_rows(writer, step))]
        growing = step * writers + writer
        new += [e.id for e in log.record(SHARED[0], "SS", SHARED[1], [(0, growing, growing)])]
    print(json.dumps(new), flush=True)


def forever(log: EventLog) -> None:
    """Record new events until killed, acknowledging each on stdout."""
    step = 0
    while True:
        (event,) = log.record("E-2", "EPS", 7, [(step, step + 3, 0.5 + step)])
        print(event.id, flush=True)
        step += 1


def main(argv: list[str]) -> None:
    """Parse the arguments (see the module doc) and write."""
    log = EventLog(Path(argv[0]))
    if argv[1] == "concurrent":
        concurrent(log, int(argv[2]), int(argv[3]), int(argv[4]))
    else:
        forever(log)


if __name__ == "__main__":
    main(sys.argv[1:])
