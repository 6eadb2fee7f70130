"""Repository validation: a valid repository passes; copies broken on purpose name the problem."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from satwatch.repository.compare import compare_onnx
from satwatch.repository.config import load_config, tensor, write_config
from satwatch.repository.signatures import onnx_signature
from satwatch.repository.validate import validate_model, validate_repository

from .conftest import PROJECT_REPOSITORY, make_detector_onnx

SCRIPT = PROJECT_REPOSITORY / "scripts" / "validate_models.sh"


def _messages(repository: Path) -> list[str]:
    return [str(problem) for problem in validate_repository(repository)]


def _edit(path: Path, change) -> None:  # noqa: ANN001 - a callable changing the config
    config = load_config(path)
    change(config)
    write_config(config, path)


def test_small_repository_is_valid(small_repository: Path) -> None:
    assert _messages(small_repository) == []


def test_wrong_dims_are_reported_with_the_config_file(small_repository: Path) -> None:
    config_path = small_repository / "onnx" / "SMAP_E-1" / "config.pbtxt"
    _edit(config_path, lambda c: c.input[0].dims.__setitem__(1, 24))
    messages = _messages(small_repository)
    assert any(
        m.startswith(f"{config_path}:") and "'input_data'" in m and "[-1, 24]" in m
        for m in messages
    ), messages


def test_wrong_state_dims_of_the_cpu_variant_are_reported(small_repository: Path) -> None:
    cpu_path = small_repository / "onnx" / "SMAP_E-1" / "configs" / "cpu.pbtxt"
    _edit(cpu_path, lambda c: c.input[1].dims.__setitem__(1, 8))
    messages = _messages(small_repository)
    assert any(m.startswith(f"{cpu_path}:") and "other inputs/outputs" in m for m in messages)


def test_missing_model_file_is_reported(small_repository: Path) -> None:
    model = small_repository / "onnx" / "SMAP_E-1" / "1" / "model.onnx"
    model.unlink()
    messages = _messages(small_repository)
    assert any("version 1: expected model file" in m and str(model) in m for m in messages)


def test_model_without_version_folder_is_reported(small_repository: Path) -> None:
    shutil.rmtree(small_repository / "python" / "preprocessing" / "1")
    assert any("at least one version folder" in m for m in _messages(small_repository))


def test_ensemble_tensor_nobody_produces_is_reported(small_repository: Path) -> None:
    path = small_repository / "ensemble" / "multi_detector" / "config.pbtxt"

    def rewire(config) -> None:  # noqa: ANN001
        config.ensemble_scheduling.step[3].input_map["score2"] = "ghost_score"

    _edit(path, rewire)
    messages = _messages(small_repository)
    assert any(
        m.startswith(f"{path}:") and "'ghost_score', which no ensemble input or step produces" in m
        for m in messages
    ), messages


def test_ensemble_map_key_unknown_to_the_model_is_reported(small_repository: Path) -> None:
    path = small_repository / "ensemble" / "anomaly_pipeline" / "config.pbtxt"

    def rename(config) -> None:  # noqa: ANN001
        step = config.ensemble_scheduling.step[1]
        step.input_map["data"] = step.input_map.pop("input_data")

    _edit(path, rename)
    messages = _messages(small_repository)
    assert any("input_map key 'data' is not an input of SMAP_E-1" in m for m in messages)
    assert any("required input 'input_data' is not mapped" in m for m in messages)


def test_ensemble_output_nobody_produces_is_reported(small_repository: Path) -> None:
    path = small_repository / "ensemble" / "anomaly_pipeline" / "config.pbtxt"
    _edit(path, lambda c: c.output.append(c.output[0].__class__(name="extra", data_type=11)))
    assert any(
        "ensemble output 'extra' is produced by no step" in m for m in _messages(small_repository)
    )


def test_ensemble_step_naming_a_missing_model_is_reported(small_repository: Path) -> None:
    shutil.rmtree(small_repository / "python" / "tranad_sat1")
    messages = _messages(small_repository)
    assert any("no model 'tranad_sat1' in the repository" in m for m in messages)


def test_duplicated_name_across_backend_folders_is_reported(small_repository: Path) -> None:
    source = small_repository / "python" / "preprocessing"
    duplicate = small_repository / "python" / "SMAP_E-1"
    shutil.copytree(source, duplicate)
    _edit(duplicate / "config.pbtxt", lambda c: setattr(c, "name", "SMAP_E-1"))
    messages = _messages(small_repository)
    assert any(
        "model name 'SMAP_E-1' is also used by" in m and "onnx/SMAP_E-1/config.pbtxt" in m
        for m in messages
    ), messages


def test_unparsable_config_is_reported_with_its_line(small_repository: Path) -> None:
    path = small_repository / "python" / "postprocessing" / "config.pbtxt"
    path.write_text('name: "postprocessing"\nbackend: "python"\nmax_batch_size: "zero"\n')
    messages = [m for m in _messages(small_repository) if m.startswith(f"{path}:")]
    assert len(messages) == 1
    assert messages[0].split(": ", 1)[1].startswith("3:")  # the line of the bad value
    assert "zero" in messages[0]


def test_name_differing_from_folder_is_reported(small_repository: Path) -> None:
    path = small_repository / "python" / "preprocessing" / "config.pbtxt"
    _edit(path, lambda c: setattr(c, "name", "prepro"))
    assert any(
        "name 'prepro' differs from the folder name" in m for m in _messages(small_repository)
    )


def test_torchscript_input_not_in_forward_is_reported(small_repository: Path) -> None:
    path = small_repository / "pytorch" / "tranad_sat1_core" / "config.pbtxt"
    _edit(path, lambda c: setattr(c.input[1], "name", "history"))
    messages = _messages(small_repository)
    assert any(
        "input 'history' is not an argument of forward(input_data, context)" in m for m in messages
    )


def test_compare_onnx_adds_the_batch_axis_when_batching(tmp_path: Path) -> None:
    signature = onnx_signature(make_detector_onnx(tmp_path / "m.onnx"))
    config = load_config(PROJECT_REPOSITORY / "configs" / "templates" / "onnx.pbtxt")
    config.input.append(tensor("encoder_state", "FP32", [1, 4], optional=True))
    config.input.append(tensor("decoder_state", "FP32", [1, 4], optional=True))
    assert compare_onnx(config, signature) == []
    config.max_batch_size = 8  # [-1, 25] becomes [-1, -1, 25]: no longer the graph's rank
    assert any("with the batch axis" in m for m in compare_onnx(config, signature))


def test_validate_model_checks_one_folder(small_repository: Path) -> None:
    assert validate_model(small_repository / "onnx" / "SMAP_E-1") == []
    (small_repository / "onnx" / "SMAP_E-1" / "1" / "model.onnx").unlink()
    assert len(validate_model(small_repository / "onnx" / "SMAP_E-1")) == 1


def test_validate_models_script_fails_naming_the_problem(small_repository: Path) -> None:
    (small_repository / "onnx" / "SMAP_E-1" / "1" / "model.onnx").unlink()
    env = {**os.environ, "PYTHON": sys.executable, "COLUMNS": "300"}
    env.pop("SATWATCH_REPOSITORY", None)
    broken = subprocess.run(
        ["bash", str(SCRIPT), "--repository", str(small_repository)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert broken.returncode == 1
    assert "expected model file" in broken.stderr
    assert "1 problem(s)" in broken.stderr


def test_torchscript_inputs_out_of_forward_order_are_reported(small_repository: Path) -> None:
    path = small_repository / "pytorch" / "tranad_sat1_core" / "config.pbtxt"

    def swap(config) -> None:  # noqa: ANN001
        first, second = config.input[0].__deepcopy__(), config.input[1].__deepcopy__()
        del config.input[:]
        config.input.extend([second, first])

    _edit(path, swap)
    cpu = small_repository / "pytorch" / "tranad_sat1_core" / "configs" / "cpu.pbtxt"
    _edit(cpu, swap)
    messages = _messages(small_repository)
    assert any("not in the order of forward(input_data, context)" in m for m in messages), messages


def test_torchscript_output_type_differing_from_config_is_reported(small_repository: Path) -> None:
    for path in (
        small_repository / "pytorch" / "tranad_sat1_core" / "config.pbtxt",
        small_repository / "pytorch" / "tranad_sat1_core" / "configs" / "cpu.pbtxt",
    ):
        _edit(path, lambda c: setattr(c.output[2], "data_type", c.output[1].data_type))
    messages = _messages(small_repository)
    assert any(
        "output 'anomaly_detected': config says FP32, forward() returns torch.bool" in m
        for m in messages
    ), messages


def test_torchscript_output_shape_differing_from_config_is_reported(small_repository: Path) -> None:
    for path in (
        small_repository / "pytorch" / "tranad_sat1_core" / "config.pbtxt",
        small_repository / "pytorch" / "tranad_sat1_core" / "configs" / "cpu.pbtxt",
    ):
        _edit(path, lambda c: c.output[3].dims.__setitem__(0, 10))
    messages = _messages(small_repository)
    assert any("output 'context_out': config dims [10, 25]" in m for m in messages), messages
