"""``satwatch demo`` (``make demo``): the main job from a fresh clone, end to end.

1. telemetry: ``--data``, ``$SATWATCH_DATA``, ``./data`` or the shared copy; where there is none,
   says so and writes a synthetic SMAP-like set with ``satwatch data synth``;
2. model repository: built with the quick training profile unless already built;
3. the embedded Triton serves it on free ports;
4. the seed channels' test telemetry is streamed through ``custom_logic`` (served evaluation:
   detect, events, metrics of each detector and of the fused result);
5. ``report/index.html`` is written; the summary table and the report's path are printed;
6. the server is stopped, whatever happened.

The seconds-long demo of the server alone (a tiny sample repository) is ``satwatch sample-demo``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from satwatch.commands._console import CONSOLE, fail
from satwatch.data import load_dataset
from satwatch.exceptions import SatwatchError
from satwatch.paths import PROJECT_ROOT, artifacts_dir, data_dir, repository_dir

LOGGER = logging.getLogger(__name__)

SUMMARY_COLUMNS = {
    "event_f1": "event F1",
    "event_precision": "event P",
    "event_recall": "event R",
    "pa_f1": "PA F1",
    "point_f1": "point F1",
}


def telemetry_folder(explicit: Path | None, synth_to: Path = PROJECT_ROOT / "data") -> Path:
    """The telemetry to use; a synthetic set is written to ``synth_to`` when none is found."""
    folder = data_dir(explicit)
    if (folder / "labeled_anomalies.csv").exists():
        return folder
    from satwatch.data.synth import synthesize

    target = synth_to
    CONSOLE.print(
        f"[yellow]no telemetry at {folder}[/] (set SATWATCH_DATA to NASA's SMAP/MSL folder); "
        f"writing a synthetic SMAP-like set to {target} instead"
    )
    synthesize(target, seed=0)
    return target


def build(repository: Path, data: Path, channels: list[str], jobs: int) -> None:
    """Train (quick profile) what is missing and fill the repository, with a progress bar."""
    from satwatch.repository.build import build_repository

    with _progress() as bar:
        task = bar.add_task("build", total=1)

        def on_progress(description: str, completed: int, total: int) -> None:
            bar.update(task, description=description, completed=completed, total=total)

        report = build_repository(
            artifacts_dir(),
            repository,
            data,
            channels=channels,
            profile="quick",
            jobs=jobs,
            progress=on_progress,
        )
    if report.problems:
        raise SatwatchError(
            "the built repository does not validate: "
            + "; ".join(str(problem) for problem in report.problems)
        )


def summary_table(report: dict) -> Table:
    """Overall metrics of every detector, event-wise F1 first."""
    table = Table(title="Served through Triton (PA = point-adjusted)")
    table.add_column("detector")
    for header in SUMMARY_COLUMNS.values():
        table.add_column(header, justify="right")
    table.add_column("TP/FP/FN", justify="right")
    for detector, metrics in report["detectors"].items():
        overall = metrics["overall"]
        counts = "/".join(str(overall.get(f"event_{k}", "?")) for k in ("tp", "fp", "fn"))
        table.add_row(detector, *(f"{overall[key]:.3f}" for key in SUMMARY_COLUMNS), counts)
    return table


def run_pipeline_demo(data: Path | None, output: Path, report_dir: Path, jobs: int) -> Path:
    """Steps 1–6 of the module docstring; returns the report's path."""
    from satwatch.commands.client import served_evaluation
    from satwatch.report.html import build_report
    from satwatch.repository.build import is_built
    from satwatch.server.embedded import ServerPorts, start_embedded_server

    started = time.perf_counter()
    folder = telemetry_folder(data)
    channels = load_dataset(folder).resolve_channels("seed")
    repository = repository_dir()
    if is_built(repository, channels):
        CONSOLE.print(f"model repository {repository} is built")
    else:
        CONSOLE.print(f"building {repository} (quick profile; trains what is missing)")
        build(repository, folder, channels, jobs)
    ports = ServerPorts.free()
    CONSOLE.print(
        f"starting the embedded Triton on 127.0.0.1:{ports.http} (HTTP), :{ports.grpc} (gRPC)"
    )
    server = start_embedded_server(
        repository, ports=ports, log_file=output / "tritonserver.log", timeout=300
    )
    try:
        CONSOLE.print(f"server ready in {server.startup_seconds:.1f} s; streaming telemetry")
        report = served_evaluation(
            channels,
            data=folder,
            output=output,
            url=server.grpc_url,
            protocol="grpc",
            admin_key=server.admin_key,
        )
    finally:
        server.server.stop()
    with _progress() as bar:
        task = bar.add_task("report", total=len(channels))
        index = build_report(output, report_dir, on_channel=lambda _: bar.advance(task))
    CONSOLE.print(summary_table(report))
    CONSOLE.print(f"report: {index}")
    CONSOLE.print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return index


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=CONSOLE,
    )


def demo(
    data: Path | None = typer.Option(None, help="Telemetry folder (default $SATWATCH_DATA)."),
    output: Path = typer.Option(Path("runs/demo"), help="Run folder: metrics, events, scores."),
    report: Path = typer.Option(Path("report"), help="Report folder (index.html)."),
    jobs: int = typer.Option(2, help="Training processes when the repository must be built."),
) -> None:
    """The main job: build if needed, serve, stream the seed channels, evaluate, report, stop."""
    try:
        run_pipeline_demo(data, output, report, jobs)
    except SatwatchError as error:
        raise fail(error) from error


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the root ``satwatch`` app."""
    app.command("demo")(demo)
