"""Fixtures shared by every test: where the real telemetry is."""

from __future__ import annotations

from pathlib import Path

import pytest

from satwatch.paths import data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real SMAP/MSL telemetry (``$SATWATCH_DATA`` or the team's shared copy)."""
    folder = data_dir()
    if not (folder / "labeled_anomalies.csv").exists():
        pytest.fail(f"real telemetry not found at {folder}; set SATWATCH_DATA")
    return folder
