#!/usr/bin/env python3
"""Deploy an ONNX detector as the next version of onnx/<NAME>/ and optionally load it.

The same as ``satwatch deploy-onnx``; run it with the project's Python
(``.venv/bin/python deploy_onnx.py --help``). --name is one folder name, never a path
(``satwatch.repository.names.MODEL_NAME_PATTERN``), not used by another model; --onnx must be
a valid ONNX model. Anything refused exits 1 with one line and writes nothing.
The repository defaults to the one holding this script unless --repository or
$SATWATCH_REPOSITORY says otherwise.
"""

import os
from pathlib import Path

import typer

os.environ.setdefault("SATWATCH_REPOSITORY", str(Path(__file__).resolve().parents[1]))

from satwatch.commands.repository import deploy_onnx_command  # noqa: E402 - needs the default above

if __name__ == "__main__":
    typer.run(deploy_onnx_command)
