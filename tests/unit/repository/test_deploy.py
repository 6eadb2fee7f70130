"""deploy_onnx: versions, config from the graph, state inputs optional, undo when invalid.

Also what it refuses before writing anything: unsafe names, another model's name or folder,
and files that are not ONNX models.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from satwatch.commands.repository import COMMANDS
from satwatch.exceptions import ModelError, RepositoryError
from satwatch.onnx_defaults import missing_defaults
from satwatch.repository.config import load_config
from satwatch.repository.deploy import check_onnx_file, deploy_onnx
from satwatch.repository.validate import validate_repository
from satwatch.server.sample_repository import write_config

from .conftest import PROJECT_REPOSITORY, make_detector_onnx


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "triton-repository"
    shutil.copytree(PROJECT_REPOSITORY / "configs", root / "configs")
    return root


def test_deploy_creates_version_1_then_2_with_num_versions(
    repository: Path, tmp_path: Path
) -> None:
    onnx_file = make_detector_onnx(tmp_path / "exported.onnx", state_defaults=False)
    first = deploy_onnx(onnx_file, "SMAP_A-1", repository=repository, keep=2)
    second = deploy_onnx(onnx_file, "SMAP_A-1", repository=repository, keep=2)
    model_dir = repository / "onnx" / "SMAP_A-1"
    assert (first.version, second.version) == (1, 2)
    # The deployed copy gives its state inputs zero defaults, so a plain request runs on the
    # native backend; the file given is left as it was.
    states = ["encoder_state", "decoder_state"]
    assert missing_defaults(model_dir / "1" / "model.onnx", states) == []
    assert missing_defaults(onnx_file, states) == states
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


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*"))


@pytest.mark.parametrize(
    "name", ["../escape", "/abs/olute", "a/b", "a\\b", "", "..", ".x", "a\x00"]
)
def test_deploy_refuses_an_unsafe_name_and_writes_nothing(
    repository: Path, tmp_path: Path, name: str
) -> None:
    onnx_file = make_detector_onnx(tmp_path / "exported.onnx")
    before = _files(tmp_path)
    with pytest.raises(RepositoryError, match="model name"):
        deploy_onnx(onnx_file, name, repository=repository)
    assert _files(tmp_path) == before


def test_deploy_refuses_a_name_another_backend_folder_uses(
    repository: Path, tmp_path: Path
) -> None:
    taken = repository / "python" / "SMAP_A-1"
    write_config(taken, {"name": "SMAP_A-1", "backend": "python"})
    with pytest.raises(RepositoryError, match="already used by") as error:
        deploy_onnx(
            make_detector_onnx(tmp_path / "exported.onnx"), "SMAP_A-1", repository=repository
        )
    assert str(taken) in str(error.value)
    assert not (repository / "onnx").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "SMAP_A-2", "backend": "onnxruntime"}, "names model 'SMAP_A-2'"),
        ({"name": "SMAP_A-1", "backend": "python"}, "'python' model: expected 'onnxruntime'"),
    ],
)
def test_deploy_refuses_a_folder_that_holds_another_model(
    repository: Path, tmp_path: Path, config: dict, message: str
) -> None:
    model_dir = repository / "onnx" / "SMAP_A-1"
    config_file = write_config(model_dir, config)
    before = config_file.read_text()
    with pytest.raises(RepositoryError, match=message):
        deploy_onnx(
            make_detector_onnx(tmp_path / "exported.onnx"), "SMAP_A-1", repository=repository
        )
    assert config_file.read_text() == before
    assert _files(model_dir) == [config_file]


def _bad_onnx(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.onnx"
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(11).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "truncated":
        whole = make_detector_onnx(folder / "whole.onnx").read_bytes()
        path.write_bytes(whole[: len(whole) * 2 // 3])
    return path  # "missing": never written


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("random bytes", "not an ONNX model"),
        ("empty", "got an empty file"),
        ("directory", "got a directory"),
        ("missing", "got no such file"),
        ("truncated", r"not an ONNX model \(a truncated file"),
    ],
)
def test_deploy_refuses_a_file_that_is_not_an_onnx_model_and_writes_nothing(
    repository: Path, tmp_path: Path, kind: str, reason: str
) -> None:
    bad = _bad_onnx(kind, tmp_path)
    with pytest.raises(ModelError, match=reason) as error:
        deploy_onnx(bad, "SMAP_A-1", repository=repository)
    assert str(bad) in str(error.value)
    assert not (repository / "onnx").exists()


def test_a_graph_that_fails_the_onnx_checker_is_refused(tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(make_detector_onnx(tmp_path / "whole.onnx")))
    del model.opset_import[:]
    onnx.save(model, str(tmp_path / "no_opset.onnx"))
    with pytest.raises(ModelError, match="not a valid ONNX model: .*opset"):
        check_onnx_file(tmp_path / "no_opset.onnx")


def test_deploy_refuses_a_version_folder_symlinked_out_of_the_model(
    repository: Path, tmp_path: Path
) -> None:
    onnx_file = make_detector_onnx(tmp_path / "exported.onnx")
    deploy_onnx(onnx_file, "SMAP_A-1", repository=repository)
    (tmp_path / "outside").mkdir()
    (repository / "onnx" / "SMAP_A-1" / "2").symlink_to(tmp_path / "outside")
    with pytest.raises(RepositoryError, match="outside"):
        deploy_onnx(onnx_file, "SMAP_A-1", repository=repository, version=2, overwrite=True)
    assert list((tmp_path / "outside").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "onnx_name", "expected"),
    [
        ("../escape", "exported.onnx", "model name '../escape'"),
        ("a[/]", "exported.onnx", "model name 'a[/]'"),
        ("SMAP_A-1", "missing.onnx", "expected an ONNX model file, got no such file"),
    ],
)
def test_deploy_command_says_what_is_refused_in_one_line_and_exits_1(
    repository: Path, tmp_path: Path, name: str, onnx_name: str, expected: str
) -> None:
    import typer

    app = typer.Typer()
    app.command()(COMMANDS["deploy-onnx"])
    make_detector_onnx(tmp_path / "exported.onnx")
    args = ["--onnx", str(tmp_path / onnx_name), "--name", name, "--repository", str(repository)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    # rich wraps long lines to the terminal; one message, however it is folded.
    output = " ".join(result.output.split())
    assert output.startswith("error:") and expected in output, result.output
    assert "Traceback" not in output
    assert not (repository / "onnx").exists()
