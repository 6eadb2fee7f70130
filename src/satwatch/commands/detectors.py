"""``satwatch train``: train detectors on the telemetry and write their artifacts."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    track,
)
from rich.table import Table

from satwatch.commands._console import CONSOLE, DATA_OPTION, ERRORS, SPACECRAFT_OPTION, fail
from satwatch.detectors import registry
from satwatch.exceptions import SatwatchError
from satwatch.paths import artifacts_dir, data_dir

LOGGER = logging.getLogger(__name__)


def train(
    detector: str = typer.Option(
        "omni",
        "--detector",
        "-d",
        help="The detector kind: "
        + ", ".join(
            f"{d.kind} ({d.title}, {'one model per channel' if d.per_channel else 'one model'})"
            for d in registry.detectors()
        )
        + ".",
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
    data: Path | None = DATA_OPTION,
    artifacts: Path | None = typer.Option(
        None,
        "--artifacts",
        help="Where to write <detector>/<name>/{model.pt,card.json} "
        "(default $SATWATCH_ARTIFACTS or ./artifacts).",
    ),
    spacecraft: str = SPACECRAFT_OPTION,
) -> None:
    """Train detectors, fit their POT thresholds on training scores and save the artifacts.

    Each channel's statistics (normalisation, threshold) are fitted on its training split only.
    """
    from satwatch.data import load_dataset
    from satwatch.detectors.training import plan_jobs, run_jobs

    try:
        folder = data_dir(data)
        dataset = load_dataset(folder, spacecraft)
        names = dataset.resolve_channels(channels)
        root = artifacts_dir(artifacts)
        planned = plan_jobs(
            detector, names, profile, seed, folder, root, spacecraft=dataset.spacecraft
        )
    except SatwatchError as err:
        raise fail(err) from err
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


def export(
    channels: str = typer.Option(
        "seed", "--channels", "-c", help="Channel ids (E-1,A-1), 'seed' or 'all'."
    ),
    artifacts: Path | None = typer.Option(
        None, "--artifacts", help="Trained models (default $SATWATCH_ARTIFACTS or ./artifacts)."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Write <output>/<name>/model.onnx (default: model.onnx beside each model.pt).",
    ),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Compare ONNX Runtime with PyTorch on the test split."
    ),
    data: Path | None = DATA_OPTION,
) -> None:
    """Export trained OmniAnomaly models to ONNX (served interface, threshold baked in)."""
    from satwatch.data import load_dataset
    from satwatch.detectors.artifacts import artifact_dir, load_trained
    from satwatch.evaluation.offline import normalised_test
    from satwatch.export.onnx import export_omni, parity

    table = Table(title="ONNX export")
    for column in ("model", "file", "max |score diff|", "max rel diff", "detected equal"):
        table.add_column(column)
    failed = False
    try:
        dataset = load_dataset(data_dir(data))
        names = dataset.resolve_channels(channels)
        root = artifacts_dir(artifacts)
        for channel in track(names, description="exporting", console=CONSOLE):
            folder = artifact_dir(root, "omni", registry.detector("omni").served_name(channel))
            model, card = load_trained(folder)
            target = (Path(output) / card["name"] if output else folder) / "model.onnx"
            export_omni(model, card["threshold"], target)
            if not check:
                table.add_row(card["name"], str(target), "-", "-", "-")
                continue
            report = parity(
                model, card["threshold"], target, normalised_test(card, dataset.channel(channel))
            )
            failed |= not report["detected_equal"]
            equal = "yes" if report["detected_equal"] else "[red]NO[/red]"
            table.add_row(
                card["name"],
                str(target),
                f"{report['max_abs_score_diff']:.2e}",
                f"{report['max_rel_score_diff']:.2e}",
                equal,
            )
    except SatwatchError as err:
        raise fail(err) from err
    CONSOLE.print(table)
    if failed:
        ERRORS.print("[red]error:[/red] ONNX Runtime decisions differ from PyTorch's")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``export`` to the root ``satwatch`` app."""
    app.command("train")(train)
    app.command("export")(export)
