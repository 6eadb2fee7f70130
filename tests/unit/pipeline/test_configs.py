"""The custom_logic config and the checked-in configs of the three Python models."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from satwatch.pipeline.configs import EVENT_LOG_VARIABLE, event_log_path
from satwatch.repository.build import SOURCE_REPOSITORY, write_python_configs
from satwatch.repository.config import find_tensor, load_config, parameter_dict
from satwatch.repository.seed import custom_logic_config


def test_custom_logic_takes_channel_and_raw_input_and_passes_every_state_back() -> None:
    config = custom_logic_config(SOURCE_REPOSITORY, {"webhook_url": "http://127.0.0.1:1/x"})
    required = [t.name for t in config.input if not t.optional]
    assert required == ["channel_id", "raw_input"]
    for state in ("encoder_state", "decoder_state", "context", "post_state"):
        assert find_tensor(config.input, state).optional
        assert find_tensor(config.output, f"{state}_out") is not None
    parameters = parameter_dict(config)
    assert parameters["webhook_url"] == "http://127.0.0.1:1/x"
    assert "fusion" not in parameters  # postprocessing's setting, in its own template only


def test_checked_in_python_configs_are_what_the_builder_writes(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(SOURCE_REPOSITORY / "configs", tmp_path / "configs")
    write_python_configs(tmp_path)
    for name in ("preprocessing", "postprocessing", "custom_logic"):
        written = load_config(tmp_path / "python" / name / "config.pbtxt")
        assert written == load_config(SOURCE_REPOSITORY / "python" / name / "config.pbtxt"), name
        assert not (tmp_path / "python" / name / "configs").exists()  # already a CPU config


def test_event_log_path_defaults_beside_the_versions_and_resolves_relative_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(EVENT_LOG_VARIABLE, raising=False)
    model_dir = Path("/repo/python/custom_logic")
    assert event_log_path({}, model_dir) == model_dir / "events.db"
    assert event_log_path({"event_log": "logs/e.db"}, model_dir) == model_dir / "logs/e.db"
    assert event_log_path({"event_log": "/var/x.db"}, model_dir) == Path("/var/x.db")


def test_the_environment_moves_the_event_log_off_a_read_only_repository(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(EVENT_LOG_VARIABLE, "/var/lib/satwatch/events.db")
    model_dir = Path("/models/python/custom_logic")
    assert event_log_path({}, model_dir) == Path("/var/lib/satwatch/events.db")
    # The config still wins: it is the model's own setting.
    assert event_log_path({"event_log": "/var/x.db"}, model_dir) == Path("/var/x.db")


def test_custom_logic_returns_each_detectors_own_score_and_decision() -> None:
    config = custom_logic_config(SOURCE_REPOSITORY)
    for detector in ("omni", "tranad"):
        score = find_tensor(config.output, f"{detector}_score")
        detected = find_tensor(config.output, f"{detector}_detected")
        assert score is not None and detected is not None, detector
        assert (score.data_type, list(score.dims)) == (mc.TYPE_FP32, [-1])
        assert (detected.data_type, list(detected.dims)) == (mc.TYPE_BOOL, [-1])
