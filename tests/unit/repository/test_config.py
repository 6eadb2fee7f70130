"""Config files through Triton's ModelConfig schema: round trips, errors, templates, CPU form."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from satwatch.exceptions import RepositoryError
from satwatch.repository.config import (
    KINDS,
    config_from_template,
    cpu_variant,
    data_type,
    load_common,
    load_config,
    parse_config,
    tensor,
    write_config,
    write_model_configs,
)

from .conftest import ASSETS, PROJECT_REPOSITORY

VALID = sorted(ASSETS.glob("valid_*.pbtxt"))
INVALID = sorted(ASSETS.glob("invalid_*.pbtxt"))


@pytest.mark.parametrize("asset", VALID, ids=lambda p: p.stem)
def test_valid_config_round_trips_through_write_and_load(asset: Path, tmp_path: Path) -> None:
    config = load_config(asset)
    written = write_config(config, tmp_path / "config.pbtxt")
    assert load_config(written) == config
    assert config.name  # something was read, not an empty message


def test_valid_onnx_asset_reads_the_fields_triton_would() -> None:
    config = load_config(ASSETS / "valid_onnx_config.pbtxt")
    assert [t.name for t in config.input] == ["input_data", "encoder_state"]
    assert list(config.input[0].dims) == [-1, 25]
    assert config.input[1].optional
    assert config.output[2].data_type == mc.TYPE_BOOL
    assert config.version_policy.latest.num_versions == 2


@pytest.mark.parametrize("asset", INVALID, ids=lambda p: p.stem)
def test_invalid_config_raises_error_naming_file_and_line(asset: Path) -> None:
    with pytest.raises(RepositoryError) as error:
        load_config(asset)
    message = str(error.value)
    assert message.startswith(f"{asset}:")
    line = int(message.split(":")[1])
    assert 1 <= line <= len(asset.read_text().splitlines()) + 1


def test_unknown_field_error_names_the_field() -> None:
    with pytest.raises(RepositoryError, match="dimensions"):
        load_config(ASSETS / "invalid_unknown_field.pbtxt")


def test_missing_config_file_raises_repository_error(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="cannot read"):
        load_config(tmp_path / "absent.pbtxt")


def test_written_dims_use_the_short_list_form(tmp_path: Path) -> None:
    config = mc.ModelConfig(name="m", input=[tensor("x", "FP32", [-1, 25])])
    text = write_config(config, tmp_path / "c.pbtxt").read_text()
    assert "dims: [-1, 25]" in text
    assert parse_config(text) == config


def test_data_type_accepts_short_and_long_names_and_refuses_unknown() -> None:
    assert data_type("FP32") == data_type("TYPE_FP32") == mc.TYPE_FP32
    assert data_type("bool") == mc.TYPE_BOOL
    with pytest.raises(RepositoryError, match="FLOAT32"):
        data_type("FLOAT32")


@pytest.mark.parametrize("kind", KINDS)
def test_every_template_parses_and_fills(kind: str) -> None:
    config = config_from_template(kind, repository=PROJECT_REPOSITORY, name=f"m_{kind}")
    assert config.name == f"m_{kind}"
    assert config.backend or config.platform
    assert config.max_batch_size == 0


def test_common_dynamic_batching_goes_to_models_but_not_ensembles() -> None:
    onnx = config_from_template("onnx", repository=PROJECT_REPOSITORY, name="a")
    ensemble = config_from_template("ensemble", repository=PROJECT_REPOSITORY, name="b")
    assert onnx.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert ensemble.WhichOneof("scheduling_choice") is None


def test_settings_live_in_the_postprocessing_template_only() -> None:
    common = load_common(PROJECT_REPOSITORY)
    assert not common.parameters  # nothing every model reads
    post = config_from_template("postprocessing", repository=PROJECT_REPOSITORY, name="p")
    assert post.parameters["threshold_policy"].string_value == "dynamic"
    assert post.WhichOneof("scheduling_choice") == "dynamic_batching"  # common's
    python = config_from_template("python", repository=PROJECT_REPOSITORY, name="q")
    assert not python.parameters


def test_fields_override_template_and_update_parameters() -> None:
    config = config_from_template(
        "postprocessing",
        repository=PROJECT_REPOSITORY,
        name="postprocessing",
        inputs=[tensor("score1", "FP32", [-1])],
        parameters={"fusion": "vote"},
        num_versions=3,
    )
    assert [t.name for t in config.input] == ["score1"]
    assert config.parameters["fusion"].string_value == "vote"
    assert config.parameters["merge_gap"].string_value == "100"  # the template's other keys
    assert config.version_policy.latest.num_versions == 3


def test_replacing_a_templates_tensors_drops_the_templates_ones() -> None:
    config = config_from_template(
        "onnx", repository=PROJECT_REPOSITORY, name="x", input=[tensor("a", "FP32", [3])]
    )
    assert [t.name for t in config.input] == ["a"]
    assert [t.name for t in config.output] == [
        "reconstruction",
        "anomaly_score",
        "anomaly_detected",
    ]


def test_unknown_field_or_kind_is_refused() -> None:
    with pytest.raises(RepositoryError, match="max_batch"):
        config_from_template("onnx", repository=PROJECT_REPOSITORY, max_batch=4)
    with pytest.raises(RepositoryError, match="template kind"):
        config_from_template("tflite", repository=PROJECT_REPOSITORY)


def test_cpu_variant_of_onnx_runs_on_cpu_with_thread_parameters() -> None:
    config = load_config(ASSETS / "valid_onnx_config.pbtxt")
    variant = cpu_variant(config, intra_op_threads=2)
    assert variant.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert list(variant.instance_group[0].gpus) == []
    assert variant.parameters["intra_op_thread_count"].string_value == "2"
    assert variant.parameters["inter_op_thread_count"].string_value == "1"
    assert list(variant.input) == list(config.input)
    assert variant.version_policy == config.version_policy
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU  # input untouched


def test_cpu_variant_of_pytorch_uses_the_libtorch_thread_keys() -> None:
    config = config_from_template("pytorch", repository=PROJECT_REPOSITORY, name="t")
    variant = cpu_variant(config)
    assert variant.parameters["INTRA_OP_THREAD_COUNT"].string_value == "1"
    assert variant.parameters["INFERENCE_MODE"].string_value == "true"


def test_cpu_variant_of_tensorrt_is_refused() -> None:
    config = config_from_template("tensorrt", repository=PROJECT_REPOSITORY, name="t")
    with pytest.raises(RepositoryError, match="GPU only"):
        cpu_variant(config)


def test_write_model_configs_writes_cpu_file_only_where_it_differs(tmp_path: Path) -> None:
    onnx = config_from_template("onnx", repository=PROJECT_REPOSITORY, name="o")
    python = config_from_template("python", repository=PROJECT_REPOSITORY, name="p")
    assert len(write_model_configs(tmp_path / "o", onnx)) == 2
    assert load_config(tmp_path / "o" / "configs" / "cpu.pbtxt") == cpu_variant(onnx)
    assert len(write_model_configs(tmp_path / "p", python)) == 1
    assert not (tmp_path / "p" / "configs").exists()
