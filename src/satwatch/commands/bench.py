"""``satwatch bench``: throughput and latency of a served model, the part of perf_analyzer
this project needs.

The measuring is :mod:`satwatch.client.bench`; this module parses the options, shows the
progress, prints the tables and writes ``bench.json`` and ``bench.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from satwatch.client import bench as measure
from satwatch.client.connection import PROTOCOLS, Connection
from satwatch.client.stream import DEFAULT_CHUNK, DEFAULT_WORKERS, REPLAY_CHUNK
from satwatch.commands._console import CONSOLE, DATA_OPTION, counting_progress, fail
from satwatch.data import TelemetryDataset, load_dataset
from satwatch.exceptions import ClientError, DataError, SatwatchError
from satwatch.paths import data_dir, repository_dir

JSON_FILE = "bench.json"
PLOT_FILE = "bench.png"


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def levels_table(report: measure.BenchReport) -> Table:
    """One row per concurrency: throughput, latency percentiles, the server's split."""
    table = Table(
        title=f"bench {report.model} ({report.protocol} {report.url}, chunks of "
        f"{report.chunk} steps, {report.duration:g} s per level)"
    )
    columns = ["concurrency", "requests", "req/s", "steps/s", "p50", "p90", "p95", "p99"]
    columns += ["queue", "input", "infer", "output"]
    if report.baseline is not None:
        columns.append("÷ in-process")
    for name in columns:
        table.add_column(name, justify="right")
    for level in report.runs:
        server = level.server
        row = [
            str(level.concurrency),
            str(level.requests),
            f"{level.requests_per_s:,.1f}",
            f"{level.steps_per_s:,.0f}",
            *(_ms(level.latency[f"p{p}_ms"]) for p in measure.PERCENTILES),
            *(_ms(server[f"server_{part}_ms"]) for part in measure.SPLIT),
        ]
        if report.baseline is not None:
            row.append(f"{level.steps_per_s / report.baseline.steps_per_s:.2f}")
        table.add_row(*row)
    table.caption = (
        f"latency p50..p99 in ms per request at the client; queue/input/infer/output: the "
        f"server's own ms per request (Triton's statistics). Telemetry: {report.source}"
    )
    return table


def replay_table(replay: measure.Replay) -> Table:
    """Served replay through custom_logic beside the same pipeline in this process."""
    table = Table(
        title=f"replay of {len(replay.channels)} channels' test telemetry, "
        f"chunks of {replay.chunk} steps"
    )
    for name in ("pipeline", "steps", "seconds", "steps/s"):
        table.add_column(name, justify="left" if name == "pipeline" else "right")
    table.add_row(
        "served: custom_logic",
        f"{replay.steps:,}",
        f"{replay.seconds:.2f}",
        f"{replay.steps_per_s:,.0f}",
    )
    table.add_row(
        "in process: same files and postprocessing",
        f"{replay.steps:,}",
        f"{replay.inprocess_seconds:.2f}",
        f"{replay.steps / replay.inprocess_seconds:,.0f}",
    )
    same = "identical" if replay.max_score_difference == 0 else f"{replay.max_score_difference:.3g}"
    decisions = "equal" if replay.decisions_equal else "[red]differ[/red]"
    table.caption = (
        f"served ÷ in-process {replay.ratio:.2f}; detector scores {same}, fused decisions "
        f"{decisions}; loading the files for the in-process replay took "
        f"{replay.load_seconds:.1f} s (not counted)"
    )
    return table


def write_outputs(report: measure.BenchReport, folder: Path) -> list[Path]:
    """Write ``bench.json`` and ``bench.png`` (throughput and p99 against concurrency)."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / JSON_FILE
    json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return [json_path, plot(report, folder / PLOT_FILE)]


def plot(report: measure.BenchReport, path: Path) -> Path:
    """Throughput (steps/s) and latency (p50, p99) against concurrency, as one PNG."""
    # A bare Figure on the Agg canvas, as the report's figures: no pyplot state, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    levels = [level.concurrency for level in report.runs]
    figure = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(figure)
    rate, latency = figure.subplots(1, 2)
    rates = [level.steps_per_s for level in report.runs]
    rate.plot(levels, rates, "o-", label="served")
    if report.baseline is not None:
        rate.axhline(report.baseline.steps_per_s, ls="--", c="grey", label="in process")
        rates.append(report.baseline.steps_per_s)
    rate.set(xlabel="concurrency", ylabel="time steps / s", title="throughput")
    rate.set_ylim(0, 1.15 * max(rates))
    for name, style in (("p50_ms", "s--"), ("p99_ms", "o-")):
        values = [level.latency[name] for level in report.runs]
        latency.plot(levels, values, style, label=name.removesuffix("_ms"))
    latency.set(xlabel="concurrency", ylabel="ms per request", title="latency")
    latency.set_ylim(bottom=0)
    for axes in (rate, latency):
        axes.set_xscale("log", base=2)
        axes.set_xticks(levels, [str(c) for c in levels])
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(
        f"{report.model} ({report.protocol}, chunks of {report.chunk} steps, "
        f"{report.duration:g} s per level)"
    )
    figure.tight_layout()
    figure.savefig(path)
    return path


def _dataset(data: Path | None) -> tuple[TelemetryDataset | None, str]:
    """The telemetry, or None and why not (the streams then send synthetic chunks)."""
    folder = data_dir(data)
    try:
        return load_dataset(folder), ""
    except DataError as error:
        return None, f"no telemetry at {folder}: {error}"


def _levels(
    connection: Connection, load: measure.Load, levels: list[int], duration: float
) -> list[measure.Level]:
    runs = []
    with counting_progress("bench", transient=True) as progress:
        task = progress.add_task(f"{load.model}", total=len(levels))
        for concurrency in levels:
            progress.update(task, description=f"{load.model} concurrency {concurrency}")
            runs.append(measure.measure_level(connection, load, concurrency, duration))
            progress.advance(task)
    return runs


def _replay(
    connection: Connection,
    repository: Path,
    dataset: TelemetryDataset,
    channels: list[str],
    chunk: int,
    workers: int,
) -> measure.Replay:
    total = sum(dataset.channel(name).test.shape[0] for name in channels)
    done: dict[str, int] = {}
    with counting_progress("replay", transient=True) as progress:
        task = progress.add_task("custom_logic", total=total)

        def on_chunk(channel: str, steps: int, _total: int | None) -> None:
            done[channel] = steps
            progress.update(task, completed=sum(done.values()))

        return measure.run_replay(
            connection, repository, dataset, channels, chunk, workers, on_chunk=on_chunk
        )


def bench(
    model: str = typer.Option(
        measure.DEFAULT_MODEL,
        "--model",
        "-m",
        help="The served model: a detector (`SMAP_<channel>`, `tranad_sat1`, "
        "`nearest_SMAP_<channel>`) or a pipeline (custom_logic, multi_detector, "
        "anomaly_pipeline).",
    ),
    concurrency: str = typer.Option(
        ",".join(str(c) for c in measure.DEFAULT_CONCURRENCY),
        "--concurrency",
        help="Concurrency levels: streams with a request in flight at once, comma-separated.",
    ),
    duration: float = typer.Option(
        measure.DEFAULT_DURATION, "--duration", help="Seconds measured per concurrency level."
    ),
    chunk: int = typer.Option(DEFAULT_CHUNK, "--chunk", help="Time steps per request."),
    protocol: str = typer.Option("grpc", "--protocol", help="grpc or http (binary tensors)."),
    url: str | None = typer.Option(
        None, "--url", help="Server address host:port (default 127.0.0.1:8001 gRPC, :8000 HTTP)."
    ),
    model_version: str = typer.Option(
        "", "--model-version", help="Version of --model (default: the server's latest)."
    ),
    baseline: bool = typer.Option(
        False,
        "--baseline",
        help="Also run the model's file in this process (same runtime and thread settings, "
        "same chunks, state carried, one stream) and print served ÷ in-process.",
    ),
    replay: bool = typer.Option(
        False,
        "--replay",
        help="Also replay the --channels' whole test telemetry through custom_logic and the "
        "same pipeline in this process (exported files, postprocessing's function); "
        "compare their answers and speed.",
    ),
    channels: str = typer.Option(
        "seed",
        "--channels",
        "-c",
        help="Channels of --replay and of custom_logic's streams (taken in turn): 'seed', "
        "'all' or 'E-1,A-1'; tranad_sat1 streams the first.",
    ),
    workers: int = typer.Option(
        DEFAULT_WORKERS, "--workers", help="Channels --replay streams at the same time."
    ),
    replay_chunk: int = typer.Option(
        REPLAY_CHUNK,
        "--replay-chunk",
        help="Time steps per request of --replay (a recorded series: fewer, longer requests "
        "than --chunk's).",
    ),
    repository: Path | None = typer.Option(
        None,
        "--repository",
        "-r",
        help="The served model repository, for --baseline and --replay's in-process files "
        "(default $SATWATCH_REPOSITORY or ./triton-repository).",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write bench.json and bench.png here."
    ),
    data: Path | None = DATA_OPTION,
    admin_key: str | None = typer.Option(
        None,
        "--admin-key",
        envvar="SATWATCH_ADMIN_KEY",
        help="The server's admin key: lets an error name a model's state and reason.",
    ),
) -> None:
    """Measure a served model's throughput and latency at several concurrency levels.

    Each level keeps N streams (threads, each with its own client) sending chunks of --chunk
    steps for --duration seconds, every stream carrying its state from chunk to chunk as
    `satwatch detect` does. Prints requests/s, time steps/s, latency p50/p90/p95/p99, and the
    server's own time per request (queue, compute input, infer, output) from Triton's
    statistics. The streams send the channel's real test split (normalised by the
    server's preprocessing for a detector), or random chunks when there is no telemetry.
    """
    try:
        if protocol not in PROTOCOLS:
            raise ClientError(f"--protocol: expected grpc or http, got {protocol!r}")
        levels = measure.parse_concurrency(concurrency)
        measure.check_settings(duration, chunk)
        if replay:
            measure.check_settings(duration, replay_chunk)
        dataset, missing = _dataset(data)
        names = dataset.resolve_channels(channels) if dataset is not None else []
        root = repository_dir(repository)
        with Connection(protocol, url, admin_key=admin_key) as connection:
            load = measure.prepare_load(
                connection, model, chunk, dataset, names, model_version, missing or "no telemetry"
            )
            report = measure.BenchReport(
                model, protocol, connection.url, chunk, duration, load.source
            )
            report.runs = _levels(connection, load, levels, duration)
            if baseline and not load.pipeline:
                report.baseline = measure.run_baseline(connection, load, root, duration)
            CONSOLE.print(levels_table(report))
            if baseline and load.pipeline:
                CONSOLE.print(
                    f"[yellow]--baseline skipped:[/] {model} runs several models, so there is no "
                    "one file to run in process; --replay compares the pipeline with the same "
                    "pipeline in process"
                )
            _print_baseline(report)
            if replay and dataset is None:
                CONSOLE.print(f"[yellow]--replay skipped:[/] {missing}")
            elif replay:
                report.replay = _replay(connection, root, dataset, names, replay_chunk, workers)
                CONSOLE.print(replay_table(report.replay))
        if output is not None:
            written = write_outputs(report, output)
            CONSOLE.print(f"wrote {', '.join(str(p) for p in written)}")
    except SatwatchError as error:
        raise fail(error) from error
    except KeyboardInterrupt:
        CONSOLE.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def _print_baseline(report: measure.BenchReport) -> None:
    best, base = report.best, report.baseline
    if best is None or base is None or report.ratio is None:
        return
    CONSOLE.print(
        f"in process ({report.model}'s file, one stream): {base.requests_per_s:,.1f} req/s, "
        f"{base.steps_per_s:,.0f} steps/s · served at its best ({best.concurrency} streams) "
        f"÷ in process: [bold]{report.ratio:.2f}[/]"
    )


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the root ``satwatch`` app."""
    app.command("bench")(bench)
