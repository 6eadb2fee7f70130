"""``satwatch detect``: stream telemetry through the running server and print the anomalies.

Also ``satwatch soak``, many clients loading the server for a while (:mod:`.soak`).

Also :func:`served_evaluation`, the served half of ``satwatch evaluate`` (the evaluation
command calls it when ``--offline`` is not given).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from satwatch.client.connection import PROTOCOLS, Connection
from satwatch.client.soak import (
    DEFAULT_BUCKET,
    DEFAULT_CLIENTS,
    DEFAULT_DURATION,
    DEFAULT_MODELS,
    OnProgress,
    SoakReport,
    run_soak,
)
from satwatch.client.sources import Telemetry, check_chunk, from_dataset, from_file, from_lines
from satwatch.client.stream import (
    DEFAULT_CHUNK,
    DEFAULT_WORKERS,
    REPLAY_CHUNK,
    StreamRun,
    prepare_target,
    stream_channels,
)
from satwatch.client.targets import PIPELINES, STEPS
from satwatch.commands._console import CONSOLE, DATA_OPTION, SPACECRAFT_OPTION, fail
from satwatch.commands.server import DEFAULT_PID_FILE
from satwatch.detectors.registry import detectors
from satwatch.evaluation.run import RunEvent
from satwatch.exceptions import ClientError, SatwatchError
from satwatch.paths import artifacts_dir, data_dir

LOGGER = logging.getLogger(__name__)


MODEL_HELP = (
    f"Where the chunks go: {', '.join(PIPELINES)} (the ensembles are wired to E-1), "
    f"'{STEPS}' (preprocessing, every detector and postprocessing called one by one: "
    "per-detector scores too), or one detector ("
    + ", ".join(d.served_name("<channel>") for d in detectors())
    + "; its input normalised by the preprocessing model first)."
)
CHUNK_HELP = (
    "Time steps per request. Multiples of 16 give scores bit-identical to one request over "
    "the whole series; other sizes agree within ~4e-6."
)
DETECT_CHUNK_HELP = (
    f"{CHUNK_HELP} Default: {REPLAY_CHUNK} for the channels' test split (a recorded series: "
    f"fewer, longer requests), {DEFAULT_CHUNK} with --input."
)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[events]} events"),
        TimeElapsedColumn(),
        console=CONSOLE,
    )


def event_line(event: RunEvent) -> str:
    """One printed line per anomaly event."""
    return (
        f"[bold red]anomaly[/bold red] {event.channel:<5} {event.subsystem:<4} "
        f"steps {event.start}-{event.end} ({event.end - event.start + 1}) "
        f"peak {event.peak_score:.3g}  detectors {'+'.join(event.detectors)}"
    )


def run_streams(
    connection: Connection,
    model: str,
    sources: Sequence[Telemetry],
    *,
    version: str = "",
    workers: int = DEFAULT_WORKERS,
    print_events: bool = True,
    spacecraft: str = "SMAP",
) -> tuple[dict[str, StreamRun], float]:
    """Stream the sources with a progress bar per channel; return the runs and the wall time."""
    channels = [s.channel for s in sources]
    target = prepare_target(connection, model, channels, version, spacecraft)
    with _progress() as progress:
        tasks: dict[str, TaskID] = {
            s.channel: progress.add_task(s.channel, total=s.total, events=0) for s in sources
        }

        def on_chunk(channel: str, done: int, total: int | None) -> None:
            progress.update(tasks[channel], completed=done)

        def on_event(event: RunEvent) -> None:
            task = tasks[event.channel]
            progress.update(task, events=progress.tasks[task].fields["events"] + 1)
            if print_events:
                progress.console.print(event_line(event))

        def on_done(run: StreamRun) -> None:
            # With one channel its error is the command's error line, printed once.
            if run.error is not None and len(sources) > 1:
                progress.console.print(f"[red]error:[/red] channel {run.channel}: {run.error}")

        started = time.perf_counter()
        runs = stream_channels(
            connection,
            target,
            sources,
            workers=workers,
            on_chunk=on_chunk,
            on_event=on_event,
            on_done=on_done,
        )
    return runs, time.perf_counter() - started


def summary_table(runs: dict[str, StreamRun], seconds: float, title: str) -> Table:
    """Per channel: steps, requests, events, time; plus the total throughput."""
    table = Table(title=title)
    for name in ("channel", "subsystem", "steps", "requests", "events", "seconds", "status"):
        table.add_column(name, justify="left" if name in ("channel", "subsystem") else "right")
    for run in runs.values():
        status = "ok" if run.error is None else "[red]failed[/red]"
        table.add_row(
            run.channel,
            run.subsystem,
            str(run.steps),
            str(run.requests),
            str(len(run.events)),
            f"{run.seconds:.1f}",
            status,
        )
    steps = sum(r.steps for r in runs.values())
    rate = steps / seconds if seconds > 0 else 0.0
    table.caption = f"{steps} steps in {seconds:.1f} s wall: {rate:,.0f} steps/s"
    return table


def _sources(
    channel: str | None,
    channels: str | None,
    input_path: str | None,
    chunk: int,
    data: Path | None,
    spacecraft: str = "SMAP",
) -> list[Telemetry]:
    if input_path is not None:
        if not channel:
            raise ClientError(
                "--input needs --channel: the server normalises and routes rows by channel"
            )
        if input_path == "-":
            return [from_lines(sys.stdin, channel, chunk)]
        return [from_file(Path(input_path), channel, chunk)]
    from satwatch.data import load_dataset

    dataset = load_dataset(data_dir(data), spacecraft)
    spec = channels or channel
    if not spec:
        raise ClientError(
            "say what to stream: --channel E-1, --channels seed|all|E-1,A-1 or --input"
        )
    return [from_dataset(dataset, name, chunk) for name in dataset.resolve_channels(spec)]


def detect(
    channel: str | None = typer.Option(
        None, "--channel", help="One channel (E-1); with --input, the channel the rows belong to."
    ),
    channels: str | None = typer.Option(
        None, "--channels", "-c", help="Several channels: 'seed', 'all' or 'E-1,A-1'."
    ),
    input_path: str | None = typer.Option(
        None,
        "--input",
        "-i",
        help="Stream rows from a .npy/.csv file (T x F: 25 for SMAP, 55 for MSL), or '-' for "
        "rows on standard input "
        "(sent every --chunk rows as they arrive). Default: the channels' test split.",
    ),
    model: str = typer.Option("custom_logic", "--model", "-m", help=MODEL_HELP),
    protocol: str = typer.Option("grpc", "--protocol", help="grpc or http."),
    url: str | None = typer.Option(
        None, "--url", help="Server address host:port (default 127.0.0.1:8001 gRPC, :8000 HTTP)."
    ),
    model_version: str = typer.Option(
        "", "--model-version", help="Version of --model (default: the server's latest)."
    ),
    chunk: int | None = typer.Option(None, "--chunk", help=DETECT_CHUNK_HELP),
    workers: int = typer.Option(
        DEFAULT_WORKERS, "--workers", help="Channels streamed at the same time."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Write events.csv, events.json and scores/<channel>.npz (the run folder "
        "`satwatch report` reads) here.",
    ),
    data: Path | None = DATA_OPTION,
    artifacts: Path | None = typer.Option(
        None,
        "--artifacts",
        help="Trained models, for the detectors' thresholds in --output (default "
        "$SATWATCH_ARTIFACTS or ./artifacts).",
    ),
    admin_key: str | None = typer.Option(
        None,
        "--admin-key",
        envvar="SATWATCH_ADMIN_KEY",
        help="The server's admin key: lets an error name a model's state and reason.",
    ),
    spacecraft: str = SPACECRAFT_OPTION,
) -> None:
    """Replay telemetry through the running server as a live stream and print the anomalies.

    Each channel is sent in chunks of --chunk steps; every request carries the recurrent
    state / context the previous answer returned, so the scores equal one pass over the whole
    series. Channels stream in parallel (--workers), each with its progress bar; every anomaly
    event is printed once it is complete (channel, subsystem, first and last step, 0-based
    inclusive, peak score, which detectors agreed: omni and/or tranad with custom_logic and
    steps; with the ensembles only the fused result is known, 'fused').
    """
    try:
        if protocol not in PROTOCOLS:
            raise ClientError(f"--protocol: expected grpc or http, got {protocol!r}")
        if chunk is None:
            chunk = DEFAULT_CHUNK if input_path is not None else REPLAY_CHUNK
        check_chunk(chunk)
        sources = _sources(channel, channels, input_path, chunk, data, spacecraft)
        with Connection(protocol, url, admin_key=admin_key) as connection:
            runs, seconds = run_streams(
                connection,
                model,
                sources,
                version=model_version,
                workers=workers,
                spacecraft=spacecraft.upper(),
            )
        if output is not None:
            from satwatch.client.output import write_stream_runs

            write_stream_runs(output, runs, artifacts_dir(artifacts), spacecraft.upper())
        failed = [run.error for run in runs.values() if run.error is not None]
        if failed and len(failed) == len(runs):
            raise failed[0]
    except SatwatchError as err:
        raise fail(err) from err
    CONSOLE.print(summary_table(runs, seconds, f"detect via {model} ({protocol})"))
    if output is not None:
        CONSOLE.print(f"wrote {output / 'events.csv'}, events.json and scores/")
    if any(run.error is not None for run in runs.values()):
        raise typer.Exit(1)


def served_evaluation(
    channels: Sequence[str],
    *,
    data: Path | None = None,
    artifacts: Path | None = None,
    output: Path | None = None,
    protocol: str = "grpc",
    url: str | None = None,
    chunk: int = REPLAY_CHUNK,
    workers: int = DEFAULT_WORKERS,
    admin_key: str | None = None,
    spacecraft: str = "SMAP",
) -> dict:
    """Run the served evaluation with progress bars; write ``output``; return metrics.json.

    Raises:
        SatwatchError: No server, a model not READY, unknown channels, or a failed channel
            (after the others were measured and written).
    """
    from satwatch.client.evaluate import evaluate_served, failure_lines, write_evaluation

    with Connection(protocol, url, admin_key=admin_key) as connection, _progress() as progress:
        tasks: dict[str, TaskID] = {}

        def on_chunk(channel: str, done: int, total: int | None) -> None:
            if channel not in tasks:
                tasks[channel] = progress.add_task(channel, total=total, events=0)
            progress.update(tasks[channel], completed=done)

        def on_event(event: RunEvent) -> None:
            task = tasks.get(event.channel)
            if task is not None:
                progress.update(task, events=progress.tasks[task].fields["events"] + 1)

        started = time.perf_counter()
        result = evaluate_served(
            connection,
            channels,
            data,
            chunk=chunk,
            workers=workers,
            spacecraft=spacecraft,
            on_chunk=on_chunk,
            on_event=on_event,
        )
        seconds = time.perf_counter() - started
    LOGGER.info("served evaluation: %d steps in %.1f s", result.steps, seconds)
    CONSOLE.print(
        f"streamed {result.steps} steps of {len(result.runs)} channels in {seconds:.1f} s "
        f"({result.steps / max(seconds, 1e-9):,.0f} steps/s)"
    )
    if output is not None:
        write_evaluation(result, output, artifacts_dir(artifacts), spacecraft)
    if result.failed:
        raise ClientError("; ".join(failure_lines(result)))
    return result.report


def _mib(rss: int | None) -> str:
    return "-" if rss is None else f"{rss / 2**20:,.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def soak_tables(report: SoakReport) -> list[Table]:
    """The soak's summary, memory and latency tables."""
    return [_soak_summary(report), _memory_table(report), _latency_table(report)]


def _soak_summary(report: SoakReport) -> Table:
    summary = Table(
        title=f"soak: {report.clients} clients, {report.seconds:.0f} s, chunks of {report.chunk}"
    )
    for name in ("model", "requests", "failures"):
        summary.add_column(name, justify="left" if name == "model" else "right")
    for model in report.models:
        failures = report.failures_by_model.get(model, 0)
        summary.add_row(
            model,
            str(report.requests_by_model.get(model, 0)),
            f"[red]{failures}[/red]" if failures else "0",
        )
    rate = report.steps / report.seconds if report.seconds > 0 else 0.0
    summary.caption = (
        f"{report.requests} requests, {report.failures} failures, {report.steps} steps "
        f"({rate:,.0f} steps/s)"
    )
    return summary


def _memory_table(report: SoakReport) -> Table:
    memory = Table(title="memory (RSS, MiB)")
    for name in ("process", "pid", "start", "end", "change"):
        memory.add_column(name, justify="left" if name == "process" else "right")
    rows = [report.server] if report.server is not None else []
    for row in [*rows, *report.stubs.values()]:
        pid = str(row.pid_end or row.pid_start)
        if row.pid_start != row.pid_end:
            pid = f"{row.pid_start or '-'} -> {row.pid_end or '-'}"
        change = "-"
        if row.rss_start is not None and row.rss_end is not None:
            change = f"{(row.rss_end - row.rss_start) / 2**20:+,.1f}"
        memory.add_row(row.name, pid, _mib(row.rss_start), _mib(row.rss_end), change)
    if not rows:
        memory.caption = "no tritonserver process found on this machine (--pid, --pid-file)"
    return memory


def _latency_table(report: SoakReport) -> Table:
    latency = Table(title=f"latency per {report.bucket:g} s (answered requests, ms)")
    for name in ("seconds", "requests", "failures", "p50", "p99", *report.models):
        latency.add_column(name if name not in report.models else f"p99 {name}", justify="right")
    for bucket in report.buckets:
        latency.add_row(
            f"{bucket.start:g}-{bucket.end:g}",
            str(bucket.requests),
            str(bucket.failures),
            _ms(bucket.p50_ms),
            _ms(bucket.p99_ms),
            *(_ms(getattr(bucket.by_model.get(m), "p99_ms", None)) for m in report.models),
        )
    return latency


def _soak_progress(duration: float) -> tuple[Progress, OnProgress]:
    progress = Progress(
        TextColumn("soak"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TextColumn("{task.fields[requests]} requests · {task.fields[failures]} failures"),
        TimeElapsedColumn(),
        console=CONSOLE,
    )
    tasks: list[TaskID] = []

    def update(elapsed: float, requests: int, failures: int) -> None:
        # The bar appears with the first update, once the server and models were checked.
        if not tasks:
            tasks.append(progress.add_task("soak", total=duration, requests=0, failures=0))
        progress.update(tasks[0], completed=elapsed, requests=requests, failures=failures)

    return progress, update


def soak(
    url: str | None = typer.Option(
        None,
        "--url",
        "--grpc-url",
        help="The server's gRPC address host:port (default 127.0.0.1:8001).",
    ),
    clients: int = typer.Option(
        DEFAULT_CLIENTS, "--clients", help="Concurrent clients, each with its own gRPC client."
    ),
    duration: float = typer.Option(
        DEFAULT_DURATION, "--duration", help="Seconds during which requests are sent."
    ),
    chunk: int = typer.Option(DEFAULT_CHUNK, "--chunk", help="Time steps per request."),
    models: str = typer.Option(
        ",".join(DEFAULT_MODELS),
        "--models",
        help="Models the clients take in turn (comma-separated): custom_logic streams the "
        "channels in turn, the ensembles E-1.",
    ),
    channels: str = typer.Option(
        "seed",
        "--channels",
        "-c",
        help="Channels of the custom_logic clients: 'seed' or 'E-1,A-1'.",
    ),
    bucket: float = typer.Option(
        DEFAULT_BUCKET, "--bucket", help="Seconds per latency bucket (p50/p99 of each)."
    ),
    pid: int | None = typer.Option(
        None,
        "--pid",
        help="The tritonserver pid, for the memory figures (default: the process listening on "
        "the URL's port, else the one --pid-file names).",
    ),
    pid_file: Path = typer.Option(
        DEFAULT_PID_FILE, "--pid-file", help="The pid file `satwatch serve` wrote."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write soak.json (every figure of the report) here."
    ),
    data: Path | None = DATA_OPTION,
    admin_key: str | None = typer.Option(
        None,
        "--admin-key",
        envvar="SATWATCH_ADMIN_KEY",
        help="The server's admin key: lets an error name a model's state and reason.",
    ),
) -> None:
    """Load the running server: many clients streaming telemetry at once, for a while.

    Each client (a thread with its own gRPC client) streams the test telemetry of one
    channel in chunks, state carried from chunk to chunk as `satwatch detect` does, again and
    again until --duration is up; the clients take the --models in turn. Reports requests,
    failures (with the first errors), the resident memory of tritonserver and of each
    Python backend stub at the start and the end, and p50/p99 latency per --bucket seconds.
    Exits 1 when any request failed.
    """
    try:
        names = [m.strip() for m in models.split(",") if m.strip()]
        progress, on_progress = _soak_progress(duration)
        with progress:
            report = run_soak(
                url,
                clients=clients,
                duration=duration,
                chunk=chunk,
                models=names,
                bucket=bucket,
                channels=channels,
                data=data,
                pid=pid,
                pid_file=pid_file,
                admin_key=admin_key,
                on_progress=on_progress,
            )
    except SatwatchError as err:
        raise fail(err) from err
    for table in soak_tables(report):
        CONSOLE.print(table)
    for line in report.errors:
        CONSOLE.print(f"[red]error:[/red] {line}", highlight=False)
    if report.interrupted:
        CONSOLE.print("[yellow]interrupted:[/yellow] the figures cover the time it ran")
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / "soak.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
        CONSOLE.print(f"wrote {output / 'soak.json'}")
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``detect`` and ``soak`` to the root ``satwatch`` app."""
    app.command("detect")(detect)
    app.command("soak")(soak)
