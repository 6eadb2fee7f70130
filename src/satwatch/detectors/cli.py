"""``satwatch train``: train detectors on the telemetry and write their artifacts."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from satwatch.exceptions import SatwatchError
from satwatch.paths import artifacts_dir, data_dir

LOGGER = logging.getLogger(__name__)

CONSOLE = Console()
ERRORS = Console(stderr=True)


def train(
    detector: str = typer.Option(
        "omni",
        "--detector",
        "-d",
        help="omni (OmniAnomaly, one model per channel) or tranad "
        "(TranAD, one model over all the given channels).",
    ),
    channels: str = typer.Option(
        "seed",
        "--channels",
        "-c",
        help="Comma-separated channel ids (E-1,A-1), 'seed' (the 27 seed SMAP channels) or 'all'.",
    ),
    profile: str = typer.Option(
        "quick",
        "--profile",
        "-p",
        help="quick (small, minutes on 2 cores) or full (the papers' hyperparameters, hours).",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed trains the same model."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Channels trained in parallel processes."),
    data: Path | None = typer.Option(
        None, "--data", help="Telemetry folder (default $SATWATCH_DATA or the shared copy)."
    ),
    artifacts: Path | None = typer.Option(
        None,
        "--artifacts",
        help="Where to write <detector>/<name>/{model.pt,card.json} "
        "(default $SATWATCH_ARTIFACTS or ./artifacts).",
    ),
) -> None:
    """Train detectors, fit their POT thresholds on training scores and save the artifacts.

    Each channel's statistics (normalisation, threshold) are fitted on its training split only.
    """
    from satwatch.data import load_dataset
    from satwatch.detectors.training import plan_jobs, run_jobs

    try:
        folder = data_dir(data)
        names = load_dataset(folder).resolve_channels(channels)
        root = artifacts_dir(artifacts)
        planned = plan_jobs(detector, names, profile, seed, folder, root)
    except SatwatchError as err:
        ERRORS.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err
    CONSOLE.print(
        f"training {len(planned)} {detector} model(s) on {len(names)} channel(s), "
        f"profile {profile}, seed {seed}, {jobs} job(s) -> {root}"
    )
    progress = Progress(
        TextColumn("{task.description:>14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  {task.fields[status]}"),
        TimeElapsedColumn(),
        console=CONSOLE,
    )
    with progress:
        tasks = {
            job.name: progress.add_task(job.name, total=job.epochs, status="waiting")
            for job in planned
        }

        def on_epoch(name: str, epoch: int, loss: float) -> None:
            progress.update(tasks[name], completed=epoch, status=f"loss {loss:.3f}")

        def on_done(result) -> None:
            status = (
                "[red]failed[/red]"
                if result.error
                else f"[green]done[/green] {result.seconds:.0f}s"
            )
            progress.update(tasks[result.name], status=status)

        results = run_jobs(planned, workers=jobs, on_epoch=on_epoch, on_done=on_done)
    _summary(results)
    failed = [r for r in results if r.error]
    for result in failed:
        ERRORS.print(f"[red]error:[/red] {result.name}: {result.error}")
    if failed:
        raise typer.Exit(1)


def _summary(results: list) -> None:
    table = Table(title="trained")
    for column in ("model", "train s", "final loss", "threshold", "artifacts"):
        table.add_column(column)
    for r in results:
        if r.error:
            table.add_row(r.name, "-", "-", "-", "[red]failed[/red]")
            continue
        loss = "-" if r.final_loss is None else f"{r.final_loss:.4f}"
        table.add_row(r.name, f"{r.seconds:.1f}", loss, f"{r.threshold:.4g}", str(r.folder))
    CONSOLE.print(table)


def register(app: typer.Typer) -> None:
    """Add ``train`` to the root ``satwatch`` app."""
    app.command("train")(train)
