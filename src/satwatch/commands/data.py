"""``satwatch data``: make, fetch and inspect labelled telemetry.

* ``satwatch data synth --out DIR --seed N`` writes a synthetic SMAP-like set with labels.
* ``satwatch data download --out DIR`` fetches NASA's public Telemanom archive (internet).
* ``satwatch data info`` prints one row per channel: lengths, labelled events, quirks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from satwatch.commands._console import CONSOLE, DATA_OPTION, counting_progress, fail
from satwatch.exceptions import SatwatchError

LOGGER = logging.getLogger(__name__)


data_app = typer.Typer(
    name="data",
    help="Labelled SMAP/MSL telemetry: make a synthetic set, download NASA's, or inspect one.",
    no_args_is_help=True,
)


@data_app.command()
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (Telemanom layout)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same bytes."),
    channels: int = typer.Option(
        27, "--channels", "-c", help="Number of channels; the first 27 take the seed SMAP names."
    ),
    train_length: int = typer.Option(2000, "--train-length", help="Steps per training series."),
    test_length: int = typer.Option(6000, "--test-length", help="Steps per test series."),
    min_anomalies: int = typer.Option(1, "--min-anomalies", help="Fewest anomalies per channel."),
    max_anomalies: int = typer.Option(3, "--max-anomalies", help="Most anomalies per channel."),
    features: int = typer.Option(
        25, "--features", help="Columns per row: the value and features - 1 commands (SMAP: 25)."
    ),
    spacecraft: str = typer.Option(
        "SMAP", "--spacecraft", "-s", help="The spacecraft the labels name (SMAP, or your own)."
    ),
) -> None:
    """Write a synthetic SMAP-like labelled data set for use without the real telemetry.

    Column 0 is a value in [-1, 1] with orbits, slow trends and command-driven level changes;
    the other columns (24 by default, --features) are one-hot commands. The test split holds
    injected anomalies (spike, level shift, drift, frozen value, noise burst, contextual = a
    normal value at the wrong phase) labelled in labeled_anomalies.csv (point/contextual,
    NASA's format); synth_anomalies.csv names the injected kind of each. Load it with
    --data DIR or SATWATCH_DATA=DIR.
    """
    from satwatch.data.synth import synthesize

    progress = counting_progress("synthesizing")
    try:
        with progress:
            task = progress.add_task("synth", total=channels)
            summary = synthesize(
                out, seed, channels, train_length, test_length, (min_anomalies, max_anomalies),
                on_channel=lambda _name: progress.advance(task),
                features=features, spacecraft=spacecraft,
            )  # fmt: skip
    except SatwatchError as err:
        raise fail(err) from err
    kinds: dict[str, int] = {}
    for anomaly in summary.anomalies:
        kinds[anomaly.kind] = kinds.get(anomaly.kind, 0) + 1
    CONSOLE.print(
        f"wrote {len(summary.channels)} channels ({train_length} train + {test_length} test "
        f"steps) with {len(summary.anomalies)} anomalies to {out}: "
        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    )


def _byte_progress(progress: Progress) -> Callable[[str, int, int | None], None]:
    tasks: dict[str, int] = {}

    def report(name: str, done: int, total: int | None) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total)
        progress.update(tasks[name], completed=done)

    return report


@data_app.command()
def download(
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Destination (default $SATWATCH_DATA or ./data)."
    ),
    data_url: str = typer.Option(
        "https://s3-us-west-2.amazonaws.com/telemanom/data.zip",
        "--data-url",
        help="URL of the Telemanom data.zip.",
    ),  # fmt: skip
    labels_url: str = typer.Option(
        "https://raw.githubusercontent.com/khundman/telemanom/master/labeled_anomalies.csv",
        "--labels-url",
        help="URL of labeled_anomalies.csv.",
    ),  # fmt: skip
    keep_archive: bool = typer.Option(False, "--keep-archive", help="Keep data.zip afterwards."),
) -> None:
    """Download NASA's SMAP/MSL telemetry (the Telemanom data.zip) and unpack it.

    Needs internet access. Writes train/<chan>.npy, test/<chan>.npy and
    labeled_anomalies.csv, the layout every satwatch command reads with --data.
    """
    from satwatch.data.download import download_telemanom
    from satwatch.paths import PROJECT_ROOT

    # Not paths.data_dir(): its last fallback is the read-only shared copy.
    folder = out or Path(os.environ.get("SATWATCH_DATA") or PROJECT_ROOT / "data")
    progress = Progress(
        TextColumn("{task.description:>22}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), console=CONSOLE,
    )  # fmt: skip
    try:
        with progress:
            summary = download_telemanom(
                folder, data_url, labels_url, _byte_progress(progress), keep_archive
            )
    except SatwatchError as err:
        raise fail(err) from err
    CONSOLE.print(
        f"unpacked {len(summary.train)} train and {len(summary.test)} test arrays into {folder}"
    )


@data_app.command()
def info(
    data: Path | None = DATA_OPTION,
    spacecraft: str = typer.Option("SMAP", "--spacecraft", "-s", help="SMAP or MSL."),
    channels: str = typer.Option(
        "all", "--channels", "-c", help="'seed' (27 seed SMAP channels), 'all' or E-1,A-1,..."
    ),
) -> None:
    """Print each channel's subsystem, lengths, labelled events and quirks.

    Flags: 'constant train' (column 0 never changes in training: a detector learns nothing
    from it) and 'out of [-1, 1]' (MSL channels whose value leaves the documented range).
    """
    from satwatch.data.dataset import load_dataset
    from satwatch.data.info import channel_summaries

    try:
        dataset = load_dataset(data, spacecraft)
        rows = channel_summaries(dataset, dataset.resolve_channels(channels))
    except SatwatchError as err:
        raise fail(err) from err
    table = Table(title=f"{dataset.spacecraft} telemetry in {dataset.folder} ({dataset.layout})")
    for column in ("channel", "subsystem", "train", "test", "point", "context", "% anom"):
        justify = "left" if column in ("channel", "subsystem") else "right"
        table.add_column(column, justify=justify, no_wrap=True)
    table.add_column("flags", style="yellow")
    for row in rows:
        table.add_row(
            row.channel, row.subsystem, f"{row.train_length:,}", f"{row.test_length:,}",
            str(row.point_events), str(row.contextual_events), f"{row.anomalous_percent:.1f}",
            "; ".join(row.flags),
        )  # fmt: skip
    test_steps = sum(r.test_length for r in rows)
    anomalous = sum(r.anomalous_steps for r in rows)
    table.add_section()
    table.add_row(
        "total", f"{len(rows)} channels",
        f"{sum(r.train_length for r in rows):,}", f"{test_steps:,}",
        str(sum(r.point_events for r in rows)), str(sum(r.contextual_events for r in rows)),
        f"{100 * anomalous / test_steps:.1f}" if test_steps else "-",
        f"{sum(bool(r.flags) for r in rows)} flagged",
    )  # fmt: skip
    CONSOLE.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the root ``satwatch`` app."""
    app.add_typer(data_app, name="data")
