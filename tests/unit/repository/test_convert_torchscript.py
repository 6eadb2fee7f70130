"""convert_torchscript: a TranAD checkpoint becomes TorchScript that fits the pytorch config."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from satwatch.commands.repository import COMMANDS
from satwatch.repository.compare import compare_torchscript, probe_torchscript
from satwatch.repository.seed import tranad_core_config
from satwatch.repository.signatures import torchscript_signature

from .conftest import PROJECT_REPOSITORY

torchscript = pytest.importorskip("satwatch.export.torchscript")


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """An untrained TranAD saved as ``satwatch train`` saves one."""
    from satwatch.detectors import tranad
    from satwatch.detectors.artifacts import save_trained

    params = tranad.Params(epochs=1)
    model = tranad.build_model(params, 25).eval()
    card = {"detector": "tranad", "params": params.to_dict(), "n_features": 25, "threshold": 0.5}
    return save_trained(tmp_path / "artifacts" / "tranad" / "tranad_sat1", model, card)


def test_convert_command_writes_torchscript_matching_the_config(
    checkpoint: Path, tmp_path: Path
) -> None:
    app = typer.Typer()
    app.command()(COMMANDS["convert-torchscript"])
    output = tmp_path / "pytorch" / "tranad_sat1_core" / "1" / "model.pt"
    result = CliRunner().invoke(app, ["--checkpoint", str(checkpoint), "--output", str(output)])
    assert result.exit_code == 0, result.output
    config = tranad_core_config(repository=PROJECT_REPOSITORY)
    assert compare_torchscript(config, torchscript_signature(output)) == []
    assert probe_torchscript(config, output) == []


def test_convert_command_refuses_a_folder_without_a_card(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(COMMANDS["convert-torchscript"])
    (tmp_path / "empty").mkdir()
    args = ["--checkpoint", str(tmp_path / "empty"), "--output", str(tmp_path / "x.pt")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "card" in result.output
