"""The seed's ensembles: built from the step configs, states carried, checked-in files current."""

from __future__ import annotations

import pytest

from satwatch.exceptions import RepositoryError
from satwatch.repository.config import load_config, output, tensor
from satwatch.repository.ensembles import pipeline_ensemble, seed_ensembles, state_pairs
from satwatch.repository.seed import seed_model_configs

from .conftest import PROJECT_REPOSITORY


@pytest.fixture(scope="module")
def configs() -> dict:
    return seed_model_configs(encoder_hidden=500, decoder_hidden=500, repository=PROJECT_REPOSITORY)


def test_checked_in_ensembles_equal_the_ones_built_from_the_contracts(configs: dict) -> None:
    built = seed_ensembles(configs, PROJECT_REPOSITORY)
    for name, config in built.items():
        assert load_config(PROJECT_REPOSITORY / "ensemble" / name / "config.pbtxt") == config, name
        assert (PROJECT_REPOSITORY / "ensemble" / name / "1").is_dir()


def test_state_pairs_are_optional_inputs_with_an_out_twin(configs: dict) -> None:
    pairs = state_pairs(configs["SMAP_E-1"])
    assert [(i.name, o.name) for i, o in pairs] == [
        ("encoder_state", "encoder_state_out"),
        ("decoder_state", "decoder_state_out"),
    ]
    assert state_pairs(configs["preprocessing"]) == []  # channel_id has no _out twin


def test_multi_detector_follows_the_seed_graph(configs: dict) -> None:
    ensemble = seed_ensembles(configs, PROJECT_REPOSITORY)["multi_detector"]
    steps = {step.model_name: step for step in ensemble.ensemble_scheduling.step}
    assert list(steps) == ["preprocessing", "SMAP_E-1", "tranad_sat1", "postprocessing"]
    assert steps["preprocessing"].output_map["normalized"] == "preprocessed_data"
    assert steps["SMAP_E-1"].input_map["input_data"] == "preprocessed_data"
    assert steps["SMAP_E-1"].output_map["anomaly_score"] == "onnx_score"
    assert steps["tranad_sat1"].output_map["anomaly_score"] == "pytorch_score"
    assert dict(steps["postprocessing"].input_map) == {
        "score1": "onnx_score",
        "score2": "pytorch_score",
        "post_state": "post_state",
        "end_of_stream": "end_of_stream",
    }
    flag = next(t for t in ensemble.input if t.name == "end_of_stream")
    assert flag.optional and list(flag.dims) == [1]  # passed on, no _out twin
    outputs = [t.name for t in ensemble.output]
    assert outputs[:3] == ["final_result", "decision", "events"]
    assert {"encoder_state_out", "decoder_state_out", "context_out"} <= set(outputs)


def test_ensemble_state_inputs_are_optional_wildcards(configs: dict) -> None:
    ensemble = seed_ensembles(configs, PROJECT_REPOSITORY)["anomaly_pipeline"]
    inputs = {t.name: t for t in ensemble.input}
    assert not inputs["raw_input"].optional
    assert list(inputs["raw_input"].dims) == [-1, 25]
    assert inputs["encoder_state"].optional
    assert list(inputs["encoder_state"].dims) == [-1, -1]  # independent of the hidden size
    assert "context" not in inputs  # TranAD is not in this pipeline


def test_clashing_state_names_are_refused(configs: dict) -> None:
    other = configs["SMAP_E-1"].__deepcopy__()
    other.name = "SMAP_E-2"
    with pytest.raises(RepositoryError, match="encoder_state"):
        pipeline_ensemble(
            "clash",
            preprocessing=configs["preprocessing"],
            detectors=[(configs["SMAP_E-1"], "a"), (other, "b")],
            postprocessing=configs["postprocessing"],
            repository=PROJECT_REPOSITORY,
        )


def test_a_detector_without_anomaly_score_is_refused(configs: dict) -> None:
    detector = configs["SMAP_E-1"].__deepcopy__()
    del detector.output[:]
    detector.output.append(output("score", "FP32", [-1]))
    detector.input.append(tensor("x", "FP32", [1]))
    with pytest.raises(RepositoryError, match="anomaly_score"):
        pipeline_ensemble(
            "e",
            preprocessing=configs["preprocessing"],
            detectors=[(detector, "s")],
            postprocessing=configs["postprocessing"],
            repository=PROJECT_REPOSITORY,
        )
