"""deploy_onnx: versions, config from the graph, state inputs optional, undo when invalid."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from satwatch.exceptions import ModelError, RepositoryError
from satwatch.repository.cli import COMMANDS
from satwatch.repository.config import load_config
from satwatch.repository.deploy import deploy_onnx
from satwatch.repository.validate import validate_repository

from .conftest import PROJECT_REPOSITORY, make_detector_onnx


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "triton-repository"
    shutil.copytree(PROJECT_REPOSITORY / "configs", root / "configs")
    return root


def test_deploy_creates_version_1_then_2_with_num_versions(
    repository: Path, tmp_path: Path
) -> None:
    onnx_file = make_detector_onnx(tmp_path / "exported.onnx")
    first = deploy_onnx(onnx_file, "SMAP_A-1", repository=repository, keep=2)
    second = deploy_onnx(onnx_file, "SMAP_A-1", repository=repository, keep=2)
    model_dir = repository / "onnx" / "SMAP_A-1"
    assert (first.version, second.version) == (1, 2)
    assert (model_dir / "1" / "model.onnx").read_bytes() == onnx_file.read_bytes()
    assert (model_dir / "2" / "model.onnx").is_file()
    config = load_config(model_dir / "config.pbtxt")
    assert config.name == "SMAP_A-1"
    assert config.version_policy.latest.num_versions == 2
    assert {t.name: t.optional for t in config.input} == {
        "input_data": False,
        "encoder_state": True,
        "decoder_state": True,
    }
    assert [t.name for t in config.output][:3] == [
        "reconstruction",
        "anomaly_score",
        "anomaly_detected",
    ]
    cpu = load_config(model_dir / "configs" / "cpu.pbtxt")
    assert cpu.instance_group[0].kind == cpu.instance_group[0].KIND_CPU
    assert validate_repository(repository) == []


def test_deploy_refuses_an_existing_version_unless_forced(repository: Path, tmp_path: Path) -> None:
    onnx_file = make_detector_onnx(tmp_path / "exported.onnx")
    deploy_onnx(onnx_file, "SMAP_A-1", repository=repository)
    with pytest.raises(RepositoryError, match="already exists"):
        deploy_onnx(onnx_file, "SMAP_A-1", repository=repository, version=1)
    assert (
        deploy_onnx(onnx_file, "SMAP_A-1", repository=repository, version=1, overwrite=True).version
        == 1
    )


def test_deploy_refuses_a_state_input_with_dynamic_dims_and_writes_nothing(
    repository: Path, tmp_path: Path
) -> None:
    onnx_file = make_detector_onnx(tmp_path / "dynamic.onnx", dynamic_state=True)
    with pytest.raises(ModelError, match="encoder_state.*static dims"):
        deploy_onnx(onnx_file, "SMAP_A-1", repository=repository)
    assert not (repository / "onnx").exists()


def test_deploy_undoes_a_version_that_does_not_validate(repository: Path, tmp_path: Path) -> None:
    onnx_file = make_detector_onnx(tmp_path / "exported.onnx")
    deploy_onnx(onnx_file, "SMAP_A-1", repository=repository)
    before = (repository / "onnx" / "SMAP_A-1" / "config.pbtxt").read_text()
    # Version 1 stays on disk; a graph with other state sizes makes version 1 disagree.
    other = make_detector_onnx(tmp_path / "other.onnx", hidden=9)
    with pytest.raises(RepositoryError, match="undone"):
        deploy_onnx(other, "SMAP_A-1", repository=repository)
    assert not (repository / "onnx" / "SMAP_A-1" / "2").exists()
    assert (repository / "onnx" / "SMAP_A-1" / "config.pbtxt").read_text() == before


def test_deploy_command_prints_the_version_and_exits_1_on_error(
    repository: Path, tmp_path: Path
) -> None:
    import typer

    app = typer.Typer()
    app.command()(COMMANDS["deploy-onnx"])
    onnx_file = make_detector_onnx(tmp_path / "exported.onnx")
    args = ["--onnx", str(onnx_file), "--name", "SMAP_A-1", "--repository", str(repository)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "version 1" in result.output
    failed = CliRunner().invoke(app, [*args, "--version", "1"])
    assert failed.exit_code == 1
    assert "already exists" in failed.output
