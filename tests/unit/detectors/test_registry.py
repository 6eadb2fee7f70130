"""The detector registry: names, lookups and what registering refuses."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from satwatch.detectors import registry
from satwatch.exceptions import ModelError


def test_the_built_in_detectors_in_fused_score_order() -> None:
    assert registry.kinds()[:2] == ("omni", "tranad")
    assert registry.detector("omni").served_name("E-1") == "SMAP_E-1"
    assert registry.detector("omni").served_name("M-1", "MSL") == "MSL_M-1"
    assert registry.detector("tranad").served_name() == "tranad_sat1"
    assert registry.detector("omni").per_channel and not registry.detector("tranad").per_channel


def test_a_served_model_name_finds_its_detector() -> None:
    assert registry.detector_of_model("SMAP_E-1").kind == "omni"
    assert registry.detector_of_model("tranad_sat1").kind == "tranad"
    assert registry.detector_of_model("SMAP_") is None
    assert registry.detector_of_model("custom_logic") is None


def test_a_per_channel_name_needs_a_channel() -> None:
    with pytest.raises(ModelError, match="needs a channel"):
        registry.detector("omni").served_name()


def test_unknown_kinds_and_taken_names_are_refused() -> None:
    with pytest.raises(ModelError, match=r"unknown detector 'lstm'.*omni"):
        registry.detector("lstm")
    with pytest.raises(ModelError, match="already registered"):
        registry.register(registry.detector("omni"))
    with pytest.raises(ModelError, match="already registered"):
        registry.register(dataclasses.replace(registry.detector("omni"), kind="fused"))
    with pytest.raises(ModelError, match="taken"):
        registry.register(dataclasses.replace(registry.detector("tranad"), kind="other"))
    with pytest.raises(ModelError, match="backend expected one of"):
        dataclasses.replace(registry.detector("omni"), kind="x", backend="tensorflow")


def test_registering_adds_after_the_built_ins_and_unregistering_removes() -> None:
    extra = dataclasses.replace(
        registry.detector("omni"), kind="range", name_pattern="range_{spacecraft}_{channel}"
    )
    registry.register(extra)
    try:
        assert registry.kinds()[-1] == "range"
        assert registry.detector_of_model("range_SMAP_E-1") is extra
    finally:
        registry.unregister("range")
    assert "range" not in registry.kinds()


def test_the_registry_loads_no_ml_library() -> None:
    code = "import sys, satwatch.detectors.registry; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_models_are_named_after_their_spacecraft() -> None:
    omni, tranad = registry.detector("omni"), registry.detector("tranad")
    assert omni.served_name("C-1", "MSL") == "MSL_C-1"
    assert tranad.served_name(spacecraft="SMAP") == "tranad_sat1"  # the seed's name
    assert tranad.served_name(spacecraft="MSL") == "tranad_msl"
    assert tranad.file_model("tranad_msl") == "tranad_msl_core"
    assert tranad.front_folder == "tranad_sat1"
    assert registry.detector_of_model("tranad_msl", "MSL") is tranad
    assert registry.detector_of_model("MSL_C-1", "MSL") is omni
    assert registry.detector_of_model("nearest_MSL_C-1", "MSL").kind == "nearest"
