"""``satwatch evaluate`` and ``satwatch study``: detection quality against NASA's labels."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.table import Table

from satwatch.client.stream import DEFAULT_WORKERS, REPLAY_CHUNK
from satwatch.commands._console import (
    CONSOLE,
    DATA_OPTION,
    SPACECRAFT_OPTION,
    counting_progress,
    fail,
)
from satwatch.detectors.registry import kinds
from satwatch.evaluation.metrics import TABLE_COLUMNS, table_cells
from satwatch.exceptions import SatwatchError
from satwatch.paths import PROJECT_ROOT, artifacts_dir, data_dir, repository_dir

LOGGER = logging.getLogger(__name__)


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
    chunk: int = typer.Option(REPLAY_CHUNK, "--chunk", help="Served: time steps per request."),
    workers: int = typer.Option(
        DEFAULT_WORKERS, "--workers", help="Served: channels streamed at once."
    ),
    admin_key: str | None = typer.Option(
        None,
        "--admin-key",
        envvar="SATWATCH_ADMIN_KEY",
        help="Served: the server's admin key (lets an error name a model's state).",
    ),
    spacecraft: str = SPACECRAFT_OPTION,
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
            spacecraft=spacecraft,
        )
        return
    from satwatch.data import load_dataset
    from satwatch.evaluation.metrics import write_report
    from satwatch.evaluation.offline import evaluate_offline

    try:
        dataset = load_dataset(data_dir(data), spacecraft)
        names = dataset.resolve_channels(channels)
        wanted = [d.strip() for d in detectors.split(",") if d.strip()]
        with counting_progress("scoring", transient=True) as progress:
            task = progress.add_task("test split", total=len(names) * len(wanted))

            def on_channel(detector: str, channel: str) -> None:
                progress.update(task, advance=1, description=f"{detector} {channel}")

            report = evaluate_offline(
                wanted,
                names,
                data,
                artifacts,
                on_channel=on_channel,
                repository=repository,
                spacecraft=dataset.spacecraft,
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
        dataset = load_dataset(data_dir(data), str(connection.pop("spacecraft", "SMAP")))
        names = dataset.resolve_channels(channels)
        report = served_evaluation(
            names,
            data=data,
            artifacts=artifacts,
            output=output,
            spacecraft=dataset.spacecraft,
            **connection,
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
    for _, title in TABLE_COLUMNS:
        table.add_column(title, justify="right")
    for detector, section in report["detectors"].items():
        rows = list(section["channels"].items()) if per_channel else []
        rows.append(("overall", section["overall"]))
        for channel, values in rows:
            cells = table_cells(values)
            style = "bold" if channel == "overall" else None
            table.add_row(detector, channel, *cells, style=style)
    CONSOLE.print(table)


STUDY_FOLDER = PROJECT_ROOT / "runs" / "study"


def study(
    data: Path | None = DATA_OPTION,
    spacecraft: str = SPACECRAFT_OPTION,
    validation: str = typer.Option(
        "validation",
        "--validation",
        help="Channels to choose on: 'validation' (every SMAP channel outside the seed), "
        "'all', a list such as 'A-6,B-1', or 'none'.",
    ),
    report_channels: str = typer.Option(
        "seed",
        "--report",
        help="Channels reported once the configuration is fixed: 'seed', 'all', a list, or "
        "'none'. Another spacecraft's channels, never chosen on, are reported with "
        "-s MSL --validation none --report all and their own --artifacts and --repository.",
    ),
    workdir: Path = typer.Option(
        STUDY_FOLDER,
        "--workdir",
        help="The validation channels' artifacts and repository (trained here when missing).",
    ),
    artifacts: Path | None = typer.Option(
        None, "--artifacts", help="The reported channels' artifacts (default ./artifacts)."
    ),
    repository: Path | None = typer.Option(
        None,
        "--repository",
        help="The reported channels' built repository (default ./triton-repository; built "
        "when it lacks one of them).",
    ),
    profile: str = typer.Option("quick", "--profile", help="Training profile: quick or full."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Training worker processes."),
    output: Path = typer.Option(
        PROJECT_ROOT / "report" / "study",
        "--output",
        "-o",
        help="Folder for study.json and study.md.",
    ),
) -> None:
    """The quality study: the validation table, then the reported (seed) table.

    Each set is scored as served (the exported models and the served postprocessing
    function): one row per detector alone, one for postprocessing's stuck-value rule alone
    (frozen) and one for the fused detector, then every labelled event with the rows that
    find it (or missed) and every fused false alarm.
    Settings are chosen on the validation channels; the seed channels are reported once
    per final configuration.
    """
    from satwatch.data import load_dataset
    from satwatch.evaluation.study import write_study

    try:
        folder = data_dir(data)
        dataset = load_dataset(folder, spacecraft)
        sets = [
            _ChannelSet("validation", _selection(dataset, validation), dataset.spacecraft,
                        workdir / "artifacts", workdir / "repository", always_build=True),
            _ChannelSet(_report_title(dataset),
                        _selection(dataset, report_channels), dataset.spacecraft,
                        artifacts_dir(artifacts), repository_dir(repository)),
        ]  # fmt: skip
        sets = [one for one in sets if one.channels]
        if not sets:
            raise SatwatchError("--validation and --report are both 'none': nothing to study")
        tables = [_study_set(one, folder, profile, jobs) for one in sets]
    except SatwatchError as err:
        raise fail(err) from err
    json_path, markdown_path = write_study(tables, output)
    CONSOLE.print(f"wrote {json_path} and {markdown_path}")


@dataclass(frozen=True)
class _ChannelSet:
    """One table of the study: its channels and where their models are trained and built."""

    title: str
    channels: list[str]
    spacecraft: str
    artifacts: Path
    repository: Path
    always_build: bool = False


NO_CHANNELS = "none"
"""``--validation none`` or ``--report none``: leave that table out."""


def _selection(dataset, spec: str) -> list[str]:  # noqa: ANN001 - a TelemetryDataset
    """The channels of a ``--validation``/``--report`` value; none for ``none``."""
    return [] if spec.strip().lower() == NO_CHANNELS else dataset.resolve_channels(spec)


def _report_title(dataset) -> str:  # noqa: ANN001 - a TelemetryDataset
    """``seed`` for SMAP's reported table, as before; ``<CRAFT> reported`` for another's."""
    return "seed" if dataset.spacecraft == "SMAP" else f"{dataset.spacecraft} reported"


def _study_set(one: _ChannelSet, data: Path, profile: str, jobs: int):  # noqa: ANN202
    """Build the set's repository if needed, score it as served, print its tables."""
    from satwatch.evaluation.study import study_channels

    if one.always_build or not _has_channels(one.repository, one.channels, one.spacecraft):
        _build(one, data, profile, jobs)
    with counting_progress(f"{one.title}:", transient=True) as bar:
        task = bar.add_task("scoring", total=len(one.channels) + len(kinds()))

        def on_step(step: str) -> None:
            bar.update(task, advance=1, description=step)

        table = study_channels(
            one.channels, data, one.artifacts, one.repository, one.title, one.spacecraft,
            on_step=on_step,
        )  # fmt: skip
    _print_study(table)
    return table


def _has_channels(repository: Path, names: list[str], spacecraft: str) -> bool:
    """True when the repository's shipped thresholds cover every channel in ``names`` and every
    registered detector's model of theirs is there (a detector added since is built)."""
    from satwatch.repository.build import is_built
    from satwatch.repository.stages import served_postprocessing

    try:
        _, table = served_postprocessing(repository)
    except SatwatchError:
        return False
    return set(names) <= set(table) and is_built(repository, names, spacecraft)


def _build(one: _ChannelSet, data: Path, profile: str, jobs: int) -> None:
    """``satwatch build`` for one channel set (training what is missing), with a bar."""
    from satwatch.repository.build import build_repository

    with counting_progress(f"{one.title} build:") as bar:
        task = bar.add_task("", total=1)

        def on_progress(description: str, completed: int, total: int) -> None:
            bar.update(task, description=description, completed=completed, total=total)

        report = build_repository(
            one.artifacts, one.repository, data, channels=one.channels, profile=profile,
            jobs=jobs, spacecraft=one.spacecraft, progress=on_progress,
        )  # fmt: skip
    if report.problems:
        problems = "; ".join(report.problems)
        raise SatwatchError(f"the {one.title} repository is invalid: {problems}")


def _print_study(table) -> None:  # noqa: ANN001 - a StudyTable (imported with torch)
    from satwatch.evaluation.study import fate_text

    rows = Table(title=f"{table.title}: {len(table.channels)} channels, served")
    rows.add_column("row")
    for _, title in TABLE_COLUMNS:
        rows.add_column(title, justify="right")
    for row, section in table.rows.items():
        style = "bold" if row == "fused" else None
        rows.add_row(row, *table_cells(section["overall"]), style=style)
    CONSOLE.print(rows)
    events = Table(title=f"{table.title}: each labelled event and each fused false alarm")
    for column in ("channel", "event", "class", "found by"):
        events.add_column(column)
    for fate in table.events + table.false_alarms:
        events.add_row(fate.channel, f"{fate.start}-{fate.end}", fate.kind, fate_text(fate))
    CONSOLE.print(events)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``study`` to the root ``satwatch`` app."""
    app.command("evaluate")(evaluate)
    app.command("study")(study)
