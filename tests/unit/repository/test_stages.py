"""The served stages in one process: the two models' files, their functions, rereading them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from satwatch.detectors.normalization import Normalisation
from satwatch.exceptions import DataError, ModelError
from satwatch.pipeline.calibration import ChannelThresholds, Threshold
from satwatch.pipeline.calibration_file import THRESHOLDS_FILE, save_thresholds
from satwatch.pipeline.postprocess import PostSettings, postprocess
from satwatch.pipeline.preprocess import STATS_FILE, NormalisationTable
from satwatch.repository.stages import CachedStages, ServedStages

CONFIG = """name: "postprocessing"
backend: "python"
parameters {{ key: "smoothing_window" value {{ string_value: "{window}" }} }}
parameters {{ key: "merge_gap" value {{ string_value: "4" }} }}
"""
THRESHOLDS = (Threshold(2.0, 0.5), Threshold(1.0))


def _write(root: Path, thresholds=THRESHOLDS, window: int = 3, version: int = 1) -> None:
    train = np.random.default_rng(0).normal(size=(50, 3))
    table = NormalisationTable({"E-1": Normalisation.fit(train)})
    table.save(root / "python" / "preprocessing" / str(version) / STATS_FILE)
    post = root / "python" / "postprocessing"
    save_thresholds(post / str(version) / THRESHOLDS_FILE, {"E-1": ChannelThresholds(thresholds)})
    (post / "config.pbtxt").write_text(CONFIG.format(window=window), encoding="utf-8")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    _write(tmp_path)
    return tmp_path


def _scores(steps: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.uniform(0, 4, steps).astype(np.float32) for _ in THRESHOLDS]


def test_the_stages_answer_as_the_two_models_functions(repository: Path) -> None:
    stages = ServedStages.load(repository)
    raw = np.random.default_rng(2).normal(size=(8, 3)).astype(np.float32)
    expected = stages.normalisation.get("E-1").apply(raw)
    np.testing.assert_array_equal(stages.normalise("E-1", raw), expected)
    settings = PostSettings(smoothing_window=3, merge_gap=4)
    assert stages.settings == settings
    whole = postprocess(_scores(), list(THRESHOLDS), settings)
    first = stages.postprocess("E-1", [s[:25] for s in _scores()])
    rest = stages.postprocess("E-1", [s[25:] for s in _scores()], first.state.to_array())
    np.testing.assert_array_equal(np.concatenate([first.final, rest.final]), whole.final)
    np.testing.assert_array_equal(np.concatenate([first.decision, rest.decision]), whole.decision)


def test_bad_telemetry_channels_and_states_are_named(repository: Path) -> None:
    stages = ServedStages.load(repository)
    with pytest.raises(DataError, match="channel 'X-9'"):
        stages.normalise("X-9", np.zeros((4, 3), np.float32))
    with pytest.raises(DataError, match="E-1"):
        stages.normalise("E-1", np.zeros((4, 5), np.float32))
    with pytest.raises(DataError, match="unknown channel 'X-9'"):
        stages.postprocess("X-9", _scores())
    with pytest.raises(DataError, match="post_state"):
        stages.postprocess("E-1", _scores(), np.zeros(3, np.float32))


def test_a_repository_without_the_models_versions_is_refused(tmp_path: Path) -> None:
    (tmp_path / "python" / "preprocessing").mkdir(parents=True)
    with pytest.raises(ModelError, match="version folders"):
        CachedStages(tmp_path)


def _touch_later(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_changed_files_and_new_versions_are_read_at_the_next_call(repository: Path) -> None:
    stages = CachedStages(repository)
    assert stages.current().thresholds["E-1"][0] == THRESHOLDS[0]
    assert stages.current() is stages.current() and stages.loads == 1  # unchanged: not reread
    _write(repository, thresholds=(Threshold(3.0), Threshold(1.5)))
    _touch_later(repository / "python" / "postprocessing" / "1" / THRESHOLDS_FILE)
    assert stages.current().thresholds["E-1"][0] == Threshold(3.0)
    _write(repository, thresholds=(Threshold(5.0), Threshold(1.5)), window=4, version=2)
    assert stages.current().thresholds["E-1"][0] == Threshold(5.0)
    assert stages.current().settings.smoothing_window == 4 and stages.loads == 3


def test_an_unreadable_change_keeps_the_stages_in_use(repository: Path, caplog) -> None:
    stages = CachedStages(repository)
    before = stages.current()
    broken = repository / "python" / "postprocessing" / "1" / THRESHOLDS_FILE
    broken.write_text("{not json", encoding="utf-8")
    _touch_later(broken)
    with caplog.at_level(logging.ERROR, logger="satwatch.repository.stages"):
        assert stages.current() is before
        assert stages.current() is before  # the same broken file: not retried at every call
    assert len([r for r in caplog.records if "kept the ones in use" in r.message]) == 1
    _write(repository, thresholds=(Threshold(3.0), Threshold(1.5)))
    _touch_later(broken)
    assert stages.current().thresholds["E-1"][0] == Threshold(3.0)
