"""Load a running server for a while: many clients streaming telemetry at once.

:func:`run_soak` starts ``clients`` threads, each with its own gRPC client (its own
:class:`~satwatch.client.connection.Connection`), for ``duration`` seconds. Client ``i`` sends to
``models[i % len(models)]``: a ``custom_logic`` client streams the test telemetry of one
channel (the channels taken in turn), a ``multi_detector`` client that of E-1 (the ensemble is
wired to it). Each stream goes chunk by chunk through the same
:class:`~satwatch.client.targets.PipelineTarget` ``satwatch detect`` uses, so every request
carries the state the previous answer returned; at the end of the test split, or after a
failed request (whose state is lost), the client starts the channel again from step 0.

The report counts requests and failures (with the first error messages), samples the resident
memory (RSS) of the ``tritonserver`` process and of each Python backend stub at the start and
the end, and gives p50/p99 latency per bucket of ``bucket`` seconds (a request belongs to the
bucket it was sent in). Failed requests are counted, not timed.

Example::

    report = run_soak("127.0.0.1:8001", clients=4, duration=30, bucket=10)
    report.failures, [b.p99_ms for b in report.buckets], report.server.rss_end
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

from satwatch.client.connection import Connection, normalise_url
from satwatch.client.sources import check_chunk, check_rows, split
from satwatch.client.stream import DEFAULT_CHUNK, prepare_target
from satwatch.client.targets import ENSEMBLE_CHANNEL, PIPELINES, Target
from satwatch.data import load_dataset
from satwatch.exceptions import ClientError, SatwatchError
from satwatch.paths import data_dir
from satwatch.server.supervisor import live_stubs

LOGGER = logging.getLogger(__name__)

DEFAULT_CLIENTS = 32
DEFAULT_DURATION = 600.0
DEFAULT_BUCKET = 60.0
DEFAULT_MODELS = ("custom_logic", "multi_detector")
ERRORS_KEPT = 5
"""Error messages kept in the report (the earliest)."""
SERVER_PROCESS = "tritonserver"
FAILURE_PAUSE = 0.1
"""Seconds a client waits after a failed request, so a dead model is not hammered in a loop."""
FINISH_GRACE = 60.0
"""Seconds after the end a client may still wait for its last answer before it is given up."""
PROGRESS_INTERVAL = 0.5

OnProgress = Callable[[float, int, int], None]
"""``on_progress(seconds elapsed, requests, failures)``, called about twice a second."""


@dataclass
class ProcessMemory:
    """One server process's resident memory at the start and the end of the soak.

    Attributes:
        name: ``tritonserver``, or the model a backend stub serves.
        pid_start: Its pid at the start (None: not running then).
        pid_end: Its pid at the end (a different pid: the process was restarted).
        rss_start: Resident memory in bytes at the start.
        rss_end: Resident memory in bytes at the end.
    """

    name: str
    pid_start: int | None = None
    pid_end: int | None = None
    rss_start: int | None = None
    rss_end: int | None = None


@dataclass
class Latency:
    """Answered requests of one bucket (or one model in it) and their latency in ms."""

    requests: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass
class Bucket:
    """One time bucket of the soak.

    Attributes:
        start: Seconds since the start of the soak.
        end: End of the bucket (the last one ends with the soak).
        requests: Requests answered, sent in this bucket.
        failures: Requests failed, sent in this bucket.
        p50_ms: Median latency of the answered requests.
        p99_ms: 99th percentile latency of the answered requests.
        by_model: The same by model.
    """

    start: float
    end: float
    requests: int
    failures: int
    p50_ms: float | None
    p99_ms: float | None
    by_model: dict[str, Latency] = field(default_factory=dict)


@dataclass
class SoakReport:
    """What a soak measured.

    Attributes:
        url: The gRPC address loaded.
        models: The models the clients sent to.
        clients: Concurrent clients.
        duration: Seconds asked for.
        chunk: Time steps per request.
        bucket: Seconds per latency bucket.
        seconds: Wall time from the first request to the last answer.
        requests: Requests answered.
        failures: Requests that failed.
        steps: Time steps answered.
        requests_by_model: Answered requests by model.
        failures_by_model: Failed requests by model.
        errors: The first error messages, each ``<model>/<channel>: <message>``.
        unfinished: Clients still waiting for an answer :data:`FINISH_GRACE` s after the end
            (their request counts as a failure).
        interrupted: The soak was stopped early (Ctrl-C).
        server: ``tritonserver``'s memory, None when the process was not found.
        stubs: Each Python backend stub's memory, by model.
        buckets: Latency per bucket, in order.
    """

    url: str
    models: list[str]
    clients: int
    duration: float
    chunk: int
    bucket: float
    seconds: float = 0.0
    requests: int = 0
    failures: int = 0
    steps: int = 0
    requests_by_model: dict[str, int] = field(default_factory=dict)
    failures_by_model: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    unfinished: int = 0
    interrupted: bool = False
    server: ProcessMemory | None = None
    stubs: dict[str, ProcessMemory] = field(default_factory=dict)
    buckets: list[Bucket] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No request failed and every client finished."""
        return self.failures == 0 and self.unfinished == 0

    def to_json(self) -> dict:
        """The report as plain JSON data (what ``soak.json`` holds)."""
        return asdict(self)


@dataclass
class ClientPlan:
    """What one client streams: a model, a channel and its test telemetry ``(T, F)``."""

    index: int
    model: str
    channel: str
    telemetry: np.ndarray


@dataclass
class ClientStats:
    """One client's record, written by its thread only (read by the main thread for progress).

    Attributes:
        plan: What it streamed.
        requests: Answered requests.
        failures: Failed requests.
        steps: Time steps answered.
        answered: ``(sent at, latency)`` in seconds of every answered request.
        failed_at: When each failed request was sent.
        errors: ``(sent at, message)`` of its first failures.
    """

    plan: ClientPlan
    requests: int = 0
    failures: int = 0
    steps: int = 0
    answered: list[tuple[float, float]] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)


# --- the server's processes -------------------------------------------------------------


def _split_address(url: str) -> tuple[str, int]:
    host, _, port = url.rpartition(":")
    return host.strip("[]"), int(port)


def _is_local(host: str) -> bool:
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.is_loopback or address.is_unspecified:
        return True
    local = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    return host in local


def _listening_server(port: int) -> psutil.Process | None:
    """The ``tritonserver`` process listening on ``port`` on this machine."""
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != SERVER_PROCESS:
            continue
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections):
            return process
    return None


def _process(pid: int, where: str) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
        name = process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        LOGGER.warning("%s names pid %d, which is not running", where, pid)
        return None
    if name != SERVER_PROCESS:
        LOGGER.warning("%s names pid %d, which is %r, not %s", where, pid, name, SERVER_PROCESS)
        return None
    return process


def find_server(
    url: str, pid: int | None = None, pid_file: Path | None = None
) -> psutil.Process | None:
    """The ``tritonserver`` process behind ``url``, or None (a remote server: no memory figures).

    ``pid`` wins; else the process listening on the URL's port when the host is this machine
    (the one actually loaded, whichever pid file it wrote); else the pid in ``pid_file``.
    """
    if pid is not None:
        return _process(pid, "--pid")
    host, port = _split_address(url)
    if _is_local(host) and (found := _listening_server(port)) is not None:
        return found
    if pid_file is not None and pid_file.is_file():
        try:
            return _process(int(pid_file.read_text().strip()), f"pid file {pid_file}")
        except ValueError:
            LOGGER.warning("pid file %s holds no pid", pid_file)
    LOGGER.warning("no %s process found for %s: no memory figures", SERVER_PROCESS, url)
    return None


def _rss(process: psutil.Process) -> int | None:
    try:
        return process.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _rss_of(pid: int) -> int | None:
    try:
        return _rss(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return None


def sample_memory(server: psutil.Process | None) -> dict[str, tuple[int, int | None]]:
    """``{name: (pid, rss bytes)}`` for the server and each of its backend stubs.

    The server is named ``tritonserver``; an instance stub by its model (``<model> #2`` and on
    for a model's further instances, in pid order).
    """
    if server is None:
        return {}
    sample = {SERVER_PROCESS: (server.pid, _rss(server))}
    stubs = sorted(live_stubs(server.pid).items(), key=lambda item: item[1])
    for (model, _, _), pid in stubs:
        name, number = model, 1
        while name in sample:
            number += 1
            name = f"{model} #{number}"
        sample[name] = (pid, _rss_of(pid))
    return sample


def _memory_rows(
    start: dict[str, tuple[int, int | None]], end: dict[str, tuple[int, int | None]]
) -> dict[str, ProcessMemory]:
    rows = {}
    for name in dict.fromkeys([*start, *end]):
        row = ProcessMemory(name)
        if name in start:
            row.pid_start, row.rss_start = start[name]
        if name in end:
            row.pid_end, row.rss_end = end[name]
        rows[name] = row
    return rows


# --- the clients -----------------------------------------------------------------------


def plan_clients(
    clients: int, models: Sequence[str], channels: Sequence[str], telemetry: dict[str, np.ndarray]
) -> list[ClientPlan]:
    """Client ``i`` sends to ``models[i % len(models)]``; custom_logic clients take the channels
    in turn, the ensembles' clients E-1."""
    plans = []
    routed = 0
    for index in range(clients):
        model = models[index % len(models)]
        if model == "custom_logic":
            channel = channels[routed % len(channels)]
            routed += 1
        else:
            channel = ENSEMBLE_CHANNEL
        plans.append(ClientPlan(index, model, channel, telemetry[channel]))
    return plans


class _Clock:
    def __init__(self, duration: float) -> None:
        self.started = time.perf_counter()
        self.duration = duration

    def now(self) -> float:
        return time.perf_counter() - self.started

    def over(self) -> bool:
        return self.now() >= self.duration


def _run_client(
    stats: ClientStats,
    target: Target,
    url: str,
    chunk: int,
    clock: _Clock,
    stop: threading.Event,
    admin_key: str | None,
) -> None:
    """Stream the client's channel again and again until the soak ends."""
    with Connection("grpc", url, admin_key=admin_key) as connection:
        while not (stop.is_set() or clock.over()):
            _stream_once(stats, target, connection, chunk, clock, stop)


def _stream_once(
    stats: ClientStats,
    target: Target,
    connection: Connection,
    chunk: int,
    clock: _Clock,
    stop: threading.Event,
) -> None:
    """One stream of the test split from step 0, state carried; it ends early on a failure."""
    plan = stats.plan
    total = plan.telemetry.shape[0]
    state: dict[str, np.ndarray] = {}
    done = 0
    for raw in split(plan.telemetry, chunk):
        if stop.is_set() or clock.over():
            return
        sent = clock.now()
        try:
            _, state = target.step(connection, plan.channel, raw, state, done + len(raw) >= total)
        except Exception as error:  # noqa: BLE001 - every failure is counted, none ends the soak
            _failed(stats, sent, error)
            # The state of this stream is lost: the next request starts a new one at step 0.
            stop.wait(FAILURE_PAUSE)
            return
        stats.answered.append((sent, clock.now() - sent))
        stats.requests += 1
        done += len(raw)
        stats.steps += len(raw)


def _failed(stats: ClientStats, sent: float, error: BaseException) -> None:
    stats.failures += 1
    stats.failed_at.append(sent)
    if len(stats.errors) < ERRORS_KEPT:
        text = (
            str(error) if isinstance(error, SatwatchError) else f"{type(error).__name__}: {error}"
        )
        stats.errors.append((sent, f"{stats.plan.model}/{stats.plan.channel}: {text}"))
    LOGGER.debug("client %d: request failed: %s", stats.plan.index, error)


# --- the figures -----------------------------------------------------------------------


def latency(seconds: Sequence[float]) -> Latency:
    """Count, p50 and p99 in ms of latencies in seconds (None for no requests)."""
    if not seconds:
        return Latency(0, None, None)
    p50, p99 = np.percentile(np.asarray(seconds) * 1e3, [50, 99])
    return Latency(len(seconds), round(float(p50), 3), round(float(p99), 3))


def make_buckets(stats: Sequence[ClientStats], duration: float, bucket: float) -> list[Bucket]:
    """Latency per ``bucket`` seconds of the soak, by the time each request was sent."""
    count = max(1, math.ceil(duration / bucket - 1e-9))

    def index(sent: float) -> int:
        return min(int(sent // bucket), count - 1)

    timed: list[list[tuple[str, float]]] = [[] for _ in range(count)]
    failures = [0] * count
    for client in stats:
        for sent, seconds in client.answered:
            timed[index(sent)].append((client.plan.model, seconds))
        for sent in client.failed_at:
            failures[index(sent)] += 1
    buckets = []
    for number, rows in enumerate(timed):
        overall = latency([s for _, s in rows])
        by_model = {
            model: latency([s for m, s in rows if m == model])
            for model in sorted({m for m, _ in rows})
        }
        start = number * bucket
        end = duration if number == count - 1 else start + bucket
        buckets.append(
            Bucket(
                start,
                end,
                overall.requests,
                failures[number],
                overall.p50_ms,
                overall.p99_ms,
                by_model,
            )
        )
    return buckets


def _by_model(stats: Sequence[ClientStats], what: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for client in stats:
        counts[client.plan.model] = counts.get(client.plan.model, 0) + getattr(client, what)
    return counts


def _first_errors(stats: Sequence[ClientStats]) -> list[str]:
    errors = sorted((e for client in stats for e in client.errors), key=lambda e: e[0])
    return [text for _, text in errors[:ERRORS_KEPT]]


# --- the soak --------------------------------------------------------------------------


def load_telemetry(
    data: Path | None, channels: str | Sequence[str]
) -> tuple[list[str], dict[str, np.ndarray]]:
    """The channels the custom_logic clients take, and the test split ``(T, F)`` float32 of
    each of them and of E-1 (the ensembles' channel).

    Raises:
        DataError: Unknown channels, telemetry missing or malformed.
    """
    dataset = load_dataset(data_dir(data))
    routed = dataset.resolve_channels(channels) if isinstance(channels, str) else list(channels)
    telemetry = {
        name: check_rows(dataset.channel(name).test, f"channel {name} test split")
        for name in dict.fromkeys([*routed, ENSEMBLE_CHANNEL])
    }
    return routed, telemetry


def _check_settings(clients: int, duration: float, bucket: float, models: Sequence[str]) -> None:
    if clients < 1:
        raise ClientError(f"clients: expected at least 1, got {clients}")
    if duration <= 0 or bucket <= 0:
        raise ClientError(f"duration and bucket: expected seconds > 0, got {duration}, {bucket}")
    unknown = [m for m in models if m not in PIPELINES]
    if not models or unknown:
        raise ClientError(
            f"models: expected some of {', '.join(PIPELINES)} (they take raw telemetry), "
            f"got {', '.join(models) or 'none'}"
        )


def run_soak(
    url: str | None = None,
    *,
    clients: int = DEFAULT_CLIENTS,
    duration: float = DEFAULT_DURATION,
    chunk: int = DEFAULT_CHUNK,
    models: Sequence[str] = DEFAULT_MODELS,
    bucket: float = DEFAULT_BUCKET,
    channels: str | Sequence[str] = "seed",
    data: Path | None = None,
    pid: int | None = None,
    pid_file: Path | None = None,
    admin_key: str | None = None,
    on_progress: OnProgress | None = None,
) -> SoakReport:
    """Load the server at ``url`` (gRPC) with ``clients`` streaming clients for ``duration`` s.

    Args:
        url: gRPC ``host:port`` (default 127.0.0.1:8001).
        clients: Concurrent clients, each a thread with its own gRPC client.
        duration: Seconds during which requests are sent.
        chunk: Time steps per request.
        models: Models the clients take in turn (``custom_logic``, ``multi_detector``,
            ``anomaly_pipeline``).
        bucket: Seconds per latency bucket.
        channels: Channels the ``custom_logic`` clients take in turn: a list, or a selection
            such as ``"seed"`` or ``"E-1,A-1"``.
        data: Telemetry folder (default ``$SATWATCH_DATA`` or the shared copy).
        pid: The ``tritonserver`` pid, for the memory figures.
        pid_file: A pid file naming it, used when no local process listens on the URL's port.
        admin_key: The server's admin key (lets an error name a model's state).
        on_progress: Called about twice a second with (elapsed s, requests, failures).

    Returns:
        The report. Ctrl-C ends the soak early: the report then says ``interrupted``.

    Raises:
        ClientError: Bad settings, no server, or a model or channel that cannot be served.
        DataError: Telemetry missing.
    """
    models = list(dict.fromkeys(models))
    _check_settings(clients, duration, bucket, models)
    check_chunk(chunk)
    address = normalise_url(url, "grpc")
    routed, telemetry = load_telemetry(data, channels)
    plans = plan_clients(clients, models, routed, telemetry)
    with Connection("grpc", address, admin_key=admin_key) as connection:
        targets = {
            model: prepare_target(
                connection, model, sorted({p.channel for p in plans if p.model == model})
            )
            for model in models
        }
    server = find_server(address, pid, pid_file)
    start_memory = sample_memory(server)
    report = SoakReport(address, models, clients, float(duration), chunk, float(bucket))
    stats, seconds = _run_clients(
        plans, targets, address, chunk, duration, admin_key, on_progress, report
    )
    end_memory = sample_memory(server)
    return _finish(report, stats, seconds, start_memory, end_memory)


def _run_clients(
    plans: Sequence[ClientPlan],
    targets: dict[str, Target],
    url: str,
    chunk: int,
    duration: float,
    admin_key: str | None,
    on_progress: OnProgress | None,
    report: SoakReport,
) -> tuple[list[ClientStats], float]:
    """Run every client to the end; return their records and the wall time."""
    stats = [ClientStats(plan) for plan in plans]
    stop = threading.Event()
    clock = _Clock(duration)
    # Daemon threads: a client stuck on a request that never answers cannot keep the process.
    threads = [
        threading.Thread(
            target=_run_client,
            args=(s, targets[s.plan.model], url, chunk, clock, stop, admin_key),
            name=f"soak-{s.plan.index}",
            daemon=True,
        )
        for s in stats
    ]
    for thread in threads:
        thread.start()
    try:
        _wait(threads, stats, clock, on_progress)
    except KeyboardInterrupt:
        LOGGER.warning(
            "soak interrupted after %.0f s: finishing the requests in flight", clock.now()
        )
        report.interrupted = True
        stop.set()
        _wait(threads, stats, clock, on_progress)
    stop.set()
    seconds = clock.now()
    report.unfinished = sum(thread.is_alive() for thread in threads)
    return stats, seconds


def _wait(
    threads: Sequence[threading.Thread],
    stats: Sequence[ClientStats],
    clock: _Clock,
    on_progress: OnProgress | None,
) -> None:
    """Join the clients, reporting progress, until they end or the grace after the end is up."""
    deadline = clock.duration + FINISH_GRACE
    while clock.now() < deadline:
        alive = [t for t in threads if t.is_alive()]
        if not alive:
            return
        alive[0].join(PROGRESS_INTERVAL)
        if on_progress is not None:
            on_progress(
                min(clock.now(), clock.duration),
                sum(s.requests for s in stats),
                sum(s.failures for s in stats),
            )


def _finish(
    report: SoakReport,
    stats: list[ClientStats],
    seconds: float,
    start_memory: dict[str, tuple[int, int | None]],
    end_memory: dict[str, tuple[int, int | None]],
) -> SoakReport:
    report.seconds = round(seconds, 3)
    report.requests = sum(s.requests for s in stats)
    # A client given up on still has a request in flight: it counts as failed.
    report.failures = sum(s.failures for s in stats) + report.unfinished
    report.steps = sum(s.steps for s in stats)
    report.requests_by_model = _by_model(stats, "requests")
    report.failures_by_model = _by_model(stats, "failures")
    report.errors = _first_errors(stats)
    if report.unfinished:
        report.errors.append(
            f"{report.unfinished} client(s) still waiting for an answer {FINISH_GRACE:.0f} s "
            "after the end"
        )
    report.buckets = make_buckets(stats, report.duration, report.bucket)
    memory = _memory_rows(start_memory, end_memory)
    report.server = memory.pop(SERVER_PROCESS, None)
    report.stubs = dict(sorted(memory.items()))
    LOGGER.info(
        "soak: %d requests, %d failures in %.1f s", report.requests, report.failures, seconds
    )
    return report
