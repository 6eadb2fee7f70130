"""The ``satwatch`` command.

The command layer, :mod:`satwatch.commands`, holds one module of commands per subpackage,
each adding its commands here through ``register(app)``, so this module only assembles them.
"""

from __future__ import annotations

import typer

from satwatch.commands import (
    bench,
    client,
    data,
    demo,
    detectors,
    evaluation,
    report,
    repository,
    server,
)

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

for module in (server, data, detectors, client, bench, evaluation, repository, report, demo):
    module.register(app)
