"""The synthetic SMAP-like data set: reproducible, labelled, loadable."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from satwatch.data import SEED_CHANNELS, load_dataset
from satwatch.data.synth import ANOMALY_KINDS, TRUTH_FILE, inject, synthesize
from satwatch.exceptions import DataError


def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            sha.update(path.relative_to(folder).as_posix().encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "a"
    synthesize(folder, seed=7, channels=6, train_length=1000, test_length=3000)
    return folder


def test_same_seed_writes_the_same_bytes(synthetic: Path, tmp_path: Path) -> None:
    synthesize(tmp_path / "b", seed=7, channels=6, train_length=1000, test_length=3000)
    assert _digest(tmp_path / "b") == _digest(synthetic)
    synthesize(tmp_path / "c", seed=8, channels=6, train_length=1000, test_length=3000)
    assert _digest(tmp_path / "c") != _digest(synthetic)


def test_synthetic_set_loads_with_the_project_loader(synthetic: Path) -> None:
    dataset = load_dataset(synthetic)
    assert dataset.layout == "telemanom"
    assert dataset.channels == sorted(SEED_CHANNELS[:6], key=lambda n: (n[0], int(n[2:])))
    chan = dataset.channel("E-1")
    assert chan.train.shape == (1000, 25)
    assert chan.test.shape == (3000, 25)
    assert chan.events, "every channel gets at least one anomaly by default"
    assert int(chan.labels.sum()) == sum(e.length for e in chan.events)


def test_values_are_in_range_and_commands_are_one_hot(synthetic: Path) -> None:
    dataset = load_dataset(synthetic)
    for name in dataset.channels:
        chan = dataset.channel(name)
        for array in (chan.train, chan.test):
            assert np.abs(array[:, 0]).max() <= 1.0
            assert set(np.unique(array[:, 1:])) <= {0.0, 1.0}
            assert array[:, 1:].sum(axis=1).max() <= 1.0
        assert chan.train[:, 1:].sum() > 0, "commands are sent in training too"
        assert np.ptp(chan.train[:, 0]) > 0.2


def test_truth_file_names_kinds_matching_the_labels(synthetic: Path) -> None:
    with (synthetic / TRUTH_FILE).open() as handle:
        truth = list(csv.DictReader(handle))
    assert {row["kind"] for row in truth} == set(ANOMALY_KINDS)
    dataset = load_dataset(synthetic)
    labelled = sorted(
        (name, e.start, e.end, e.kind)
        for name in dataset.channels
        for e in dataset.channel(name).events
    )
    from_truth = sorted((r["chan_id"], int(r["start"]), int(r["end"]), r["class"]) for r in truth)
    assert labelled == from_truth


def test_anomalies_start_after_the_first_tenth_and_stay_apart(synthetic: Path) -> None:
    dataset = load_dataset(synthetic)
    for name in dataset.channels:
        events = dataset.channel(name).events
        assert all(e.start >= 300 for e in events)  # the first 10% of the test is normal
        assert all(b.start - a.end > 50 for a, b in zip(events, events[1:], strict=False))


def test_inject_spike_moves_to_the_far_side() -> None:
    value = np.full(20, 0.5)
    inject("spike", value, 5, 2, np.random.default_rng(0))
    assert np.all(value[5:7] <= -0.85)
    assert np.all(value[:5] == 0.5) and np.all(value[7:] == 0.5)


def test_inject_frozen_holds_the_first_value() -> None:
    value = np.linspace(-0.5, 0.5, 50)
    inject("frozen", value, 10, 20, np.random.default_rng(0))
    assert np.all(value[10:30] == value[10])
    assert value[30] != value[10]


def test_inject_level_shift_drift_and_noise_stay_clipped() -> None:
    rng = np.random.default_rng(1)
    for kind in ("level_shift", "drift", "noise_burst"):
        base = np.full(400, 0.8)
        value = base.copy()
        inject(kind, value, 100, 200, rng)
        assert np.abs(value).max() <= 1.0
        assert np.abs(value[100:300] - base[100:300]).mean() > 0.05
        assert np.all(value[:100] == base[:100])


def test_inject_contextual_takes_the_out_of_phase_values() -> None:
    t = np.arange(300)
    value = np.sin(2 * np.pi * t / 100)
    shifted = np.sin(2 * np.pi * t / 100 + np.pi)
    inject("contextual", value, 100, 100, np.random.default_rng(0), out_of_phase=shifted)
    np.testing.assert_allclose(value[100:200], shifted[100:200])
    assert np.abs(value).max() <= 1.0  # a normal value, just at the wrong phase


def test_inject_unknown_kind_is_refused() -> None:
    with pytest.raises(DataError, match="'wobble'"):
        inject("wobble", np.zeros(10), 1, 2, np.random.default_rng(0))


def test_synthesize_refuses_too_short_series(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="test_length >= 1000"):
        synthesize(tmp_path, test_length=10)


def test_more_channels_than_seed_get_z_names(tmp_path: Path) -> None:
    summary = synthesize(tmp_path, seed=0, channels=28, train_length=200, test_length=1000)
    assert summary.channels[:27] == list(SEED_CHANNELS)
    assert summary.channels[27] == "Z-1"
    assert load_dataset(tmp_path).resolve_channels("seed") == list(SEED_CHANNELS)


def test_another_width_and_spacecraft_load_as_that_spacecraft(tmp_path: Path) -> None:
    synthesize(tmp_path, seed=1, channels=2, train_length=200, test_length=1000, features=7,
               spacecraft="sat2")  # fmt: skip
    dataset = load_dataset(tmp_path, spacecraft="SAT2")
    chan = dataset.channel(dataset.channels[0])
    assert (chan.spacecraft, chan.num_features, chan.test.shape[1]) == ("SAT2", 7, 7)
    assert chan.train[:, 1:].sum(axis=1).max() <= 1.0
    with pytest.raises(DataError, match="lists no SMAP channel; its spacecraft: SAT2"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="features >= 2"):
        synthesize(tmp_path / "x", channels=1, train_length=200, test_length=1000, features=1)
