"""SMAP/MSL telemetry with its labels, from either of the two layouts it is found in.

* **npz** (the team's shared copy): ``smap_train.npz``, ``smap_test.npz``, ``msl_train.npz``,
  ``msl_test.npz`` keyed by channel id, plus ``labeled_anomalies.csv`` (another spacecraft's
  as ``<name>_train.npz``, ``<name>_test.npz``).
* **telemanom** (what ``data.zip`` unpacks to, and what ``satwatch data synth`` /
  ``satwatch data download`` write): ``train/<chan>.npy``, ``test/<chan>.npy`` and
  ``labeled_anomalies.csv`` (also found when the arrays sit one level down in ``data/``).

The layout is detected from the files present. The spacecraft is the labels file's
``spacecraft`` column: SMAP, MSL, or a name of one's own (``SAT2``: upper-case letters, digits,
``-``); its channels are the rows that name it. Usage::

    dataset = load_dataset()                     # $SATWATCH_DATA or the shared copy, SMAP
    for name in dataset.resolve_channels("seed"):
        chan = dataset.channel(name)             # Channel: train, test, labels, events
        print(name, chan.train.shape, chan.labels.mean())

Arrays are loaded on first use and cached; they are float32 ``(T, F)`` (25 features for SMAP,
55 for MSL: column 0 the telemetry value, the rest one-hot commands). Values are kept as they
are: several MSL channels leave [-1, 1], and some training series are constant. A channel's
width F is whatever its arrays have (train and test alike).
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from satwatch.data.channels import SEED_CHANNELS, channel_sort_key, subsystem_of
from satwatch.data.labels import (
    LABELS_FILE,
    ChannelLabels,
    LabelledEvent,
    events_to_mask,
    read_labels,
)
from satwatch.exceptions import DataError
from satwatch.paths import data_dir

LOGGER = logging.getLogger(__name__)

SPACECRAFT = ("SMAP", "MSL")
"""NASA's two spacecraft; a data set may name others (:data:`SPACECRAFT_PATTERN`)."""
SPACECRAFT_PATTERN = re.compile(r"[A-Z][A-Z0-9-]{0,31}")
"""A spacecraft name: it starts the served model names (``SAT2_X-1``), so letters, digits
and ``-`` only."""
LAYOUT_NPZ = "npz"
LAYOUT_TELEMANOM = "telemanom"


@dataclass(frozen=True, eq=False)
class Channel:
    """One telemetry channel: training and test series, per-step labels and labelled events.

    Attributes:
        name: Channel id, e.g. ``"E-1"``.
        spacecraft: ``"SMAP"``, ``"MSL"`` or the data set's own name.
        train: Training series, float32 ``(T_train, F)``.
        test: Test series, float32 ``(T_test, F)``.
        labels: True where a test step lies in a labelled anomaly, ``(T_test,)`` bool.
        events: Labelled anomalies sorted by start, overlapping CSV intervals merged.
    """

    name: str
    spacecraft: str
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    events: list[LabelledEvent]

    @property
    def subsystem(self) -> str:
        """Subsystem from the channel prefix (EPS, ACS, ...)."""
        return subsystem_of(self.name)

    @property
    def num_features(self) -> int:
        """Number of columns (25 for SMAP, 55 for MSL)."""
        return int(self.train.shape[1])


def normalise_spacecraft(spacecraft: str) -> str:
    """``spacecraft`` in upper case, checked against :data:`SPACECRAFT_PATTERN`.

    Raises:
        DataError: For a name that could not start a model name.
    """
    upper = spacecraft.strip().upper()
    if not SPACECRAFT_PATTERN.fullmatch(upper):
        raise DataError(
            f"spacecraft {spacecraft!r}: expected SMAP, MSL or a name of letters, digits and "
            "'-' starting with a letter (as the labels file's spacecraft column names it)"
        )
    return upper


def detect_layout(folder: Path, spacecraft: str) -> tuple[str, Path]:
    """Find which layout ``folder`` holds and where its arrays are.

    Returns:
        ``(layout, array_root)``: ``"npz"`` with the folder, or ``"telemanom"`` with the folder
        (or its ``data/`` subfolder) holding ``train/`` and ``test/``.

    Raises:
        DataError: The folder is missing or holds neither layout.
    """
    if not folder.is_dir():
        raise DataError(f"telemetry folder not found: {folder} (set --data or SATWATCH_DATA)")
    prefix = spacecraft.lower()
    if (folder / f"{prefix}_train.npz").is_file() or (folder / f"{prefix}_test.npz").is_file():
        return LAYOUT_NPZ, folder
    for root in (folder, folder / "data"):
        if (root / "train").is_dir() and (root / "test").is_dir():
            return LAYOUT_TELEMANOM, root
    raise DataError(
        f"{folder} holds no {spacecraft} telemetry: expected {prefix}_train.npz + "
        f"{prefix}_test.npz (shared copy) or train/<chan>.npy + test/<chan>.npy (Telemanom)"
    )


@dataclass
class TelemetryDataset:
    """The labelled channels of one spacecraft in one folder; arrays load on demand.

    Build it with :func:`load_dataset`.
    """

    folder: Path
    spacecraft: str
    layout: str
    array_root: Path
    labels: dict[str, ChannelLabels]
    _cache: dict[str, Channel] = field(default_factory=dict, repr=False)
    _npz: dict[str, np.lib.npyio.NpzFile] = field(default_factory=dict, repr=False)

    @property
    def channels(self) -> list[str]:
        """Channel ids of this spacecraft with labels, in natural order (A-2 before A-10)."""
        return sorted(self.labels, key=channel_sort_key)

    def resolve_channels(self, spec: str) -> list[str]:
        """Turn a channel selection into channel ids.

        Args:
            spec: ``"seed"`` (the 27 seed SMAP channels), ``"validation"`` (every other
                channel of the set: the ones to choose settings on), ``"all"`` or a
                comma-separated list such as ``"E-1,A-1"``.

        Raises:
            DataError: An unknown channel, an empty list, or ``seed`` for MSL.
        """
        spec = spec.strip()
        if spec.lower() == "all":
            return self.channels
        if spec.lower() == "seed":
            if self.spacecraft != "SMAP":
                raise DataError(f"'seed' names SMAP channels; this data set is {self.spacecraft}")
            names = list(SEED_CHANNELS)
        elif spec.lower() == "validation":
            names = [name for name in self.channels if name not in SEED_CHANNELS]
        else:
            names = [n.strip() for n in spec.split(",") if n.strip()]
        if not names:
            raise DataError(
                f"no channel in selection {spec!r}; expected 'seed', 'validation', 'all' or E-1,A-1"
            )
        for name in names:
            self._check_known(name)
        return list(dict.fromkeys(names))

    def channel(self, name: str) -> Channel:
        """Load one channel (cached).

        Raises:
            DataError: Unknown channel (with close names), missing array, or arrays that do not
                match the labels (length, shape).
        """
        if name not in self._cache:
            self._check_known(name)
            self._cache[name] = self._load(name)
        return self._cache[name]

    def _check_known(self, name: str) -> None:
        if name in self.labels:
            return
        close = difflib.get_close_matches(name, self.channels, n=5, cutoff=0.5)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise DataError(
            f"unknown {self.spacecraft} channel {name!r} in {self.folder} "
            f"({len(self.labels)} channels){hint}"
        )

    def _read(self, split: str, name: str) -> np.ndarray:
        if self.layout == LAYOUT_NPZ:
            path = self.array_root / f"{self.spacecraft.lower()}_{split}.npz"
            if split not in self._npz:
                if not path.is_file():
                    raise DataError(f"telemetry file not found: {path}")
                self._npz[split] = np.load(path)
            archive = self._npz[split]
            if name not in archive.files:
                raise DataError(f"channel {name} has no array in {path}")
            return archive[name]
        path = self.array_root / split / f"{name}.npy"
        if not path.is_file():
            raise DataError(f"telemetry file not found: {path} (channel {name}, {split} split)")
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as err:
            raise DataError(f"cannot read {path}: {err}") from err

    def _load(self, name: str) -> Channel:
        info = self.labels[name]
        train = np.asarray(self._read("train", name), dtype=np.float32)
        test = np.asarray(self._read("test", name), dtype=np.float32)
        for split, array in (("train", train), ("test", test)):
            if array.ndim != 2 or array.shape[0] == 0:
                raise DataError(
                    f"channel {name} {split} array has shape {array.shape}; expected (T, F), T > 0"
                )
        if train.shape[1] != test.shape[1]:
            raise DataError(
                f"channel {name}: train has {train.shape[1]} columns, test {test.shape[1]}; "
                "expected the same"
            )
        if test.shape[0] != info.num_values:
            raise DataError(
                f"channel {name}: test series has {test.shape[0]} steps but "
                f"{LABELS_FILE} says num_values {info.num_values}"
            )
        if not (np.isfinite(train).all() and np.isfinite(test).all()):
            raise DataError(f"channel {name} holds NaN or infinite values")
        labels = events_to_mask(info.events, info.num_values)
        return Channel(name, self.spacecraft, train, test, labels, list(info.events))


def load_dataset(folder: Path | None = None, spacecraft: str = "SMAP") -> TelemetryDataset:
    """Open the labelled telemetry of one spacecraft.

    Args:
        folder: Telemetry folder; default ``$SATWATCH_DATA``, ``./data`` or the shared copy.
        spacecraft: ``"SMAP"`` (25 features), ``"MSL"`` (55 features) or a name the labels
            file lists (any width), any case.

    Returns:
        The data set; channel arrays are read when first asked for.

    Raises:
        DataError: Missing folder or labels file, no arrays for the spacecraft, or a
            malformed labels file.
    """
    spacecraft = normalise_spacecraft(spacecraft)
    folder = data_dir(folder)
    layout, root = detect_layout(folder, spacecraft)
    csv_path = folder / LABELS_FILE
    if not csv_path.is_file() and (root / LABELS_FILE).is_file():
        csv_path = root / LABELS_FILE
    all_labels = read_labels(csv_path)
    labels = {k: v for k, v in all_labels.items() if v.spacecraft.upper() == spacecraft}
    if not labels:
        listed = sorted({v.spacecraft.upper() for v in all_labels.values()})
        raise DataError(
            f"{csv_path} lists no {spacecraft} channel; its spacecraft: {', '.join(listed)}"
        )
    LOGGER.debug("%s: %s layout, %d %s channels", folder, layout, len(labels), spacecraft)
    return TelemetryDataset(folder, spacecraft, layout, root, labels)
