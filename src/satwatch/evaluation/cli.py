"""``satwatch evaluate``: detection quality against NASA's expert labels."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from satwatch.exceptions import SatwatchError
from satwatch.paths import data_dir

LOGGER = logging.getLogger(__name__)

CONSOLE = Console()
ERRORS = Console(stderr=True)

COLUMNS = (
    ("point_f1", "point F1"),
    ("pa_f1", "PA F1"),
    ("event_precision", "event P"),
    ("event_recall", "event R"),
    ("event_f1", "event F1"),
    ("event_tp", "TP"),
    ("event_fp", "FP"),
    ("event_fn", "FN"),
)


def evaluate(
    offline: bool = typer.Option(
        False,
        "--offline",
        help="Score the test split in this process with the trained artifacts (no server).",
    ),
    detectors: str = typer.Option(
        "omni,tranad", "--detectors", help="Comma-separated detectors: omni, tranad."
    ),
    channels: str = typer.Option(
        "seed", "--channels", "-c", help="Channel ids (E-1,A-1), 'seed' or 'all'."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Telemetry folder (default $SATWATCH_DATA or the shared copy)."
    ),
    artifacts: Path | None = typer.Option(
        None, "--artifacts", help="Trained models (default $SATWATCH_ARTIFACTS or ./artifacts)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Also write metrics.json and metrics.csv into this folder."
    ),
    per_channel: bool = typer.Option(
        False, "--per-channel", help="Print one row per channel, not only the overall figures."
    ),
) -> None:
    """Point-wise, point-adjusted and event-wise (Telemanom) precision/recall/F1.

    Event-wise F1 is the figure that matters: TP = labelled events some detection overlaps,
    FP = detections overlapping no labelled event, FN = labelled events nothing overlaps;
    overall figures sum the counts over channels.
    """
    if not offline:
        ERRORS.print(
            "[red]error:[/red] served evaluation (through Triton) comes with the server "
            "pipeline; use --offline to score in this process"
        )
        raise typer.Exit(2)
    from satwatch.data import load_dataset
    from satwatch.evaluation.offline import evaluate_offline, write_report

    try:
        names = load_dataset(data_dir(data)).resolve_channels(channels)
        wanted = [d.strip() for d in detectors.split(",") if d.strip()]
        with Progress(
            TextColumn("scoring {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=CONSOLE,
            transient=True,
        ) as progress:
            task = progress.add_task("test split", total=len(names) * len(wanted))

            def on_channel(detector: str, channel: str) -> None:
                progress.update(task, advance=1, description=f"{detector} {channel}")

            report = evaluate_offline(wanted, names, data, artifacts, on_channel=on_channel)
    except SatwatchError as err:
        ERRORS.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err
    _print(report, per_channel)
    if output is not None:
        json_path, csv_path = write_report(report, output)
        CONSOLE.print(f"wrote {json_path} and {csv_path}")


def _print(report: dict, per_channel: bool) -> None:
    table = Table(title="offline evaluation (test split)")
    table.add_column("detector")
    table.add_column("channel")
    for _, title in COLUMNS:
        table.add_column(title, justify="right")
    for detector, section in report["detectors"].items():
        rows = list(section["channels"].items()) if per_channel else []
        rows.append(("overall", section["overall"]))
        for channel, values in rows:
            cells = [_cell(values[key]) for key, _ in COLUMNS]
            style = "bold" if channel == "overall" else None
            table.add_row(detector, channel, *cells, style=style)
    CONSOLE.print(table)


def _cell(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the root ``satwatch`` app."""
    app.command("evaluate")(evaluate)
