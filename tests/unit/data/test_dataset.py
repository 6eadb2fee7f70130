"""Loading telemetry from the shared npz copy and from the Telemanom layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from satwatch.data import SEED_CHANNELS, LabelledEvent, load_dataset
from satwatch.data.dataset import LAYOUT_NPZ, LAYOUT_TELEMANOM
from satwatch.exceptions import DataError


def _telemanom_copy(source: Path, tmp_path: Path, channels: list[str]) -> Path:
    """A small Telemanom-layout folder holding a few channels of ``source``."""
    dataset = load_dataset(source)
    folder = tmp_path / "telemanom"
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    lines = ["chan_id,spacecraft,anomaly_sequences,class,num_values"]
    for name in channels:
        chan = dataset.channel(name)
        np.save(folder / "train" / f"{name}.npy", chan.train.astype(np.float64))
        np.save(folder / "test" / f"{name}.npy", chan.test.astype(np.float64))
        seqs = "[" + ", ".join(f"[{e.start}, {e.end}]" for e in chan.events) + "]"
        kinds = "[" + ", ".join(e.kind for e in chan.events) + "]"
        lines.append(f'{name},SMAP,"{seqs}",{kinds},{len(chan.test)}')
    (folder / "labeled_anomalies.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_seed_channels_hold_34_events_and_35357_anomalous_points(shared_data: Path) -> None:
    dataset = load_dataset(shared_data)
    assert dataset.layout == LAYOUT_NPZ
    channels = [dataset.channel(name) for name in dataset.resolve_channels("seed")]
    assert sum(len(c.events) for c in channels) == 34
    assert sum(int(c.labels.sum()) for c in channels) == 35_357
    assert sum(len(c.test) for c in channels) == 221_174


def test_channel_arrays_are_float32_with_25_features(shared_data: Path) -> None:
    chan = load_dataset(shared_data).channel("E-1")
    assert chan.train.dtype == np.float32
    assert chan.test.shape == (8516, 25)
    assert chan.labels.shape == (8516,)
    assert chan.labels.dtype == bool
    assert chan.events == [
        LabelledEvent(5000, 5030, "contextual"),
        LabelledEvent(5610, 6086, "contextual"),
    ]
    assert chan.labels[5000] and chan.labels[5030] and not chan.labels[5031]
    assert chan.subsystem == "EPS"


def test_msl_values_outside_minus_one_one_are_loaded_as_they_are(shared_data: Path) -> None:
    chan = load_dataset(shared_data, spacecraft="msl").channel("M-6")
    assert chan.num_features == 55
    assert chan.test[:, 0].max() > 250


def test_all_smap_channels_exclude_msl_and_unlabelled(shared_data: Path) -> None:
    dataset = load_dataset(shared_data)
    assert len(dataset.channels) == 54
    assert "M-6" not in dataset.channels and "T-10" not in dataset.channels
    assert dataset.channels.index("A-2") < dataset.channels.index("A-9")


def test_resolve_channels_accepts_lists_and_drops_duplicates(synth_data: Path) -> None:
    dataset = load_dataset(synth_data)
    assert dataset.resolve_channels(" E-1, A-1,E-1") == ["E-1", "A-1"]
    assert dataset.resolve_channels("seed") == list(SEED_CHANNELS)


def test_validation_is_every_smap_channel_outside_the_seed(shared_data: Path) -> None:
    dataset = load_dataset(shared_data)
    validation = dataset.resolve_channels("validation")
    assert len(validation) == 27 and not set(validation) & set(SEED_CHANNELS)
    assert set(validation) | set(SEED_CHANNELS) == set(dataset.channels)


def test_unknown_channel_is_named_with_close_names(shared_data: Path) -> None:
    dataset = load_dataset(shared_data)
    with pytest.raises(DataError, match=r"'E-99'.*close names: E-9"):
        dataset.channel("E-99")
    with pytest.raises(DataError, match="'Z-1'"):
        dataset.resolve_channels("E-1,Z-1")


def test_seed_is_refused_for_msl(shared_data: Path) -> None:
    with pytest.raises(DataError, match="SMAP"):
        load_dataset(shared_data, spacecraft="MSL").resolve_channels("seed")


def test_unknown_spacecraft_is_refused(synth_data: Path) -> None:
    with pytest.raises(DataError, match="lists no JUNO channel"):
        load_dataset(synth_data, spacecraft="Juno")


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nowhere")


def test_folder_without_telemetry_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="smap_train.npz"):
        load_dataset(tmp_path)


def test_folder_comes_from_satwatch_data(
    synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _telemanom_copy(synth_data, tmp_path, ["A-1"])
    monkeypatch.setenv("SATWATCH_DATA", str(folder))
    assert load_dataset().channels == ["A-1"]


def test_telemanom_layout_loads_the_same_arrays(shared_data: Path, tmp_path: Path) -> None:
    folder = _telemanom_copy(shared_data, tmp_path, ["P-2", "A-1"])
    dataset = load_dataset(folder)
    assert dataset.layout == LAYOUT_TELEMANOM
    reference = load_dataset(shared_data).channel("P-2")
    chan = dataset.channel("P-2")
    np.testing.assert_array_equal(chan.train, reference.train)
    np.testing.assert_array_equal(chan.test, reference.test)
    np.testing.assert_array_equal(chan.labels, reference.labels)
    assert chan.events == reference.events


def test_telemanom_layout_in_a_data_subfolder(synth_data: Path, tmp_path: Path) -> None:
    folder = _telemanom_copy(synth_data, tmp_path, ["A-1"])
    nested = tmp_path / "unzipped"
    nested.mkdir()
    (nested / "data").mkdir()
    shutil.move(str(folder / "train"), str(nested / "data" / "train"))
    shutil.move(str(folder / "test"), str(nested / "data" / "test"))
    shutil.move(str(folder / "labeled_anomalies.csv"), str(nested / "labeled_anomalies.csv"))
    assert load_dataset(nested).channel("A-1").test.shape == (6000, 25)


def test_missing_npy_file_is_named(synth_data: Path, tmp_path: Path) -> None:
    folder = _telemanom_copy(synth_data, tmp_path, ["A-1"])
    (folder / "test" / "A-1.npy").unlink()
    with pytest.raises(DataError, match=r"test[/\\]A-1\.npy"):
        load_dataset(folder).channel("A-1")


def test_test_length_must_match_num_values(synth_data: Path, tmp_path: Path) -> None:
    folder = _telemanom_copy(synth_data, tmp_path, ["A-1"])
    np.save(folder / "test" / "A-1.npy", np.zeros((100, 25)))
    with pytest.raises(DataError, match="100 steps but .* num_values 6000"):
        load_dataset(folder).channel("A-1")


def test_train_and_test_columns_must_agree(synth_data: Path, tmp_path: Path) -> None:
    folder = _telemanom_copy(synth_data, tmp_path, ["A-1"])
    np.save(folder / "train" / "A-1.npy", np.zeros((100, 24)))
    with pytest.raises(DataError, match="train has 24 columns, test 25"):
        load_dataset(folder).channel("A-1")
