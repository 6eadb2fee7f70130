"""The main job's glue: where telemetry comes from, when to build, the summary table."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper
from rich.console import Console

from satwatch.commands.demo import summary_table, telemetry_folder
from satwatch.data import SEED_CHANNELS, load_dataset
from satwatch.detectors import registry
from satwatch.onnx_defaults import add_zero_defaults
from satwatch.repository.build import SOURCE_REPOSITORY, is_built


def test_telemetry_found_is_used_as_it_is(synth_data: Path, tmp_path: Path) -> None:
    assert telemetry_folder(synth_data, synth_to=tmp_path / "synth") == synth_data
    assert not (tmp_path / "synth").exists()


def test_missing_telemetry_falls_back_to_a_synthetic_seed_set(tmp_path: Path) -> None:
    folder = telemetry_folder(tmp_path / "nowhere", synth_to=tmp_path / "synth")
    assert folder == tmp_path / "synth"
    assert load_dataset(folder).resolve_channels("seed") == list(SEED_CHANNELS)


def test_a_repository_counts_as_built_only_with_every_model_file(tmp_path: Path) -> None:
    channels = ["E-1", "A-1"]
    assert not is_built(tmp_path, channels)
    for channel in channels:
        path = tmp_path / "onnx" / f"SMAP_{channel}" / "1" / "model.onnx"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    assert not is_built(tmp_path, channels)
    tranad = tmp_path / "pytorch" / "tranad_sat1_core" / "1" / "model.pt"
    tranad.parent.mkdir(parents=True)
    tranad.write_bytes(b"x")
    assert not is_built(tmp_path, channels)
    for channel in channels:
        for detector in ("nearest", "predictor"):
            path = tmp_path / "onnx" / f"{detector}_SMAP_{channel}" / "1" / "model.onnx"
            path.parent.mkdir(parents=True)
            path.write_bytes(b"x")
    assert not is_built(tmp_path, channels)  # files that are not ONNX models


def _state_graph(path: Path, states: tuple[str, ...]) -> Path:
    """An ONNX graph passing input_data and each state through, states without defaults."""
    rows = helper.make_tensor_value_info("input_data", TensorProto.FLOAT, ["T", 25])
    ins = [rows] + [helper.make_tensor_value_info(s, TensorProto.FLOAT, [1, 2]) for s in states]
    outs = [helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["T", 25])]
    outs += [helper.make_tensor_value_info(f"{s}_out", TensorProto.FLOAT, [1, 2]) for s in states]
    nodes = [helper.make_node("Identity", ["input_data"], ["anomaly_score"])]
    nodes += [helper.make_node("Identity", [s], [f"{s}_out"]) for s in states]
    graph = helper.make_graph(nodes, "g", ins, outs)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, ir_version=8), str(path))
    return path


def _every_file(repository: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """E-1's served files (ONNX states without defaults) and the postprocessing config."""
    tranad = repository / "pytorch" / "tranad_sat1_core" / "1" / "model.pt"
    tranad.parent.mkdir(parents=True)
    tranad.write_bytes(b"x")
    files = []
    for detector in registry.detectors():
        if detector.backend == "onnx":
            folder = repository / "onnx" / detector.served_name("E-1") / "1"
            files.append((_state_graph(folder / "model.onnx", detector.states), detector.states))
    config = repository / "python" / "postprocessing" / "config.pbtxt"
    config.parent.mkdir(parents=True)
    shutil.copy(SOURCE_REPOSITORY / "python" / "postprocessing" / "config.pbtxt", config)
    return files


def test_a_repository_exported_without_state_defaults_is_built_again(tmp_path: Path) -> None:
    files = _every_file(tmp_path)
    assert not is_built(tmp_path, ["E-1"])
    for path, states in files:
        add_zero_defaults(path, states)
    assert is_built(tmp_path, ["E-1"])


def test_a_repository_built_with_other_postprocessing_settings_is_built_again(
    tmp_path: Path,
) -> None:
    for path, states in _every_file(tmp_path):
        add_zero_defaults(path, states)
    config = tmp_path / "python" / "postprocessing" / "config.pbtxt"
    text = config.read_text()
    assert 'string_value: "25"' in text  # the event margin of the template
    config.write_text(text.replace('string_value: "25"', 'string_value: "0"', 1))
    assert not is_built(tmp_path, ["E-1"])
    config.unlink()
    assert not is_built(tmp_path, ["E-1"])


def test_summary_table_shows_every_detector_with_its_event_counts() -> None:
    overall = {
        "event_f1": 0.5,
        "event_precision": 0.4,
        "event_recall": 2 / 3,
        "pa_f1": 0.9,
        "point_f1": 0.3,
        "event_tp": 2,
        "event_fp": 3,
        "event_fn": 1,
    }
    report = {"detectors": {name: {"overall": overall} for name in ("omni", "fused")}}
    console = Console(width=200, record=True)
    console.print(summary_table(report))
    text = console.export_text()
    assert "omni" in text and "fused" in text
    assert text.count("2/3/1") == 2
    assert "0.667" in text
