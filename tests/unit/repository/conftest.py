"""A small but complete model repository for the repository tests.

It is :func:`satwatch.repository.sample.build_sample_repository`: ``onnx/SMAP_E-1`` (an ONNX
graph made with ``onnx.helper``, state inputs included), ``pytorch/tranad_sat1_core`` (a scripted
tiny module with the served signature) behind the ``python/tranad_sat1`` front,
``python/{preprocessing,postprocessing}`` and the
project's two checked-in ensemble configs, so a passing validation also says those configs
fit the contracts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from satwatch.repository.sample import (
    PROJECT_REPOSITORY,
    build_sample_repository,
    make_detector_onnx,
    make_tranad_torchscript,
)

ASSETS = Path(__file__).parent / "assets"

__all__ = ["ASSETS", "PROJECT_REPOSITORY", "make_detector_onnx", "make_tranad_torchscript"]


@pytest.fixture(scope="session")
def repository_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small repository, built once per session (copy it before changing it)."""
    return build_sample_repository(tmp_path_factory.mktemp("template") / "triton-repository")


@pytest.fixture
def small_repository(repository_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small repository that a test may break."""
    return Path(shutil.copytree(repository_template, tmp_path / "triton-repository"))
