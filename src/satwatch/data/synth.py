"""A synthetic, SMAP-like labelled telemetry set for people without the real data.

Each channel has 25 columns like SMAP (``features`` sets another width, for another
spacecraft): column 0 a telemetry value in [-1, 1] and the others one-hot commands. The value
is built from

* periodic orbits (a fundamental plus a harmonic; period 80-120 steps),
* slow trends (a gentle slope and a slow oscillation),
* command-driven level changes: some commands switch the value to another level, and a
  command shows as a 1 in its column on the step it is sent,
* sensor noise,

and the test split receives injected anomalies of known kinds, labelled in
``labeled_anomalies.csv`` in NASA's format (``point`` or ``contextual`` class):

=============  ==========  =========================================================
kind           class       what changes
=============  ==========  =========================================================
spike          point       1-3 steps jump far from the signal
level_shift    point       an offset is added over 80-300 steps
noise_burst    point       strong noise over 40-150 steps
drift          contextual  a slowly growing ramp over 150-400 steps
frozen         contextual  the value sticks at its first value over 80-300 steps
contextual     contextual  a normal value at the wrong phase: the orbit runs half a
                           period out of phase over one to two periods
=============  ==========  =========================================================

The set is written in the Telemanom layout (``train/<chan>.npy``, ``test/<chan>.npy``,
``labeled_anomalies.csv``) plus ``synth_anomalies.csv`` with the injected kind of each event,
and loads with :func:`satwatch.data.load_dataset`. The same seed writes the same bytes.
Channel names are the 27 seed SMAP channels first (so ``--channels seed`` works when 27 are
made), then ``Z-1``, ``Z-2``, ...; the labels name the spacecraft ``SMAP`` unless told
otherwise. Usage::

    summary = synthesize(Path("synthetic"), seed=0, channels=27)
    synthesize(Path("sat2"), channels=3, features=7, spacecraft="SAT2")  # 7 columns
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satwatch.data.channels import SEED_CHANNELS
from satwatch.data.dataset import normalise_spacecraft
from satwatch.data.labels import LABELS_FILE
from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

N_COMMANDS = 24
"""SMAP's command columns (the default width is 1 + this)."""
TRUTH_FILE = "synth_anomalies.csv"
ANOMALY_CLASS = {
    "spike": "point",
    "level_shift": "point",
    "noise_burst": "point",
    "drift": "contextual",
    "frozen": "contextual",
    "contextual": "contextual",
}
"""Injected kind -> the labelled class NASA's CSV would give it."""
ANOMALY_KINDS = tuple(ANOMALY_CLASS)
_LENGTHS = {
    "spike": (1, 3),
    "level_shift": (80, 300),
    "noise_burst": (40, 150),
    "drift": (150, 400),
    "frozen": (80, 300),
    "contextual": (1, 2),  # in orbit periods
}
_MARGIN = 0.9  # normal values use [-0.9, 0.9], leaving room for anomalies inside [-1, 1]


@dataclass(frozen=True)
class InjectedAnomaly:
    """One injected anomaly of the test split (inclusive ends)."""

    channel: str
    start: int
    end: int
    kind: str

    @property
    def label_class(self) -> str:
        """``point`` or ``contextual``, as written to the labels CSV."""
        return ANOMALY_CLASS[self.kind]


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` wrote."""

    folder: Path
    channels: list[str]
    anomalies: list[InjectedAnomaly]
    train_length: int
    test_length: int


@dataclass(frozen=True)
class _Profile:
    """Per-channel random structure, shared by train and test so both look alike."""

    period: float
    phase: float
    amplitude: float
    harmonic: float
    slope: float
    slow_amplitude: float
    slow_period: float
    levels: np.ndarray  # (commands,) level set by each command, NaN = no effect
    command_rate: float
    noise: float


def channel_names(count: int) -> list[str]:
    """The seed channel names first, then ``Z-1``, ``Z-2``, ..."""
    names = list(SEED_CHANNELS[:count])
    names += [f"Z-{i}" for i in range(1, count - len(names) + 1)]
    return names


def _profile(rng: np.random.Generator, commands: int) -> _Profile:
    levels = np.full(commands, np.nan)
    switching = rng.choice(commands, size=min(int(rng.integers(2, 7)), commands), replace=False)
    levels[switching] = rng.uniform(-0.6, 0.6, size=switching.size)
    return _Profile(
        period=float(rng.uniform(80, 120)),
        phase=float(rng.uniform(0, 2 * np.pi)),
        amplitude=float(rng.uniform(0.1, 0.6)),
        harmonic=float(rng.uniform(0.0, 0.4)),
        slope=float(rng.uniform(-1, 1) * 2e-5),
        slow_amplitude=float(rng.uniform(0.0, 0.15)),
        slow_period=float(rng.uniform(1500, 4000)),
        levels=levels,
        command_rate=float(rng.uniform(1 / 400, 1 / 100)),
        noise=float(rng.uniform(0.005, 0.03)),
    )


def _orbit(profile: _Profile, t: np.ndarray, phase_shift: np.ndarray | float = 0.0) -> np.ndarray:
    angle = 2 * np.pi * t / profile.period + profile.phase + phase_shift
    return profile.amplitude * (np.sin(angle) + profile.harmonic * np.sin(2 * angle))


def _commands(
    profile: _Profile, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One-hot command columns and the level they hold the value at, step by step."""
    commands = profile.levels.size
    onehot = np.zeros((length, commands))
    sent = np.flatnonzero(rng.random(length) < profile.command_rate)
    which = rng.integers(0, commands, size=sent.size)
    onehot[sent, which] = 1.0
    level = np.zeros(length)
    current = 0.0
    changes = dict(zip(sent.tolist(), which.tolist(), strict=True))
    for step in range(length):
        command = changes.get(step)
        if command is not None and not np.isnan(profile.levels[command]):
            current = float(profile.levels[command])
        level[step] = current
    return onehot, level


def _series(
    profile: _Profile, start: int, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw (unscaled) value without noise, its orbit part, and the command columns."""
    t = np.arange(start, start + length, dtype=np.float64)
    onehot, level = _commands(profile, length, rng)
    slow = profile.slow_amplitude * np.sin(2 * np.pi * t / profile.slow_period) + profile.slope * t
    orbit = _orbit(profile, t)
    return orbit + slow + level, orbit, onehot


def inject(
    kind: str,
    value: np.ndarray,
    start: int,
    length: int,
    rng: np.random.Generator,
    out_of_phase: np.ndarray | None = None,
) -> None:
    """Inject one anomaly into a scaled series in place (values are clipped to [-1, 1]).

    Args:
        kind: One of :data:`ANOMALY_KINDS`.
        value: Scaled telemetry value (column 0), modified in place.
        start: First anomalous step.
        length: Number of anomalous steps.
        rng: Random generator (sizes, signs).
        out_of_phase: For ``contextual``: the normal series with the orbit half a period
            out of phase (what the value becomes inside the anomaly).

    Raises:
        DataError: Unknown kind, or ``contextual`` without ``out_of_phase``.
    """
    span = slice(start, start + length)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "spike":
        # jump to the far side of the range so the spike stands out whatever the level
        value[span] = np.where(value[span] > 0, -1.0, 1.0) * rng.uniform(0.85, 1.0)
    elif kind == "level_shift":
        offset = rng.uniform(0.3, 0.6)
        # shift towards the side with room, so clipping does not flatten the shift away
        value[span] += offset if value[span].mean() < 0 else -offset
    elif kind == "noise_burst":
        value[span] += rng.normal(0.0, rng.uniform(0.15, 0.3), size=length)
    elif kind == "drift":
        value[span] += sign * np.linspace(0.0, rng.uniform(0.3, 0.6), length)
    elif kind == "frozen":
        value[span] = value[start]
    elif kind == "contextual":
        if out_of_phase is None:
            raise DataError("a contextual anomaly needs the out-of-phase series")
        value[span] = out_of_phase[span]
    else:
        raise DataError(f"unknown anomaly kind {kind!r}; expected one of {ANOMALY_KINDS}")
    np.clip(value, -1.0, 1.0, out=value)


def _plan_anomalies(
    kinds: list[str], test_length: int, period: float, rng: np.random.Generator
) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, length, kind) placements after the first 10% of the test."""
    placed: list[tuple[int, int, str]] = []
    for kind in kinds:
        low, high = _LENGTHS[kind]
        if kind == "contextual":
            length = int(round(period * rng.uniform(low, high)))
        else:
            length = int(rng.integers(low, high + 1))
        for _ in range(100):
            start = int(rng.integers(test_length // 10, test_length - length - 1))
            # keep a gap of a period between events so each is its own event
            gap = int(period)
            if all(start + length + gap < s or s + n + gap < start for s, n, _ in placed):
                placed.append((start, length, kind))
                break
        else:
            LOGGER.warning("no room for a %s anomaly of %d steps; skipped", kind, length)
    return sorted(placed)


def _write_labels(
    folder: Path, names: list[str], anomalies: list[InjectedAnomaly], n: int, spacecraft: str
) -> None:
    with (folder / LABELS_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["chan_id", "spacecraft", "anomaly_sequences", "class", "num_values"])
        for name in names:
            own = [a for a in anomalies if a.channel == name]
            sequences = "[" + ", ".join(f"[{a.start}, {a.end}]" for a in own) + "]"
            classes = "[" + ", ".join(a.label_class for a in own) + "]"
            writer.writerow([name, spacecraft, sequences, classes, n])
    with (folder / TRUTH_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["chan_id", "start", "end", "kind", "class"])
        for a in anomalies:
            writer.writerow([a.channel, a.start, a.end, a.kind, a.label_class])


def synthesize(
    out: Path,
    seed: int = 0,
    channels: int = 27,
    train_length: int = 2000,
    test_length: int = 6000,
    anomalies_per_channel: tuple[int, int] = (1, 3),
    on_channel: Callable[[str], None] | None = None,
    features: int = 1 + N_COMMANDS,
    spacecraft: str = "SMAP",
) -> SynthSummary:
    """Write a synthetic SMAP-like data set in the Telemanom layout.

    Args:
        out: Folder to write (created; existing files of the same names are replaced).
        seed: Random seed; the same arguments write the same bytes.
        channels: Number of channels (seed channel names first).
        train_length: Steps per training series (no anomalies).
        test_length: Steps per test series (with injected anomalies).
        anomalies_per_channel: Inclusive range of anomalies per channel.
        on_channel: Called with each channel name once it is written (progress).
        features: Columns per row: the value and ``features - 1`` commands (at least 2).
        spacecraft: The labels' spacecraft column (upper-case letters, digits, ``-``).

    Returns:
        What was written, including every injected anomaly.

    Raises:
        DataError: Sizes too small to hold anomalies, or the folder cannot be written.
    """
    low, high = anomalies_per_channel
    if channels < 1 or train_length < 200 or test_length < 1000 or not 0 <= low <= high:
        raise DataError(
            f"synth needs channels >= 1, train_length >= 200, test_length >= 1000 and "
            f"0 <= min <= max anomalies; got {channels}, {train_length}, {test_length}, "
            f"{anomalies_per_channel}"
        )
    if features < 2:
        raise DataError(f"synth needs features >= 2 (a value and a command), got {features}")
    spacecraft = normalise_spacecraft(spacecraft)
    try:
        (out / "train").mkdir(parents=True, exist_ok=True)
        (out / "test").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the synthetic data folder {out}: {err}") from err
    rng = np.random.default_rng(seed)
    names = channel_names(channels)
    counts = rng.integers(low, high + 1, size=channels)
    # Deal the kinds round-robin from a shuffled deck so every kind appears early.
    deck = [str(k) for k in rng.permutation(ANOMALY_KINDS)]
    kinds_for = [[deck[(int(counts[:i].sum()) + j) % len(deck)] for j in range(int(counts[i]))]
                 for i in range(channels)]  # fmt: skip
    anomalies: list[InjectedAnomaly] = []
    for index, name in enumerate(names):
        profile = _profile(rng, features - 1)
        train_raw, _, train_cmd = _series(profile, 0, train_length, rng)
        test_raw, test_orbit, test_cmd = _series(profile, train_length, test_length, rng)
        # Scale with the clean signal's range so normal values fill [-0.9, 0.9].
        both = np.concatenate([train_raw, test_raw])
        centre, half = (both.max() + both.min()) / 2, max((both.max() - both.min()) / 2, 1e-6)

        def scale(x: np.ndarray, centre: float = centre, half: float = half) -> np.ndarray:
            return (x - centre) / half * _MARGIN

        t_test = np.arange(train_length, train_length + test_length, dtype=np.float64)
        shifted = scale(test_raw - test_orbit + _orbit(profile, t_test, np.pi))
        train_value = scale(train_raw) + rng.normal(0, profile.noise, train_length)
        test_noise = rng.normal(0, profile.noise, test_length)
        test_value = scale(test_raw) + test_noise
        for start, length, kind in _plan_anomalies(
            kinds_for[index], test_length, profile.period, rng
        ):
            inject(kind, test_value, start, length, rng, out_of_phase=shifted + test_noise)
            anomalies.append(InjectedAnomaly(name, start, start + length - 1, kind))
        np.clip(train_value, -1.0, 1.0, out=train_value)
        np.clip(test_value, -1.0, 1.0, out=test_value)
        np.save(out / "train" / f"{name}.npy", np.column_stack([train_value, train_cmd]))
        np.save(out / "test" / f"{name}.npy", np.column_stack([test_value, test_cmd]))
        if on_channel is not None:
            on_channel(name)
    _write_labels(out, names, anomalies, test_length, spacecraft)
    LOGGER.info("wrote %d synthetic channels, %d anomalies, to %s", channels, len(anomalies), out)
    return SynthSummary(out, names, anomalies, train_length, test_length)
