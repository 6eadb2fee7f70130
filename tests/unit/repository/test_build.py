"""``satwatch build``: what it refuses before any training or export (the full build runs in
``tests/integration/test_repository_models.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from satwatch.commands.repository import build_command
from satwatch.exceptions import DataError, RepositoryError
from satwatch.repository.build import (
    SOURCE_REPOSITORY,
    _baseline_of,
    build_repository,
    repository_size,
)


def _build_without_training(tmp_path: Path, data: Path, channels: str) -> None:
    """A build into ``tmp_path/repository`` that has nothing trained and may not train."""
    build_repository(
        tmp_path / "artifacts", tmp_path / "repository", data, channels=channels,
        train_if_missing=False,
    )  # fmt: skip


def test_missing_artifacts_without_training_are_named(tmp_path: Path, synth_data: Path) -> None:
    with pytest.raises(RepositoryError, match="missing SMAP_E-1, SMAP_A-1, tranad_sat1"):
        _build_without_training(tmp_path, synth_data, "E-1,A-1")
    # The sources a served repository needs were copied before the refusal.
    assert (tmp_path / "repository" / "configs" / "templates" / "python.pbtxt").is_file()
    assert (tmp_path / "repository" / "python" / "custom_logic" / "1" / "model.py").is_file()


def test_a_repository_built_again_takes_the_projects_templates_of_now(
    tmp_path: Path, synth_data: Path
) -> None:
    template = tmp_path / "repository" / "configs" / "templates" / "postprocessing.pbtxt"
    template.parent.mkdir(parents=True)
    template.write_text("# an earlier build's copy\n")
    with pytest.raises(RepositoryError, match="missing"):
        _build_without_training(tmp_path, synth_data, "E-1")
    source = SOURCE_REPOSITORY / "configs" / "templates" / "postprocessing.pbtxt"
    assert template.read_text() == source.read_text()


def test_build_command_prints_one_red_line_and_exits_1(tmp_path: Path, synth_data: Path) -> None:
    app = typer.Typer()
    app.command("build")(build_command)
    app.command("noop")(lambda: None)  # a second command keeps `build` a subcommand
    result = CliRunner().invoke(
        app,
        [
            "build",
            "--artifacts",
            str(tmp_path / "none"),
            "--repository",
            str(tmp_path / "repo"),
            "--data",
            str(synth_data),
            "--channels",
            "E-1",
            "--no-train",
        ],
    )
    assert result.exit_code == 1
    assert "expected trained artifacts, missing SMAP_E-1, tranad_sat1" in result.output
    assert "Traceback" not in result.output


def test_unknown_channel_is_refused(tmp_path: Path, synth_data: Path) -> None:
    with pytest.raises(DataError, match="Z-42"):
        build_repository(tmp_path / "a", tmp_path / "r", synth_data, channels="Z-42")


def test_repository_size_counts_every_file(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x").write_bytes(b"12345")
    (tmp_path / "y").write_bytes(b"123")
    assert repository_size(tmp_path) == 8


def test_baseline_stays_below_a_degenerate_threshold(caplog) -> None:
    scores = np.random.default_rng(0).normal(size=400)
    median = float(np.median(scores))
    assert _baseline_of("tranad", scores, median + 1.0) == median
    assert _baseline_of("tranad", scores, median - 0.5) < median - 0.5
    assert "not above its median training score" in caplog.text
