"""Targets: which model a chunk goes to, and which channels each can serve."""

from __future__ import annotations

import pytest

from satwatch.client.targets import (
    DetectorTarget,
    PipelineTarget,
    StepsTarget,
    make_target,
    subsystem_for,
)
from satwatch.exceptions import ClientError


def test_model_names_map_to_their_targets() -> None:
    assert isinstance(make_target("custom_logic"), PipelineTarget)
    assert isinstance(make_target("multi_detector", "2"), PipelineTarget)
    assert make_target("multi_detector", "2").version == "2"
    assert make_target("steps").models("A-1") == [
        "preprocessing",
        "SMAP_A-1",
        "tranad_sat1",
        "nearest_SMAP_A-1",
        "predictor_SMAP_A-1",
        "postprocessing",
    ]
    assert isinstance(make_target("steps"), StepsTarget)
    tranad = make_target("tranad_sat1")
    assert isinstance(tranad, DetectorTarget) and tranad.detectors == ("tranad",)
    assert make_target("SMAP_D-3").models("D-3") == ["preprocessing", "SMAP_D-3"]
    assert make_target("nearest_SMAP_D-3").detectors == ("nearest",)
    assert make_target("predictor_SMAP_D-3").detectors == ("predictor",)
    with pytest.raises(ClientError, match="expected one of custom_logic.*got 'resnet'"):
        make_target("resnet")


def test_the_ensembles_refuse_channels_other_than_e1() -> None:
    make_target("anomaly_pipeline").check_channel("E-1")
    make_target("custom_logic").check_channel("A-1")
    with pytest.raises(ClientError, match="'multi_detector' is wired to channel E-1.*'A-1'"):
        make_target("multi_detector").check_channel("A-1")


def test_a_channel_detector_scores_its_own_channel_only() -> None:
    make_target("SMAP_E-2").check_channel("E-2")
    make_target("tranad_sat1").check_channel("P-7")
    with pytest.raises(
        ClientError, match="'SMAP_E-2' scores one channel only.*not 'A-1'.*SMAP_A-1"
    ):
        make_target("SMAP_E-2").check_channel("A-1")


def test_subsystems_come_from_the_server_or_the_channel_name() -> None:
    assert subsystem_for("E-1") == "EPS"
    assert subsystem_for("E-1", "Power") == "Power"
