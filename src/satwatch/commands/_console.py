"""What every command shares: its consoles, the one way an error ends a command, the
``--data`` option and the plain counting progress bar.

A :class:`~satwatch.exceptions.SatwatchError` ends a command as one red line on stderr and exit
code 1, never a traceback.

Example::

    try:
        ...
    except SatwatchError as error:
        raise fail(error) from error
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from satwatch.exceptions import SatwatchError

CONSOLE = Console()
ERRORS = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., None])

DATA_OPTION = typer.Option(
    None, "--data", help="Telemetry folder (default $SATWATCH_DATA or the shared copy)."
)
"""``--data``, as every command that reads telemetry takes it."""

SPACECRAFT_OPTION = typer.Option(
    "SMAP",
    "--spacecraft",
    "-s",
    help="Whose telemetry and models: SMAP, MSL or a name the data's labels file lists "
    "(models SPACECRAFT_channel, e.g. MSL_C-1).",
)
"""``--spacecraft``, as every command that reads telemetry or names models takes it."""


def counting_progress(label: str, transient: bool = False) -> Progress:
    """A bar counting done items: ``<label> {description}``, the bar, ``n/total``, the time."""
    return Progress(
        TextColumn(f"{label} {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=CONSOLE,
        transient=transient,
    )


def fail(error: SatwatchError) -> typer.Exit:
    """Print ``error`` as one red line and return the exit (code 1) to raise."""
    # escape: a refused name or path such as 'a[/]' must print, not break rich markup.
    ERRORS.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def exits_cleanly(command: F) -> F:
    """Decorate a command so that a ``SatwatchError`` ends it through :func:`fail`."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except SatwatchError as error:
            raise fail(error) from error

    return wrapper  # type: ignore[return-value]
