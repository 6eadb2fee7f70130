"""``satwatch evaluate``: detection quality against NASA's expert labels."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.table import Table

from satwatch.commands._console import CONSOLE, DATA_OPTION, counting_progress, fail
from satwatch.detectors.registry import kinds
from satwatch.exceptions import SatwatchError
from satwatch.paths import data_dir

LOGGER = logging.getLogger(__name__)


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
        help="Score the test split in this process with the trained artifacts (no server). "
        "Default: stream it through the running server (`satwatch serve`) and add the "
        "fused pipeline as a third detector.",
    ),
    repository: Path | None = typer.Option(
        None,
        "--repository",
        help="With --offline: score with this built repository's exported model files "
        "(ONNX Runtime, TorchScript) instead of PyTorch eager, so the numbers equal the "
        "served evaluation's exactly.",
    ),
    detectors: str = typer.Option(
        ",".join(kinds()),
        "--detectors",
        help=f"Comma-separated detectors: {', '.join(kinds())} (served: always all of them, "
        "plus fused).",
    ),
    channels: str = typer.Option(
        "seed", "--channels", "-c", help="Channel ids (E-1,A-1), 'seed' or 'all'."
    ),
    data: Path | None = DATA_OPTION,
    artifacts: Path | None = typer.Option(
        None, "--artifacts", help="Trained models (default $SATWATCH_ARTIFACTS or ./artifacts)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Also write metrics.json and metrics.csv into this folder."
    ),
    per_channel: bool = typer.Option(
        False, "--per-channel", help="Print one row per channel, not only the overall figures."
    ),
    protocol: str = typer.Option("grpc", "--protocol", help="Served: grpc or http."),
    url: str | None = typer.Option(
        None, "--url", help="Served: server address host:port (default 127.0.0.1:8001 / :8000)."
    ),
    chunk: int = typer.Option(256, "--chunk", help="Served: time steps per request."),
    workers: int = typer.Option(4, "--workers", help="Served: channels streamed at once."),
    admin_key: str | None = typer.Option(
        None,
        "--admin-key",
        envvar="SATWATCH_ADMIN_KEY",
        help="Served: the server's admin key (lets an error name a model's state).",
    ),
) -> None:
    """Point-wise, point-adjusted and event-wise (Telemanom) precision/recall/F1.

    Event-wise F1 is the figure that matters: TP = labelled events some detection overlaps,
    FP = detections overlapping no labelled event, FN = labelled events nothing overlaps;
    overall figures sum the counts over channels.
    """
    if not offline:
        _served(
            channels,
            data,
            artifacts,
            output,
            per_channel,
            protocol=protocol,
            url=url,
            chunk=chunk,
            workers=workers,
            admin_key=admin_key,
        )
        return
    from satwatch.data import load_dataset
    from satwatch.evaluation.metrics import write_report
    from satwatch.evaluation.offline import evaluate_offline

    try:
        names = load_dataset(data_dir(data)).resolve_channels(channels)
        wanted = [d.strip() for d in detectors.split(",") if d.strip()]
        with counting_progress("scoring", transient=True) as progress:
            task = progress.add_task("test split", total=len(names) * len(wanted))

            def on_channel(detector: str, channel: str) -> None:
                progress.update(task, advance=1, description=f"{detector} {channel}")

            report = evaluate_offline(
                wanted, names, data, artifacts, on_channel=on_channel, repository=repository
            )
    except SatwatchError as err:
        raise fail(err) from err
    _print(report, per_channel)
    if output is not None:
        json_path, csv_path = write_report(report, output)
        CONSOLE.print(f"wrote {json_path} and {csv_path}")


def _served(
    channels: str,
    data: Path | None,
    artifacts: Path | None,
    output: Path | None,
    per_channel: bool,
    **connection: object,
) -> None:
    """The served evaluation (:mod:`satwatch.client.evaluate`), printed like the offline one."""
    from satwatch.commands.client import served_evaluation
    from satwatch.data import load_dataset

    try:
        names = load_dataset(data_dir(data)).resolve_channels(channels)
        report = served_evaluation(
            names, data=data, artifacts=artifacts, output=output, **connection
        )
    except SatwatchError as err:
        raise fail(err) from err
    _print(report, per_channel, title="served evaluation (test split, through Triton)")
    if output is not None:
        CONSOLE.print(f"wrote {output / 'metrics.json'}, metrics.csv, scores/ and events.csv")


def _print(report: dict, per_channel: bool, title: str = "offline evaluation (test split)") -> None:
    table = Table(title=title)
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
