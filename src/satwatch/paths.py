"""Where satwatch finds its inputs and puts its outputs.

Environment variables (``SATWATCH_DATA``, ``SATWATCH_REPOSITORY``, ``SATWATCH_ARTIFACTS``)
override the defaults, which are relative to the project checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout holding ``src/satwatch`` (meaningful for an editable install)."""

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "smap_msl"
"""The team's shared copy of the SMAP/MSL telemetry, beside the checkout."""


def data_dir(explicit: Path | None = None) -> Path:
    """Return the telemetry folder: ``explicit``, ``$SATWATCH_DATA``, ``./data`` or shared."""
    if explicit is not None:
        return Path(explicit)
    if env := os.environ.get("SATWATCH_DATA"):
        return Path(env)
    local = PROJECT_ROOT / "data"
    if local.exists():
        return local
    return SHARED_DATA


def repository_dir(explicit: Path | None = None) -> Path:
    """Return the model repository: ``explicit``, ``$SATWATCH_REPOSITORY`` or the checkout's."""
    if explicit is not None:
        return Path(explicit)
    if env := os.environ.get("SATWATCH_REPOSITORY"):
        return Path(env)
    return PROJECT_ROOT / "triton-repository"


def artifacts_dir(explicit: Path | None = None) -> Path:
    """Return where trained checkpoints and their cards live."""
    if explicit is not None:
        return Path(explicit)
    if env := os.environ.get("SATWATCH_ARTIFACTS"):
        return Path(env)
    return PROJECT_ROOT / "artifacts"
