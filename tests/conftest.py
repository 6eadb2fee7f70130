"""Fixtures shared by every test: the real telemetry, a generated stand-in, torch threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from satwatch.data.synth import synthesize
from satwatch.paths import data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real SMAP/MSL telemetry (``$SATWATCH_DATA`` or the team's shared copy).

    Only for tests of facts about NASA's data; any other test takes ``synth_data``.
    """
    folder = data_dir()
    if not (folder / "labeled_anomalies.csv").exists():
        pytest.fail(f"real telemetry not found at {folder}; set SATWATCH_DATA")
    return folder


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated SMAP-like labelled set in the Telemanom layout, written once per session.

    The 27 seed channels (so ``"seed"`` resolves), 2,000 training and 6,000 test steps each,
    one to three injected anomalies per channel; see :mod:`satwatch.data.synth`.
    """
    return synthesize(tmp_path_factory.mktemp("synth") / "data", seed=0, channels=27).folder


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module's tiny models, restored after the module.

    Threads only add contention on a shared 2-core machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
