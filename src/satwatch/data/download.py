"""Fetch the public Telemanom telemetry and unpack it into the Telemanom layout.

The SMAP/MSL arrays are published as ``data.zip`` in the Telemanom S3 bucket (folders
``data/train`` and ``data/test`` of ``<chan>.npy``), the labels as ``labeled_anomalies.csv``
in the ``khundman/telemanom`` GitHub repository. Usage::

    summary = download_telemanom(Path("data"))     # needs internet access
    dataset = load_dataset(Path("data"))

:func:`unpack_telemanom` is the offline half: it turns a ``data.zip`` already on disk into
``train/<chan>.npy`` and ``test/<chan>.npy``.
"""

from __future__ import annotations

import logging
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from satwatch.data.labels import LABELS_FILE
from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

DATA_URL = "https://s3-us-west-2.amazonaws.com/telemanom/data.zip"
LABELS_URL = "https://raw.githubusercontent.com/khundman/telemanom/master/labeled_anomalies.csv"
ARCHIVE_NAME = "data.zip"
_MEMBER = re.compile(r"^(?:.*/)?(train|test)/([A-Z]-\d+)\.npy$")
_CHUNK = 1 << 16

ProgressCallback = Callable[[str, int, int | None], None]
"""``(what, bytes_so_far, total_bytes_or_None)``, called as a download proceeds."""


@dataclass(frozen=True)
class DownloadSummary:
    """What :func:`download_telemanom` left in the folder."""

    folder: Path
    train: list[str]
    test: list[str]


def fetch(
    url: str, dest: Path, progress: ProgressCallback | None = None, timeout: float = 30.0
) -> Path:
    """Download ``url`` to ``dest`` (through ``dest.part``, renamed when complete).

    Raises:
        DataError: The URL cannot be reached or the transfer breaks off; the message says
            that the command needs internet access and what to do instead.
    """
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(dest.name, done, total)
    except (urllib.error.URLError, OSError, ValueError) as err:
        partial.unlink(missing_ok=True)
        reason = getattr(err, "reason", err)
        raise DataError(
            f"cannot download {url}: {reason}. 'satwatch data download' needs internet access; "
            f"without it, copy data.zip and {LABELS_FILE} here by hand, or make a synthetic "
            "set with 'satwatch data synth'"
        ) from err
    partial.replace(dest)
    return dest


def unpack_telemanom(archive: Path, out: Path) -> DownloadSummary:
    """Extract ``train/<chan>.npy`` and ``test/<chan>.npy`` from a Telemanom ``data.zip``.

    Only members named ``[.../]train|test/<X>-<n>.npy`` are taken, and each is written under
    ``out`` by its channel name alone, so an archive cannot write outside ``out``.

    Args:
        archive: The zip file.
        out: Folder that receives ``train/`` and ``test/``.

    Returns:
        The channels found in each split.

    Raises:
        DataError: Not a zip file, or it holds no train/test arrays.
    """
    if not archive.is_file():
        raise DataError(f"archive not found: {archive}")
    found: dict[str, list[str]] = {"train": [], "test": []}
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                match = _MEMBER.match(PurePosixPath(member.filename).as_posix())
                if member.is_dir() or match is None or "__MACOSX" in member.filename:
                    continue
                split, channel = match.groups()
                target = out / split / f"{channel}.npy"
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
                found[split].append(channel)
    except zipfile.BadZipFile as err:
        raise DataError(f"{archive} is not a zip archive ({err})") from err
    if not found["train"] or not found["test"]:
        raise DataError(
            f"{archive} holds {len(found['train'])} train and {len(found['test'])} test arrays; "
            "expected train/<chan>.npy and test/<chan>.npy"
        )
    LOGGER.info("unpacked %d train, %d test arrays into %s", *map(len, found.values()), out)
    return DownloadSummary(out, sorted(found["train"]), sorted(found["test"]))


def download_telemanom(
    out: Path,
    data_url: str = DATA_URL,
    labels_url: str = LABELS_URL,
    progress: ProgressCallback | None = None,
    keep_archive: bool = False,
    timeout: float = 30.0,
) -> DownloadSummary:
    """Download the Telemanom archive and labels into ``out`` in the Telemanom layout.

    Args:
        out: Destination folder (created).
        data_url: URL of ``data.zip``.
        labels_url: URL of ``labeled_anomalies.csv``.
        progress: Called as bytes arrive.
        keep_archive: Keep ``data.zip`` after unpacking.
        timeout: Seconds to wait for the server at each step.

    Raises:
        DataError: No network, a broken download or an unusable archive.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create {out}: {err}") from err
    labels = fetch(labels_url, out / LABELS_FILE, progress, timeout)
    LOGGER.info("labels saved to %s", labels)
    archive = fetch(data_url, out / ARCHIVE_NAME, progress, timeout)
    summary = unpack_telemanom(archive, out)
    if not keep_archive:
        archive.unlink()
    return summary
