"""Unpacking a Telemanom archive (made here) and failing clearly without network."""

from __future__ import annotations

import io
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

from satwatch.data import load_dataset
from satwatch.data.download import download_telemanom, fetch, unpack_telemanom
from satwatch.exceptions import DataError


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    """A miniature data.zip as Telemanom publishes it (data/train, data/test)."""
    path = tmp_path / "data.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("data/", "")
        bundle.writestr("data/train/A-1.npy", _npy(rng.random((50, 25))))
        bundle.writestr("data/test/A-1.npy", _npy(rng.random((80, 25))))
        bundle.writestr("data/train/B-1.npy", _npy(rng.random((40, 25))))
        bundle.writestr("data/test/B-1.npy", _npy(rng.random((60, 25))))
        bundle.writestr("__MACOSX/data/train/._A-1.npy", b"junk")
        bundle.writestr("../evil/train/A-9.npy.txt", b"must be ignored")
        bundle.writestr("data/2018-05-19_15.00.10/params.yaml", b"ignored")
    return path


def test_unpack_writes_the_telemanom_layout(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = unpack_telemanom(archive, out)
    assert summary.train == ["A-1", "B-1"]
    assert summary.test == ["A-1", "B-1"]
    assert np.load(out / "test" / "A-1.npy").shape == (80, 25)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy")) == [
        "test/A-1.npy", "test/B-1.npy", "train/A-1.npy", "train/B-1.npy",
    ]  # fmt: skip
    assert not (tmp_path / "evil").exists()


def test_unpacked_archive_loads_once_labels_are_beside_it(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    unpack_telemanom(archive, out)
    (out / "labeled_anomalies.csv").write_text(
        "chan_id,spacecraft,anomaly_sequences,class,num_values\n"
        'A-1,SMAP,"[[10, 20]]",[point],80\nB-1,SMAP,"[[5, 9]]",[contextual],60\n'
    )
    dataset = load_dataset(out)
    assert dataset.channels == ["A-1", "B-1"]
    assert int(dataset.channel("A-1").labels.sum()) == 11


def test_unpack_refuses_a_file_that_is_not_a_zip(tmp_path: Path) -> None:
    bogus = tmp_path / "data.zip"
    bogus.write_text("<html>not found</html>")
    with pytest.raises(DataError, match="not a zip archive"):
        unpack_telemanom(bogus, tmp_path / "out")


def test_unpack_refuses_a_zip_without_arrays(tmp_path: Path) -> None:
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("readme.txt", "nothing here")
    with pytest.raises(DataError, match="0 train and 0 test arrays"):
        unpack_telemanom(path, tmp_path / "out")


def test_download_without_network_fails_with_one_clear_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/data.zip"
    with pytest.raises(DataError, match="needs internet access") as info:
        download_telemanom(tmp_path / "out", data_url=url, labels_url=url, timeout=5)
    assert url in str(info.value)
    assert not list((tmp_path / "out").iterdir()), "no partial files are left behind"


def test_fetch_reads_a_local_file_url_with_progress(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 200_000)
    seen: list[int] = []
    fetch(source.as_uri(), tmp_path / "copy.bin", lambda _n, done, _t: seen.append(done))
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()
    assert seen[-1] == 200_000 and len(seen) > 1
