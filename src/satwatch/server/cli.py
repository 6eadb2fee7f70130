"""Commands of this subpackage (filled in by the issue that builds it)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this subpackage's commands to the root ``satwatch`` app."""
