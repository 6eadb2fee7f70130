"""The ``satwatch`` command.

Each subpackage owns its commands in its own ``cli.py`` and adds them here through a
``register(app)`` function, so this module only assembles them.
"""

from __future__ import annotations

import typer

from satwatch import demo
from satwatch.client import cli as client_cli
from satwatch.data import cli as data_cli
from satwatch.detectors import cli as detectors_cli
from satwatch.evaluation import cli as evaluation_cli
from satwatch.report import cli as report_cli
from satwatch.repository import cli as repository_cli
from satwatch.repository.build import register_build
from satwatch.server import cli as server_cli

app = typer.Typer(
    name="satwatch",
    help=(
        "Spacecraft-telemetry anomaly detection served by NVIDIA Triton Inference Server: "
        "train detectors on SMAP/MSL telemetry, build the model repository, serve it, "
        "stream telemetry through it and evaluate the events against NASA's expert labels."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Markdown reflows docstring paragraphs instead of keeping their line breaks.
    rich_markup_mode="markdown",
)

for module in (
    server_cli,
    data_cli,
    detectors_cli,
    client_cli,
    evaluation_cli,
    repository_cli,
    report_cli,
    demo,
):
    module.register(app)
register_build(app)
