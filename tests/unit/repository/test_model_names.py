"""Model names and target folders: no path traversal, no writing over another model."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from satwatch.commands.repository import COMMANDS
from satwatch.exceptions import RepositoryError
from satwatch.repository.names import check_model_name, check_model_target, model_folder
from satwatch.server.sample_repository import write_config

from .conftest import make_detector_onnx

ACCEPTED = ["SMAP_E-1", "SMAP_E-1_trt", "tranad_sat1", "M-6", "a", "9lives", "model.v2", "x" * 128]
REFUSED = [
    "",
    ".",
    "..",
    "../x",
    "a/../b",
    "/etc",
    "a/b",
    "a\\b",
    "..\\x",
    "a\x00b",
    ".hidden",
    "-rf",
    "_private",
    "a..b",
    "x" * 129,
    "a b",
    "caf\u00e9",
    "a[/]",
    "name\n",
    "a:b",
    "%2e%2e",
]


@pytest.mark.parametrize("name", ACCEPTED)
def test_acceptable_names_are_returned(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", REFUSED)
def test_unsafe_names_are_refused_naming_the_rule(name: str) -> None:
    with pytest.raises(RepositoryError, match="expected 1-128 letters") as error:
        check_model_name(name)
    assert repr(name) in str(error.value)


def test_a_name_that_is_no_string_is_refused() -> None:
    with pytest.raises(RepositoryError, match="model name None"):
        check_model_name(None)  # type: ignore[arg-type]


def _model(
    root: Path, folder: str, name: str, backend: str, config_name: str | None = None
) -> Path:
    model_dir = root / folder / name
    write_config(model_dir, {"name": config_name or name, "backend": backend})
    return model_dir


def test_model_folder_is_the_folder_in_the_backend_folder(tmp_path: Path) -> None:
    assert model_folder(tmp_path, "onnx", "SMAP_E-1") == tmp_path / "onnx" / "SMAP_E-1"
    _model(tmp_path, "onnx", "SMAP_E-1", "onnxruntime")
    assert model_folder(tmp_path, "onnx", "SMAP_E-1") == tmp_path / "onnx" / "SMAP_E-1"


def test_model_folder_refuses_an_unknown_backend_folder(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="expected one of onnx, tensorrt"):
        model_folder(tmp_path, "configs", "SMAP_E-1")


def test_a_name_used_in_another_backend_folder_is_refused_naming_where(tmp_path: Path) -> None:
    taken = _model(tmp_path, "python", "preprocessing", "python")
    with pytest.raises(RepositoryError, match="already used by") as error:
        model_folder(tmp_path, "onnx", "preprocessing")
    assert str(taken) in str(error.value)


def test_a_folder_whose_config_names_another_model_is_refused(tmp_path: Path) -> None:
    _model(tmp_path, "onnx", "SMAP_E-1", "onnxruntime", config_name="SMAP_E-2")
    with pytest.raises(RepositoryError, match="names model 'SMAP_E-2': expected 'SMAP_E-1'"):
        model_folder(tmp_path, "onnx", "SMAP_E-1")


def test_a_folder_whose_config_is_another_backend_is_refused(tmp_path: Path) -> None:
    _model(tmp_path, "onnx", "SMAP_E-1", "python")
    with pytest.raises(RepositoryError, match="'python' model: expected 'onnxruntime'"):
        model_folder(tmp_path, "onnx", "SMAP_E-1")


def test_a_folder_whose_config_does_not_parse_is_not_written_over(tmp_path: Path) -> None:
    (tmp_path / "onnx" / "SMAP_E-1").mkdir(parents=True)
    (tmp_path / "onnx" / "SMAP_E-1" / "config.pbtxt").write_text("max_batch_size: [oops\n")
    with pytest.raises(RepositoryError, match="refusing to write over it"):
        model_folder(tmp_path, "onnx", "SMAP_E-1")


def test_a_model_folder_symlinked_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "repo" / "onnx").mkdir(parents=True)
    (tmp_path / "repo" / "onnx" / "SMAP_E-1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RepositoryError, match="outside"):
        model_folder(tmp_path / "repo", "onnx", "SMAP_E-1")


def test_a_target_in_the_wrong_backend_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="tensorrt model belongs in a tensorrt/ folder"):
        check_model_target(tmp_path / "onnx" / "SMAP_E-1", "SMAP_E-1", "tensorrt")


def _invoke(command: str, args: list[str]) -> tuple[int, str]:
    """Run a repository command; return its exit code and output on one line (rich wraps)."""
    app = typer.Typer()
    app.command()(COMMANDS[command])
    result = CliRunner().invoke(app, args)
    return result.exit_code, " ".join(result.output.split())


def test_convert_torchscript_refuses_to_write_into_an_onnx_model(tmp_path: Path) -> None:
    model_dir = _model(tmp_path, "onnx", "SMAP_E-1", "onnxruntime")
    output = model_dir / "1" / "model.pt"
    code, output_text = _invoke(
        "convert-torchscript", ["--checkpoint", str(tmp_path), "--output", str(output)]
    )
    assert code == 1
    assert "belongs in a pytorch/ folder" in output_text
    assert "Traceback" not in output_text
    assert not output.exists()


def test_convert_torchscript_refuses_a_bad_model_folder_name(tmp_path: Path) -> None:
    output = tmp_path / "pytorch" / ".hidden" / "1" / "model.pt"
    code, output_text = _invoke(
        "convert-torchscript", ["--checkpoint", str(tmp_path), "--output", str(output)]
    )
    assert code == 1
    assert "model name '.hidden'" in output_text
    assert not output.parent.exists()


def test_convert_tensorrt_refuses_another_models_folder_before_building(tmp_path: Path) -> None:
    onnx_file = make_detector_onnx(tmp_path / "m.onnx")
    _model(tmp_path, "pytorch", "SMAP_E-1_trt", "pytorch")
    output = tmp_path / "tensorrt" / "SMAP_E-1_trt" / "1" / "model.plan"
    code, output_text = _invoke(
        "convert-tensorrt", ["--onnx", str(onnx_file), "--output", str(output)]
    )
    assert code == 1
    assert "already used by" in output_text
    assert not (tmp_path / "tensorrt").exists()


def test_convert_tensorrt_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage" * 16)
    output = tmp_path / "tensorrt" / "SMAP_E-1_trt" / "1" / "model.plan"
    code, output_text = _invoke("convert-tensorrt", ["--onnx", str(junk), "--output", str(output)])
    assert code == 1
    assert "not an ONNX model" in output_text
    assert not (tmp_path / "tensorrt").exists()
