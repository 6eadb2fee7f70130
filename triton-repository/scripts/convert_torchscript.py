#!/usr/bin/env python3
"""Convert a trained TranAD checkpoint to TorchScript for the PyTorch backend.

The same as ``satwatch convert-torchscript``; run it with the project's Python
(``.venv/bin/python convert_torchscript.py --help``). The model folder of --output
(``<model>/<N>/<file>``) must have a valid model name, sit in pytorch/ when inside a repository,
and hold no other model; anything refused exits 1 with one line.
The repository defaults to the one holding this script unless --repository or
$SATWATCH_REPOSITORY says otherwise.
"""

import os
from pathlib import Path

import typer

os.environ.setdefault("SATWATCH_REPOSITORY", str(Path(__file__).resolve().parents[1]))

from satwatch.commands.repository import convert_torchscript_command  # noqa: E402 - needs the default above

if __name__ == "__main__":
    typer.run(convert_torchscript_command)
