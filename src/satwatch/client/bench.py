"""Measure a running server the way ``perf_analyzer`` does, for this project's models.

A load is N streams (N = the concurrency), each a thread sending one chunk after the other to
one served model and passing back the state the previous answer returned, as ``satwatch
detect`` streams (a detector gets ``input_data`` and its state inputs, read from the model's
metadata; ``custom_logic`` and the ensembles get what :class:`~.targets.PipelineTarget`
sends). Every request carries exactly ``chunk`` time steps; at the end of its series a stream
starts again from step 0 with no state. Per concurrency level (:func:`measure_level`):
throughput, latency percentiles and the server's own split of each request's time (queue,
compute input, infer, output: the difference of Triton's statistics before and after the
level).

Besides the load:

* :func:`run_baseline` — the same model file in this process, in the same runtime with the
  thread settings the server's config gives (ONNX Runtime, or TorchScript), the same chunks,
  state carried, one stream;
* :func:`run_replay` — channels' whole test telemetry through ``custom_logic`` (the client's
  own streaming, :func:`~.stream.stream_channels`) beside the same pipeline in this process:
  preprocessing's statistics, the exported detector files and postprocessing's function
  (:mod:`satwatch.evaluation.offline`), with the answers of both compared.

ONNX Runtime and torch are imported only by the parts that need them.

Example::

    with Connection("grpc", "127.0.0.1:8001") as connection:
        load = prepare_load(connection, "SMAP_E-1", chunk=256)
        level = measure_level(connection, load, concurrency=4, duration=5.0)
        baseline = run_baseline(connection, load, Path("triton-repository"), duration=5.0)
    level.steps_per_s / baseline.steps_per_s
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from satwatch.client import errors
from satwatch.client.connection import Connection
from satwatch.client.evaluate import judged_decisions
from satwatch.client.sources import check_chunk, check_rows, from_dataset
from satwatch.client.stream import DEFAULT_WORKERS, OnChunk, prepare_target, stream_channels
from satwatch.client.targets import (
    ENSEMBLE_CHANNEL,
    PIPELINES,
    DetectorTarget,
    Target,
    make_target,
)
from satwatch.data import TelemetryDataset
from satwatch.detectors import registry
from satwatch.exceptions import ClientError, DataError, SatwatchError
from satwatch.tensor_checks import MAX_STEPS

LOGGER = logging.getLogger(__name__)

DEFAULT_MODEL = "SMAP_E-1"
DEFAULT_CONCURRENCY = (1, 4, 16, 32)
DEFAULT_DURATION = 5.0
MAX_CONCURRENCY = 256
PERCENTILES = (50, 90, 95, 99)
SPLIT = ("queue", "compute_input", "compute_infer", "compute_output")
"""Triton's per-request time split, in the order a request goes through it."""
SYNTHETIC_CHUNKS = 8
"""Chunks in a synthetic stream before it starts again (so the state is carried 7 times)."""
NORMALISE_STEPS = 4096
"""Steps per request when the real telemetry is normalised by ``preprocessing`` up front."""
WARM_UP_REQUESTS = 3
"""Untimed requests before anything is measured: TorchScript's profiling executor optimises
a module only after its first two calls (measured: TranAD's first two 256-step chunks take
0.5 s each, later ones about 0.05 s)."""
WARM_UP_TIMEOUT = 300.0
"""Seconds the streams may take for their first (untimed) request."""
SETTLE_TIMEOUT = 2.0
"""Seconds to wait for Triton's statistics to count every answered request."""


# --- settings --------------------------------------------------------------------------


def parse_concurrency(text: str) -> list[int]:
    """``"1,4,16"`` -> ``[1, 4, 16]`` (repeats dropped, order kept).

    Raises:
        ClientError: For an empty list, a value that is not a whole number, or one outside
            1..:data:`MAX_CONCURRENCY`.
    """
    values = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value = int(item)
        except ValueError:
            raise ClientError(
                f"--concurrency: expected whole numbers separated by commas (1,4,16), got {text!r}"
            ) from None
        if not 1 <= value <= MAX_CONCURRENCY:
            raise ClientError(
                f"--concurrency: expected each level from 1 to {MAX_CONCURRENCY}, got {value}"
            )
        values.append(value)
    return list(dict.fromkeys(values))


def check_settings(duration: float, chunk: int) -> None:
    """Check ``--duration`` (> 0 s) and ``--chunk`` (1..:data:`MAX_STEPS` steps).

    Raises:
        ClientError: For a duration that is not above 0.
        DataError: For a chunk size outside 1..MAX_STEPS.
    """
    if not duration > 0:
        raise ClientError(f"--duration: expected seconds above 0, got {duration:g}")
    check_chunk(chunk)
    if chunk > MAX_STEPS:
        raise DataError(f"chunk: expected at most {MAX_STEPS} steps per request, got {chunk}")


# --- the figures -----------------------------------------------------------------------


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """``{"p50_ms", "p90_ms", "p95_ms", "p99_ms"}`` of latencies in seconds (None if none)."""
    if len(seconds) == 0:
        return {f"p{p}_ms": None for p in PERCENTILES}
    # Linear interpolation is monotone in the percentile, so p50 <= p90 <= p95 <= p99.
    values = np.percentile(np.asarray(seconds, dtype=np.float64) * 1e3, PERCENTILES)
    return {f"p{p}_ms": round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)}


@dataclass(frozen=True)
class ServerTotals:
    """One model's cumulative counters in Triton's statistics (summed over its versions).

    Attributes:
        requests: Successful requests.
        executions: Model executions (several requests may share one with batching).
        failures: Failed requests.
        nanoseconds: Total ns of each part of :data:`SPLIT`.
    """

    requests: int = 0
    executions: int = 0
    failures: int = 0
    nanoseconds: dict[str, int] = field(default_factory=dict)


def statistics_totals(statistics: Mapping, model: str) -> ServerTotals:
    """The totals of ``model`` in a ``get_inference_statistics`` answer.

    Takes both forms: HTTP's JSON (numbers) and gRPC's ``as_json`` (int64 as strings, zero
    fields left out).
    """
    requests = executions = failures = 0
    nanoseconds = dict.fromkeys(SPLIT, 0)
    for row in statistics.get("model_stats", []):
        if row.get("name") != model:
            continue
        stats = row.get("inference_stats", {})
        requests += int(stats.get("success", {}).get("count", 0))
        failures += int(stats.get("fail", {}).get("count", 0))
        executions += int(row.get("execution_count", 0))
        for part in SPLIT:
            nanoseconds[part] += int(stats.get(part, {}).get("ns", 0))
    return ServerTotals(requests, executions, failures, nanoseconds)


def server_split(before: ServerTotals, after: ServerTotals) -> dict[str, float | int | None]:
    """What the server spent per request between two snapshots, in ms.

    Keys: ``server_requests``, ``server_executions``, ``server_failures`` (counts) and
    ``server_<part>_ms`` for each part of :data:`SPLIT` (None when no request succeeded).
    """
    requests = after.requests - before.requests
    split: dict[str, float | int | None] = {
        "server_requests": requests,
        "server_executions": after.executions - before.executions,
        "server_failures": after.failures - before.failures,
    }
    for part in SPLIT:
        spent = after.nanoseconds.get(part, 0) - before.nanoseconds.get(part, 0)
        split[f"server_{part}_ms"] = round(spent / requests / 1e6, 3) if requests > 0 else None
    return split


# --- the load --------------------------------------------------------------------------


@dataclass
class Load:
    """What the streams send: a model, its target and each channel's chunks.

    Attributes:
        model: The served model.
        version: Its version ("" for the server's choice).
        target: How a chunk is sent and the state carried (:mod:`satwatch.client.targets`).
        chunk: Time steps per request.
        channels: The channel of each series; stream ``i`` sends series ``i % len``.
        series: Each channel's chunks, all exactly ``chunk`` steps, in order.
        source: Where the telemetry came from, in words.
    """

    model: str
    version: str
    target: Target
    chunk: int
    channels: list[str]
    series: list[list[np.ndarray]]
    source: str

    @property
    def pipeline(self) -> bool:
        """True for ``custom_logic`` and the ensembles (several models behind one)."""
        return self.model in PIPELINES

    def send(
        self, connection: Connection, channel: str, chunk: np.ndarray, state: dict, last: bool
    ) -> dict:
        """Send one chunk; return the state for the next one."""
        if isinstance(self.target, DetectorTarget):
            # The model alone: its input is normalised already (see prepare_load).
            _, state = self.target.score(connection, self.model, chunk, state)
        else:
            _, state = self.target.step(connection, channel, chunk, state, last)
        return state


Send = Callable[[str, np.ndarray, dict, bool], dict]
"""``send(channel, chunk, state, last) -> next state``."""


class _Stream:
    """One stream's place in its series and its state; used by one thread only."""

    def __init__(self, load: Load, index: int, send: Send) -> None:
        self.channel = load.channels[index % len(load.channels)]
        self.chunks = load.series[index % len(load.series)]
        self.position = 0
        self.state: dict[str, np.ndarray] = {}
        self._send = send

    def send(self) -> None:
        """Send the next chunk with the state the previous answer returned."""
        last = self.position == len(self.chunks) - 1
        self.state = self._send(self.channel, self.chunks[self.position], self.state, last)
        self.position += 1
        if last:
            # The series is over: a new stream from step 0, as a new pass starts without state.
            self.position, self.state = 0, {}


def model_channel(model: str) -> str:
    """The channel a per-channel detector scores (``SMAP_E-1`` -> ``E-1``); else E-1."""
    declared = registry.detector_of_model(model)
    if declared is None or not declared.per_channel:
        return ENSEMBLE_CHANNEL
    prefix, _, suffix = declared.served_name("\0").partition("\0")
    return model[len(prefix) : len(model) - len(suffix)]


def full_chunks(rows: np.ndarray, chunk: int) -> list[np.ndarray]:
    """Consecutive chunks of exactly ``chunk`` rows; a series shorter than one is repeated.

    The tail shorter than a chunk is left out, so every request carries ``chunk`` steps.
    """
    if rows.shape[0] < chunk:
        rows = np.resize(rows, (chunk, rows.shape[1]))
    count = rows.shape[0] // chunk
    return [np.ascontiguousarray(rows[i * chunk : (i + 1) * chunk]) for i in range(count)]


def synthetic_rows(steps: int, width: int, seed: int = 0) -> np.ndarray:
    """Random finite telemetry ``(steps, width)`` in [-1, 1] (float32)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (steps, width)).astype(np.float32)


def _input_width(connection: Connection, model: str, version: str, name: str) -> int:
    """The last dimension of the model's input ``name`` from its metadata (25 if dynamic)."""
    try:
        if connection.protocol == "http":
            meta = connection.client.get_model_metadata(model, version)
        else:
            meta = connection.client.get_model_metadata(model, version, as_json=True)
    except Exception as error:  # noqa: BLE001
        raise errors.translate(error, model, connection.url, connection.protocol) from None
    for tensor in meta.get("inputs", []):
        if tensor["name"] == name and tensor.get("shape"):
            width = int(tensor["shape"][-1])
            return width if width > 0 else 25
    raise ClientError(f"model {model!r}: expected an input {name!r}, got none in its metadata")


def _normalised(connection: Connection, channel: str, raw: np.ndarray) -> np.ndarray:
    """The series normalised by the server's ``preprocessing`` (what a detector is fed)."""
    ids = np.array([channel.encode()], dtype=object)
    pieces = [
        connection.infer(
            "preprocessing",
            {"raw_input": raw[start : start + NORMALISE_STEPS], "channel_id": ids},
            ["normalized"],
        )["normalized"]
        for start in range(0, raw.shape[0], NORMALISE_STEPS)
    ]
    return np.concatenate(pieces).astype(np.float32, copy=False)


def prepare_load(
    connection: Connection,
    model: str,
    chunk: int,
    dataset: TelemetryDataset | None = None,
    channels: Sequence[str] = (),
    version: str = "",
    missing: str = "no telemetry",
) -> Load:
    """The streams' model and telemetry, checked against the running server.

    A detector streams its channel's test split (``SMAP_E-1``: E-1; a detector shared by every
    channel: the first of ``channels``, else E-1), normalised by the server's
    ``preprocessing`` before anything is timed; ``custom_logic`` the raw test splits of
    ``channels``, taken in turn by the streams; the ensembles E-1's. Without ``dataset``
    (``missing`` says why) every stream sends random finite chunks of the model's width.

    Raises:
        ClientError: No server, a model that is not a detector or pipeline or not READY, or a
            pipeline wired to another channel.
        DataError: An unknown channel.
    """
    if model not in PIPELINES and registry.detector_of_model(model) is None:
        served = ", ".join(d.served_name("<channel>") for d in registry.detectors())
        raise ClientError(
            f"model: expected a detector ({served}) or one of {', '.join(PIPELINES)}; got {model!r}"
        )
    target = make_target(model, version)
    if model == "custom_logic":
        names = list(channels) if channels and dataset is not None else [ENSEMBLE_CHANNEL]
    elif isinstance(target, DetectorTarget) and not registry.detector(target.detector).per_channel:
        names = [channels[0] if channels else ENSEMBLE_CHANNEL]
    else:
        names = [model_channel(model)]
    if isinstance(target, DetectorTarget):
        connection.check_live()
        connection.check_ready([model], version)
        target.states_of(connection, model, version)
        wanted = "input_data"
    else:
        target = prepare_target(connection, model, names, version)
        wanted = "raw_input"
    if dataset is None:
        width = _input_width(connection, model, version, wanted)
        rows = synthetic_rows(chunk * SYNTHETIC_CHUNKS, width)
        source = f"synthetic random chunks of {width} features ({missing})"
        series = [full_chunks(rows, chunk)]
        return _warmed(Load(model, version, target, chunk, names[:1], series, source), connection)
    series = []
    for name in names:
        raw = check_rows(dataset.channel(name).test, f"channel {name} test split")
        if isinstance(target, DetectorTarget):
            connection.check_ready(["preprocessing"])
            raw = _normalised(connection, name, raw)
        series.append(full_chunks(raw, chunk))
    what = "normalised by preprocessing" if isinstance(target, DetectorTarget) else "raw"
    shown = names[0] if len(names) == 1 else f"{len(names)} channels taken in turn"
    return _warmed(
        Load(model, version, target, chunk, names, series, f"test split of {shown} ({what})"),
        connection,
    )


def _warmed(load: Load, connection: Connection) -> Load:
    """``load`` after :data:`WARM_UP_REQUESTS` untimed requests of its first stream."""
    stream = _Stream(load, 0, functools.partial(load.send, connection))
    for _ in range(WARM_UP_REQUESTS):
        stream.send()
    return load


# --- one concurrency level -------------------------------------------------------------


@dataclass
class Level:
    """The figures of one concurrency level.

    Attributes:
        concurrency: Streams with a request in flight at once.
        requests: Requests answered in the timed window.
        seconds: From the start to the last answer.
        requests_per_s: ``requests / seconds``.
        steps_per_s: ``requests_per_s * chunk``.
        latency: ``p50_ms``... of the answered requests (:func:`percentiles_ms`).
        server: The server's split per request (:func:`server_split`).
    """

    concurrency: int
    requests: int
    seconds: float
    requests_per_s: float
    steps_per_s: float
    latency: dict[str, float | None]
    server: dict[str, float | int | None]

    def to_json(self) -> dict:
        """One entry of ``bench.json``'s ``runs``."""
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(self.requests_per_s, 3),
            "steps_per_s": round(self.steps_per_s, 1),
            **self.latency,
            **self.server,
        }


def server_totals(connection: Connection, model: str, version: str = "") -> ServerTotals:
    """The model's counters now, from Triton's statistics API.

    Raises:
        ClientError: When the statistics cannot be read.
    """
    try:
        if connection.protocol == "http":
            answer = connection.client.get_inference_statistics(model, version)
        else:
            answer = connection.client.get_inference_statistics(model, version, as_json=True)
    except Exception as error:  # noqa: BLE001
        raise errors.translate(error, model, connection.url, connection.protocol) from None
    return statistics_totals(answer, model)


def settled_totals(
    connection: Connection, model: str, version: str = "", at_least: int = 0
) -> ServerTotals:
    """The model's counters once Triton has recorded every request answered so far.

    Triton records a request's statistics just after its response leaves, so a snapshot taken
    right after the last answer can miss it: read until two reads 10 ms apart agree and at
    least ``at_least`` requests are counted (for at most :data:`SETTLE_TIMEOUT` s).
    """
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    totals = server_totals(connection, model, version)
    while time.perf_counter() < deadline:
        time.sleep(0.01)
        again = server_totals(connection, model, version)
        if again == totals and again.requests >= at_least:
            break
        totals = again
    return totals


@dataclass
class _Worker:
    """One stream's thread and what it measured (written by that thread only)."""

    stream: _Stream
    latencies: list[float] = field(default_factory=list)
    last_answer: float = 0.0
    error: Exception | None = None


class _Driver:
    """The threads of one level: an untimed first request each, a common start, the window."""

    def __init__(self, connection: Connection, load: Load, concurrency: int) -> None:
        self.load = load
        send = functools.partial(load.send, connection)
        self.workers = [_Worker(_Stream(load, i, send)) for i in range(concurrency)]
        self.ready = threading.Barrier(concurrency + 1)
        self.go, self.stop = threading.Event(), threading.Event()
        self.end = 0.0
        # Daemon threads: a request that never answers cannot keep the process alive.
        self.threads = [
            threading.Thread(target=self._run, args=(w,), name=f"bench-{i}", daemon=True)
            for i, w in enumerate(self.workers)
        ]

    def _send(self, worker: _Worker) -> bool:
        try:
            worker.stream.send()
        except Exception as error:  # noqa: BLE001 - the main thread reports it
            worker.error = error
            self.stop.set()
            return False
        return True

    def _run(self, worker: _Worker) -> None:
        self._send(worker)
        try:
            self.ready.wait(WARM_UP_TIMEOUT)
        except threading.BrokenBarrierError:
            return
        self.go.wait()
        while not self.stop.is_set():
            sent = time.perf_counter()
            if not self._send(worker):
                return
            worker.last_answer = time.perf_counter()
            worker.latencies.append(worker.last_answer - sent)
            if worker.last_answer >= self.end:
                return

    def _raise_first_error(self) -> None:
        failed = [w.error for w in self.workers if w.error is not None]
        if failed:
            self.stop.set()
            self.go.set()
            error = failed[0]
            if isinstance(error, SatwatchError):
                raise error
            raise ClientError(f"model {self.load.model!r}: {type(error).__name__}: {error}")

    def warm_up(self) -> None:
        """Start the threads; return once each stream's first request was answered."""
        for thread in self.threads:
            thread.start()
        try:
            self.ready.wait(WARM_UP_TIMEOUT)
        except threading.BrokenBarrierError:
            self.stop.set()
            raise ClientError(
                f"model {self.load.model!r}: the streams' first requests did not answer within "
                f"{WARM_UP_TIMEOUT:.0f} s"
            ) from None
        self._raise_first_error()

    def timed(self, duration: float) -> tuple[list[float], float]:
        """Let every stream send for ``duration`` s; return the latencies and the wall time."""
        started = time.perf_counter()
        self.end = started + duration
        self.go.set()
        try:
            for thread in self.threads:
                thread.join()
        finally:
            self.stop.set()
        self._raise_first_error()
        latencies = [value for w in self.workers for value in w.latencies]
        return latencies, max(w.last_answer for w in self.workers) - started


def measure_level(connection: Connection, load: Load, concurrency: int, duration: float) -> Level:
    """Keep ``concurrency`` streams sending for ``duration`` seconds; return the figures.

    Each stream has a client of its own (closed with the level) and first sends one untimed
    request (its client connects, its state starts); then the server's statistics are read,
    every stream starts at once and sends until the duration is up (at least one timed
    request each), and the statistics are read again.

    Raises:
        ClientError: When a request fails (the first error; the level stops).
    """
    with Connection(
        connection.protocol, connection.url, connection.admin_key, connection.timeout
    ) as streams:
        driver = _Driver(streams, load, concurrency)
        driver.warm_up()
        before = settled_totals(connection, load.model, load.version)
        latencies, seconds = driver.timed(duration)
    counted = before.requests + len(latencies)
    after = settled_totals(connection, load.model, load.version, counted)
    rate = len(latencies) / seconds
    LOGGER.info(
        "%s, %d streams: %d requests in %.2f s", load.model, concurrency, len(latencies), seconds
    )
    return Level(
        concurrency,
        len(latencies),
        seconds,
        rate,
        rate * load.chunk,
        percentiles_ms(latencies),
        server_split(before, after),
    )


# --- the in-process baseline -----------------------------------------------------------


@dataclass
class Throughput:
    """Requests answered in a timed window and the rates.

    Attributes:
        requests: Requests (chunks) answered.
        seconds: Wall time of the window.
        requests_per_s: ``requests / seconds``.
        steps_per_s: Time steps per second.
    """

    requests: int
    seconds: float
    requests_per_s: float
    steps_per_s: float

    def to_json(self) -> dict:
        """``bench.json``'s ``baseline``."""
        return {
            "requests_per_s": round(self.requests_per_s, 3),
            "steps_per_s": round(self.steps_per_s, 1),
        }


Runner = Callable[[np.ndarray, dict], dict]
"""``run(chunk, state) -> next state``: one in-process call of a model."""


def served_config(connection: Connection, model: str, version: str = "") -> dict:
    """The model's config as the server runs it (JSON form, either protocol).

    Raises:
        ClientError: When it cannot be read.
    """
    try:
        if connection.protocol == "http":
            return dict(connection.client.get_model_config(model, version))
        answer = connection.client.get_model_config(model, version, as_json=True)
    except Exception as error:  # noqa: BLE001
        raise errors.translate(error, model, connection.url, connection.protocol) from None
    return dict(answer.get("config", {}))


def served_version(connection: Connection, model: str, version: str = "") -> str:
    """The version requests without a version go to (the highest one served), or ``version``."""
    if version:
        return version
    if connection.protocol == "http":
        meta = connection.client.get_model_metadata(model)
    else:
        meta = connection.client.get_model_metadata(model, as_json=True)
    versions = [str(v) for v in meta.get("versions", [])]
    if not versions:
        raise ClientError(f"model {model!r}: the server lists no version of it")
    return max(versions, key=int)


_BACKENDS = {"onnxruntime": "onnxruntime", "onnxruntime_onnx": "onnxruntime"}
_BACKENDS |= {"pytorch": "pytorch", "pytorch_libtorch": "pytorch"}
_FILES = {"onnxruntime": "model.onnx", "pytorch": "model.pt"}


def model_file(repository: Path, model: str, version: str, config: Mapping) -> Path:
    """The served file of ``model`` in a repository's backend folders.

    Raises:
        ClientError: When the repository holds no such file.
    """
    backend = _BACKENDS.get(config.get("backend") or config.get("platform", ""), "")
    name = config.get("default_model_filename") or _FILES.get(backend, "")
    found = sorted(Path(repository).glob(f"*/{model}/{version}/{name}")) if name else []
    if not found:
        raise ClientError(
            f"--baseline: model {model!r} version {version} has no file {name or '?'} under "
            f"{repository}/<backend>/{model}/{version}/; pass the served repository with "
            "--repository"
        )
    return found[0]


def _parameter(config: Mapping, *keys: str) -> int:
    parameters = config.get("parameters", {})
    for key in keys:
        value = parameters.get(key, {}).get("string_value", "")
        if value.strip():
            return int(value)
    return 0


def _state_names(config: Mapping) -> list[str]:
    outputs = {o["name"] for o in config.get("output", [])}
    return [i["name"] for i in config.get("input", []) if f"{i['name']}_out" in outputs]


def onnx_runner(path: Path, config: Mapping) -> Runner:
    """The ONNX file in ONNX Runtime (CPU), with the config's thread counts, as served."""
    import onnxruntime as ort  # only the baseline needs it

    options = ort.SessionOptions()
    options.intra_op_num_threads = _parameter(config, "intra_op_thread_count")
    options.inter_op_num_threads = _parameter(config, "inter_op_thread_count")
    options.log_severity_level = 3  # not the warning that state defaults are initializers
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outputs = [o["name"] for o in config.get("output", [])]
    states = _state_names(config)

    def run(chunk: np.ndarray, state: dict) -> dict:
        # As the backends run it: a state left out takes its default from the graph.
        feed = {"input_data": chunk, **{n: state[n] for n in states if n in state}}
        answer = dict(zip(outputs, session.run(outputs, feed), strict=True))
        return {name: answer[f"{name}_out"] for name in states}

    return run


def torch_runner(path: Path, config: Mapping) -> Runner:
    """The TorchScript file through ``torch.jit`` on the CPU, inputs in the config's order.

    The config's intra-op thread count is set while the baseline runs (see :func:`run_baseline`).
    """
    import torch  # only the baseline needs it

    module = torch.jit.load(str(path), map_location="cpu").eval()
    inputs = [i["name"] for i in config.get("input", [])]
    outputs = [o["name"] for o in config.get("output", [])]
    states = _state_names(config)

    def run(chunk: np.ndarray, state: dict) -> dict:
        feeds = {"input_data": chunk, **state}
        args = [None if feeds.get(n) is None else torch.from_numpy(feeds[n]) for n in inputs]
        with torch.inference_mode():
            produced = module(*args)
        answer = dict(zip(outputs, produced, strict=True))
        return {name: answer[f"{name}_out"].numpy() for name in states}

    return run


def run_baseline(
    connection: Connection, load: Load, repository: Path, duration: float
) -> Throughput:
    """The served model's file in this process: the same chunks, state carried, one stream.

    The runtime and thread counts are those of the config the server runs (ONNX Runtime's
    ``intra_op_thread_count``/``inter_op_thread_count``; TorchScript's
    ``INTRA_OP_THREAD_COUNT``).

    Raises:
        ClientError: For a pipeline, a backend other than onnxruntime/pytorch, or a file not
            in ``repository``.
    """
    if load.pipeline:
        raise ClientError(
            f"--baseline: {load.model} runs several models; --replay compares the pipeline "
            "with the same pipeline in this process"
        )
    # A detector behind a Python front (tranad_sat1) runs the file of the model behind it.
    declared = registry.detector_of_model(load.model)
    file_model = load.model if declared is None else declared.file_model(load.model)
    config = served_config(connection, file_model, load.version)
    backend = _BACKENDS.get(config.get("backend") or config.get("platform", ""))
    if backend is None:
        raise ClientError(
            f"--baseline: model {load.model!r} is served by {config.get('backend')!r}; the "
            "in-process baseline runs onnxruntime and pytorch models"
        )
    version = served_version(connection, file_model, load.version)
    path = model_file(repository, file_model, version, config)
    if backend == "onnxruntime":
        return _timed(onnx_runner(path, config), load, duration)
    import torch  # only a TorchScript baseline needs it

    threads = torch.get_num_threads()
    intra = _parameter(config, "INTRA_OP_THREAD_COUNT", "intra_op_thread_count")
    if intra > 0:
        torch.set_num_threads(intra)
    try:
        return _timed(torch_runner(path, config), load, duration)
    finally:
        torch.set_num_threads(threads)


def _timed(run: Runner, load: Load, duration: float) -> Throughput:
    """Call ``run`` over stream 0's chunks, state carried, for ``duration`` s after a warm-up."""
    stream = _Stream(load, 0, lambda _channel, chunk, state, _last: run(chunk, state))
    for _ in range(WARM_UP_REQUESTS):
        stream.send()
    requests = 0
    started = time.perf_counter()
    end = started + duration
    while True:
        stream.send()
        requests += 1
        if time.perf_counter() >= end:
            break
    seconds = time.perf_counter() - started
    return Throughput(requests, seconds, requests / seconds, requests / seconds * load.chunk)


# --- the pipeline replay ---------------------------------------------------------------


@dataclass
class Replay:
    """The replay of channels' test telemetry through ``custom_logic`` and in process.

    Attributes:
        channels: Channels replayed.
        chunk: Time steps per served request.
        steps: Time steps streamed.
        seconds: Served replay's wall time (the streams, ``workers`` channels at a time).
        inprocess_seconds: The same pipeline in this process (files loaded beforehand).
        load_seconds: Loading the exported files for the in-process replay.
        max_score_difference: Largest |served - in-process| of any detector's score.
        decisions_equal: The fused decisions (steps of reported events) are equal.
    """

    channels: list[str]
    chunk: int
    steps: int
    seconds: float
    inprocess_seconds: float
    load_seconds: float
    max_score_difference: float
    decisions_equal: bool

    @property
    def steps_per_s(self) -> float:
        """Served steps per second."""
        return self.steps / self.seconds

    @property
    def ratio(self) -> float:
        """Served ÷ in-process throughput."""
        return self.inprocess_seconds / self.seconds

    def to_json(self) -> dict:
        """``bench.json``'s ``replay``."""
        return {
            "seconds": round(self.seconds, 3),
            "steps": self.steps,
            "steps_per_s": round(self.steps_per_s, 1),
            "inprocess_seconds": round(self.inprocess_seconds, 3),
            "ratio": round(self.ratio, 4),
            "channels": len(self.channels),
            "chunk": self.chunk,
            "max_score_difference": self.max_score_difference,
            "decisions_equal": self.decisions_equal,
        }


def run_replay(
    connection: Connection,
    repository: Path,
    dataset: TelemetryDataset,
    channels: Sequence[str],
    chunk: int,
    workers: int = DEFAULT_WORKERS,
    on_chunk: OnChunk | None = None,
) -> Replay:
    """Replay the channels' test splits through ``custom_logic``, then in process; compare.

    Served: :func:`~.stream.stream_channels`, as ``satwatch detect`` streams. In process:
    each channel's whole test series normalised with preprocessing's statistics, scored by
    every registered detector's exported file and judged by postprocessing's function
    (:func:`~satwatch.evaluation.offline.fused_decisions`), with the repository's files.

    Raises:
        ClientError: No server, ``custom_logic`` not READY, or a channel failed.
        ModelError: An exported file missing from ``repository``.
    """
    channels = list(channels)
    target = prepare_target(connection, "custom_logic", channels)
    sources = [from_dataset(dataset, name, chunk) for name in channels]
    started = time.perf_counter()
    runs = stream_channels(connection, target, sources, workers=workers, on_chunk=on_chunk)
    seconds = time.perf_counter() - started
    for run in runs.values():
        if run.error is not None:
            raise run.error
    inprocess, inprocess_seconds, load_seconds = inprocess_replay(repository, dataset, channels)
    difference, equal = 0.0, True
    for name, run in runs.items():
        scores, decisions = inprocess[name]
        for kind, score in scores.items():
            served = run.arrays.get(f"{kind}_score")
            if served is None or served.shape != score.shape:
                difference = float("inf")
                continue
            gap = np.abs(served.astype(np.float64) - score.astype(np.float64))
            # NaN where only one side has a score is a difference too.
            worst = float("inf") if np.isnan(gap).any() else float(gap.max(initial=0.0))
            difference = max(difference, worst)
        equal &= bool(np.array_equal(judged_decisions(run, "fused"), decisions))
    steps = sum(run.steps for run in runs.values())
    return Replay(
        channels, chunk, steps, seconds, inprocess_seconds, load_seconds, difference, equal
    )


def inprocess_replay(
    repository: Path, dataset: TelemetryDataset, channels: Sequence[str]
) -> tuple[dict[str, tuple[dict[str, np.ndarray], np.ndarray]], float, float]:
    """``({channel: ({kind: scores}, fused decisions)}, seconds, load seconds)``.

    The served pipeline's stages in this process, over each whole series: preprocessing's
    statistics, every registered detector's exported file, postprocessing's function.
    """
    # torch and ONNX Runtime come with these: only the replay needs them.
    from satwatch.evaluation.offline import exported_scorer, fused_decisions
    from satwatch.repository.stages import ServedStages

    repository = Path(repository)
    loading = time.perf_counter()
    stages = ServedStages.load(repository)
    scorers: dict[tuple[str, str], Callable] = {}
    for declared in registry.detectors():
        shared = None
        for name in channels:
            if declared.per_channel or shared is None:
                shared = exported_scorer(repository, declared.kind, name)
            scorers[declared.kind, name] = shared
    raws = {name: check_rows(dataset.channel(name).test, f"channel {name}") for name in channels}
    load_seconds = time.perf_counter() - loading
    started = time.perf_counter()
    results = {}
    for name in channels:
        normalised = stages.normalise(name, raws[name])
        scores = {kind: scorers[kind, name](None, normalised) for kind in registry.kinds()}
        decisions = fused_decisions(
            list(scores.values()), name, stages.settings, stages.thresholds, raws[name][:, 0]
        )
        results[name] = (scores, decisions)
    return results, time.perf_counter() - started, load_seconds


# --- the report ------------------------------------------------------------------------


@dataclass
class BenchReport:
    """Everything one ``satwatch bench`` measured; parts that did not run are None."""

    model: str
    protocol: str
    url: str
    chunk: int
    duration: float
    source: str
    runs: list[Level] = field(default_factory=list)
    baseline: Throughput | None = None
    replay: Replay | None = None

    @property
    def best(self) -> Level | None:
        """The level with the highest throughput."""
        return max(self.runs, key=lambda level: level.steps_per_s, default=None)

    @property
    def ratio(self) -> float | None:
        """Served ÷ in-process throughput at the best concurrency (None without a baseline)."""
        if self.baseline is None or self.best is None:
            return None
        return self.best.steps_per_s / self.baseline.steps_per_s

    def to_json(self) -> dict:
        """What ``bench.json`` holds (keys of the parts that did not run are absent)."""
        data: dict = {"model": self.model, "protocol": self.protocol, "chunk": self.chunk}
        data["duration"] = self.duration
        data["runs"] = [level.to_json() for level in self.runs]
        if self.baseline is not None and self.ratio is not None:
            data["baseline"] = self.baseline.to_json()
            data["ratio"] = round(self.ratio, 4)
        if self.replay is not None:
            data["replay"] = self.replay.to_json()
        return data


__all__ = [
    "BenchReport",
    "Level",
    "Load",
    "Replay",
    "ServerTotals",
    "Throughput",
    "check_settings",
    "inprocess_replay",
    "measure_level",
    "parse_concurrency",
    "percentiles_ms",
    "prepare_load",
    "run_baseline",
    "run_replay",
    "server_split",
    "statistics_totals",
]
