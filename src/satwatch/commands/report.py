"""``satwatch report``: an HTML report of an evaluation run, readable offline."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.markup import escape

from satwatch.commands._console import CONSOLE, counting_progress, fail
from satwatch.exceptions import SatwatchError

LOGGER = logging.getLogger(__name__)


def report(
    run: Path = typer.Option(
        ...,
        "--run",
        "-r",
        help="Run folder written by `satwatch evaluate --output DIR` (metrics.json, "
        "scores/<channel>.npz, events.csv).",
    ),
    output: Path = typer.Option(
        Path("report"),
        "--output",
        "-o",
        help="Report folder; index.html and figures/ are written into it.",
    ),
    channels: str | None = typer.Option(
        None,
        "--channels",
        "-c",
        help="Comma-separated channel ids to include (default: every channel in the run).",
    ),
) -> None:
    """Write report/index.html: summary table beside published SMAP figures, then one
    figure per channel (telemetry, each detector's score over its threshold, decisions,
    labelled anomalies shaded, detected events marked), worst channel first.

    The page is one self-contained file (figures embedded), so it opens offline and can be
    sent as is.
    """
    from satwatch.evaluation.run import load_run
    from satwatch.report.html import build_report

    try:
        wanted = [c.strip() for c in channels.split(",") if c.strip()] if channels else None
        total = len(wanted) if wanted else len(load_run(run).channels)
        with counting_progress("drawing", transient=True) as progress:
            task = progress.add_task("figures", total=total)
            index = build_report(
                run,
                output,
                channels=wanted,
                on_channel=lambda name: progress.update(task, advance=1, description=name),
            )
    except SatwatchError as err:
        raise fail(err) from err
    CONSOLE.print(f"report: {escape(str(index))}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the root ``satwatch`` app."""
    app.command("report")(report)
