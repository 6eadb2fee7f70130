"""Telemanom-style nonparametric dynamic threshold with pruning, as a causal streaming stage.

Hundman et al. (KDD 2018) threshold smoothed prediction errors without assuming a
distribution. This module applies their method to any non-negative anomaly score:

1. **Smooth** the score with an exponentially weighted moving average (EWMA,
   ``alpha = 2 / (span + 1)``; ``span`` 1 = no smoothing).
2. Every ``batch`` steps, take the **window** of the last ``window`` smoothed values (fewer at
   the start of a stream) with mean ``mu`` and standard deviation ``sigma``, and choose
   ``epsilon = mu + z * sigma`` for ``z`` in ``z_range`` maximising
   ``(d_mu / mu + d_sigma / sigma) / (n_above + n_sequences ** 2)``, where ``d_mu`` and
   ``d_sigma`` are the drops of the mean and standard deviation when the values above
   ``epsilon`` are removed, ``n_above`` the number of those values and ``n_sequences`` the
   number of contiguous runs they form. Only ``z`` with at most ``max_sequences`` runs and
   fewer than half the window above qualify; without any, ``epsilon`` is at the largest ``z``.
3. **Prune**: the maxima of the runs above ``epsilon``, sorted in decreasing order and followed
   by the largest value below ``epsilon``, are walked from the top; every run down to the last
   relative drop ``(m_i - m_{i+1}) / m_i >= min_decrease`` survives, the rest are dropped
   (with no such drop, none survive).
4. **Decide**: the steps of the newest batch that lie in a surviving run and whose smoothed
   score is above ``min_score`` (a floor in the score's own units, e.g. from training data)
   are anomalous, except the stream's first ``burn_in`` steps; in its first
   ``early_steps`` steps the floor is ``early_floor`` times higher.

One engine, :func:`decide_and_confirm`, does this in a single causal pass. It decides every
step when it arrives, with what the last completed batch chose (the served per-step alarm),
and *confirms* each batch when it completes by steps 2 to 4 over the window ending there
(Telemanom's batch rule, at most ``batch - 1`` steps late). At the end of a series
:func:`decide_tail` confirms the incomplete last batch by the same rule. :func:`confirm_series`
applies the batch rule to a whole series (offline studies); :func:`ewma` is step 1 alone
(the build-time floor is fitted on it).

Streams: :class:`ArrivalState` holds everything the next chunk needs (the EWMA value, the
last threshold and what a new run must reach, whether the last step was anomalous, the last
``window`` smoothed values). Feeding chunks one by one with the state carried gives exactly
(bit for bit) the decisions of one call over the whole series. Smoothed values and thresholds
are rounded to float32, so the state vector (:meth:`ArrivalState.to_array`) can travel as an
FP32 tensor without changing any decision.

Example::

    settings = DynamicSettings(window=2000, batch=10)
    first = decide_and_confirm(scores[:500], ArrivalState(), 0, settings)
    rest = decide_and_confirm(scores[500:], first.state, 500, settings)
    alarms = np.concatenate([first.decision, rest.decision])  # decided on arrival
    confirmed = np.concatenate([first.confirmed, rest.confirmed])  # complete batches
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)


FLOOR_RULES = ("pot", "max")
"""How a channel's floor is fitted on its smoothed training scores (``DynamicSettings.floor``)."""


@dataclass(frozen=True)
class DynamicSettings:
    """The dynamic threshold's hyperparameters (the same for every channel).

    Attributes:
        span: EWMA span of the smoothing in steps (1 = none).
        window: Past smoothed values the threshold is computed over.
        batch: Steps decided together; the decision delay is at most ``batch - 1``.
        z_min: Smallest ``z`` tried.
        z_max: Largest ``z`` tried (and the fallback).
        z_step: Step between tried ``z``.
        min_decrease: Pruning's minimum relative drop ``p`` between successive run maxima.
        max_sequences: Most runs above the threshold a candidate ``z`` may give.
        min_score: Smoothed values at or below this are never anomalous.
        floor: How the floor (``min_score``) is fitted on a channel's smoothed training scores:
            ``max`` (their largest value: nothing seen in training alarms) or ``pot`` (their
            POT threshold, risk 1e-3). Read by whoever fits the floor
            (:func:`satwatch.pipeline.calibration.training_statistics`).
        burn_in: The first ``burn_in`` steps of a stream are never anomalous: the window
            holds too little history to judge them.
        early_steps: For a stream's first ``early_steps`` steps the floor is ``early_floor``
            times ``min_score``: while the window is short, a modest rise stands out of it,
            so only a step well above anything training saw may raise an alarm.
        early_floor: The floor's factor over the first ``early_steps`` steps (1: none).
        z_power: Each detector's training z-score is raised to this power before the fusion
            (``0.5``: its square root). Read by whoever fuses the z-scores
            (:func:`satwatch.pipeline.calibration.fused_z`); 1 leaves them as they are.
        z_weights: ``(kind, weight)`` pairs: a detector kind's powered z-score is multiplied
            by its weight before the fusion; a kind not named weighs 1. Config text
            ``"tranad=0.5"`` (pairs separated by commas). Read by whoever fits a channel's
            statistics (:func:`satwatch.pipeline.calibration.training_statistics`), which
            stores each score's weight in the channel's entry.
    """

    span: int = 1
    window: int = 2000
    batch: int = 1
    z_min: float = 2.5
    z_max: float = 12.0
    z_step: float = 0.5
    min_decrease: float = 0.13
    max_sequences: int = 5
    min_score: float = 0.0
    floor: str = "pot"
    burn_in: int = 0
    early_steps: int = 0
    early_floor: float = 1.0
    z_power: float = 1.0
    z_weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.floor not in FLOOR_RULES:
            raise DataError(
                f"dynamic threshold floor: expected one of {', '.join(FLOOR_RULES)}, "
                f"got {self.floor!r}"
            )
        for name in ("burn_in", "early_steps"):
            if getattr(self, name) < 0:
                raise DataError(
                    f"dynamic threshold {name}: expected 0 or more, got {getattr(self, name)}"
                )
        for name in ("span", "window", "batch", "max_sequences"):
            if getattr(self, name) < 1:
                raise DataError(
                    f"dynamic threshold {name}: expected at least 1, got {getattr(self, name)}"
                )
        if self.batch > self.window:
            raise DataError(
                f"dynamic threshold batch: expected at most the window ({self.window}), "
                f"got {self.batch}"
            )
        if not (self.z_step > 0 and self.z_min <= self.z_max):
            raise DataError(
                f"dynamic threshold z range: expected z_step > 0 and z_min <= z_max, got "
                f"{self.z_min}..{self.z_max} step {self.z_step}"
            )
        self._check_factors()
        if not 0 <= self.min_decrease < 1:
            raise DataError(
                f"dynamic threshold min_decrease: expected in [0, 1), got {self.min_decrease}"
            )

    def _check_factors(self) -> None:
        """The multipliers: the z power, the fusion weights and the early floor's factor."""
        if not (np.isfinite(self.z_power) and self.z_power > 0):
            raise DataError(f"dynamic threshold z_power: expected above 0, got {self.z_power}")
        for kind, weight in self.z_weights:
            if not (np.isfinite(weight) and weight > 0):
                raise DataError(
                    f"dynamic threshold z_weights: expected a weight above 0 for {kind!r}, "
                    f"got {weight}"
                )
        if not (np.isfinite(self.early_floor) and self.early_floor >= 1):
            raise DataError(
                f"dynamic threshold early_floor: expected 1 or more, got {self.early_floor}"
            )

    @property
    def z_values(self) -> np.ndarray:
        """The ``z`` tried, ascending."""
        count = int(np.floor((self.z_max - self.z_min) / self.z_step + 1e-9)) + 1
        return self.z_min + self.z_step * np.arange(count)

    def weight_of(self, kind: str) -> float:
        """The fusion weight of a detector kind (1 unless ``z_weights`` names it)."""
        return dict(self.z_weights).get(kind, 1.0)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str], prefix: str = "dt_") -> DynamicSettings:
        """Build from config ``parameters`` (strings) named ``<prefix><field>``."""
        values: dict[str, object] = {}
        for name, default in cls().__dict__.items():
            text = parameters.get(prefix + name)
            if text in (None, ""):
                continue
            if name == "z_weights":
                values[name] = _kind_weights(text, prefix + name)
                continue
            try:
                values[name] = type(default)(text)
            except ValueError as error:
                raise DataError(f"parameter {prefix}{name}: got {text!r}") from error
        return cls(**values)


def _kind_weights(text: str, parameter: str) -> tuple[tuple[str, float], ...]:
    """``"tranad=0.5,omni=2"`` -> ``(("tranad", 0.5), ("omni", 2.0))``."""
    pairs = []
    for item in text.split(","):
        kind, sep, weight = (part.strip() for part in item.partition("="))
        try:
            if not (sep and kind):
                raise ValueError(item)
            pairs.append((kind, float(weight)))
        except ValueError as error:
            raise DataError(
                f"parameter {parameter}: expected kind=weight pairs such as 'tranad=0.5', "
                f"got {text!r}"
            ) from error
    kinds = [kind for kind, _ in pairs]
    if len(set(kinds)) != len(kinds):
        raise DataError(f"parameter {parameter}: a kind named twice in {text!r}")
    return tuple(pairs)


def ewma(scores: np.ndarray, span: int, level: float = float("nan")) -> tuple[float, np.ndarray]:
    """EWMA of ``scores`` continuing from ``level``: ``(last level, smoothed float64 values)``.

    ``alpha = 2 / (span + 1)``; ``level`` ``nan`` (a new stream) starts at the first score.
    """
    values = np.asarray(scores, np.float64).reshape(-1).tolist()
    alpha = 2.0 / (span + 1.0)
    keep = 1.0 - alpha
    # Same operations in the same order chunked or whole: bit-identical results. Each level
    # is rounded to float32 so the state survives an FP32 tensor unchanged: storing it in a
    # float32 array rounds it as numpy's float32 does, ten times faster than a numpy scalar
    # per step.
    out = array("f", bytes(4 * len(values)))
    for i, value in enumerate(values):
        level = value if level != level else alpha * value + keep * level  # nan: a new stream
        out[i] = level
        level = out[i]
    return float(level), np.frombuffer(out, np.float32).astype(np.float64)


def choose_epsilon(values: np.ndarray, settings: DynamicSettings) -> float:
    """Telemanom's threshold for one window of smoothed values (step 2 of the module doc)."""
    return float(choose_epsilons(np.asarray(values, np.float64)[None, :], settings)[0])


def choose_epsilons(
    windows: np.ndarray, settings: DynamicSettings, lengths: np.ndarray | None = None
) -> np.ndarray:
    """:func:`choose_epsilon` of each row of ``windows`` ``(K, W)``, all rows at once.

    A chunk's batch ends are thresholded together: one call per chunk instead of one per
    batch, the numpy overhead of ~20 small operations paid once (each row's answer is the
    same whatever the other rows). With ``lengths``, row ``k`` is the window of its first
    ``lengths[k]`` values and ``-inf`` after them (the shorter windows of a stream's start).

    Only the values above the smallest candidate ``epsilon`` can be above any candidate, and
    ``z_min`` standard deviations above the mean leaves at most ``1 / z_min ** 2`` of a window
    there (Chebyshev), so each candidate's count, sum and sum of squares above it are taken
    over those few values; below it, they are the window's totals less those. No window is
    sorted.
    """
    values = np.asarray(windows, np.float64)
    if lengths is None:
        size = np.full((values.shape[0], 1), values.shape[1])
        mean, std = values.mean(axis=1), values.std(axis=1)
        centred = values - mean[:, None]
        totals = centred.sum(axis=1)
        squared = np.einsum("kw,kw->k", centred, centred)
    else:
        size = np.asarray(lengths)[:, None]
        mean, std, centred, totals, squared = _prefix_moments(values, size[:, 0])
    z_values = settings.z_values
    epsilons = mean[:, None] + z_values[None, :] * std[:, None]
    # A run starts at each step above epsilon whose predecessor is not, so runs =
    # #(v > e) - #(min(v, previous v) > e); the first step has no predecessor above.
    n_above, sums_above, squares_above = _above(centred, epsilons - mean[:, None], (0, 1, 2))
    (n_both,) = _above(np.minimum(values[:, 1:], values[:, :-1]), epsilons, (0,))
    n_sequences = n_above - n_both
    n_below = size - n_above
    sums = totals[:, None] - sums_above
    squares = squared[:, None] - squares_above
    with np.errstate(invalid="ignore", divide="ignore"):
        below_centred = sums / n_below
        below_var = np.maximum(squares / n_below - below_centred**2, 0.0)
        below_mean = mean[:, None] + below_centred
        d_mean = np.where(mean[:, None] > 0, (mean[:, None] - below_mean) / mean[:, None], 0.0)
        d_std = (std[:, None] - np.sqrt(below_var)) / std[:, None]
        valid = (n_above > 0) & (n_above < size / 2) & (n_sequences <= settings.max_sequences)
        score = np.where(valid, (d_mean + d_std) / (n_above + n_sequences**2), -np.inf)
    # argmax keeps the smallest z among ties, as a loop over ascending z with ">" does.
    best_z = z_values[np.argmax(score, axis=1)]
    chosen = mean + best_z * std
    return np.where((std > 0) & valid.any(axis=1), chosen, epsilons[:, -1])


def _prefix_moments(values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(mean, std, centred, sum of centred, sum of squared centred)`` of each row's first
    ``lengths`` values; ``centred`` is ``-inf`` after them.

    Each row's reductions run over its own values alone, shaped as one full row is, so they
    are the full-row figures bit for bit (a padded row would sum in another order).
    """
    count = values.shape[0]
    mean, std, totals, squared = (np.empty(count) for _ in range(4))
    centred = np.full_like(values, -np.inf)
    for k, length in enumerate(lengths.tolist()):
        row = values[k : k + 1, :length]
        mean[k], std[k] = row.mean(axis=1)[0], row.std(axis=1)[0]
        centred[k, :length] = row[0] - mean[k]
        part = centred[k : k + 1, :length]
        totals[k] = part.sum(axis=1)[0]
        squared[k] = np.einsum("kw,kw->k", part, part)[0]
    return mean, std, centred, totals, squared


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2-D mask, row-major: ~10x faster through the flat indices."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _above(rows: np.ndarray, cuts: np.ndarray, powers: tuple[int, ...]) -> list[np.ndarray]:
    """Per row of ``rows`` ``(K, W)`` and each of its ascending ``cuts`` ``(K, Z)``: for each of
    ``powers``, the sum of ``value ** power`` over the values above the cut, ``(K, Z)`` (power
    0: how many there are).

    The values above a row's lowest cut are picked out first and binned by how many of the
    row's cuts each exceeds; a cut's figure is the sum of the bins above it. Each row's
    figures come from its own values only, so a row's answer does not depend on the others.
    """
    count, width = cuts.shape
    row, column = _nonzero(rows > cuts[:, :1])
    picked = rows[row, column]
    # Band b (1..width): the value exceeds the row's b lowest cuts, so it counts for cuts 0..b-1.
    bands = row * (width + 1) + (picked[:, None] > cuts[row]).sum(axis=1)
    sums = []
    for p in powers:
        per_band = np.bincount(bands, weights=picked**p, minlength=count * (width + 1)).reshape(
            count, width + 1
        )
        # Cut z: bands z+1..width, summed from the top band down.
        sums.append(np.cumsum(per_band[:, :0:-1], axis=1)[:, ::-1])
    return sums


def surviving_runs(
    values: np.ndarray, epsilon: float, min_decrease: float
) -> list[tuple[int, int]]:
    """Runs of ``values > epsilon`` that survive pruning (step 3 of the module doc)."""
    values = np.asarray(values, np.float64)
    return surviving_runs_of_rows(values[None, :], np.array([epsilon]), min_decrease)[0]


def surviving_runs_of_rows(
    windows: np.ndarray,
    epsilons: np.ndarray,
    min_decrease: float,
    lengths: np.ndarray | None = None,
) -> list[list[tuple[int, int]]]:
    """:func:`surviving_runs` of each row of ``windows`` ``(K, W)`` with its own epsilon
    (``lengths``: as :func:`choose_epsilons` takes them, the rows ``-inf`` after their end).

    A chunk's batch ends are pruned together, as :func:`choose_epsilons` thresholds them:
    the runs of all rows are found, ranked and cut in a few array operations instead of ~15
    small ones per row. Each row's runs are computed from that row alone, with the same
    arithmetic as for one window, so the answer is the same bit for bit.

    Returns:
        Per row, its surviving runs ``(first, last)`` (column indices), in step order.
    """
    windows = np.asarray(windows, np.float64)
    count, width = windows.shape
    above = windows > np.asarray(epsilons, np.float64)[:, None]
    row, column = _nonzero(above)  # row-major: each row's steps in order
    runs: list[list[tuple[int, int]]] = [[] for _ in range(count)]
    if not row.size:
        return runs
    # A run starts at a row's first step above epsilon or after a step that is not above.
    starts = np.ones(row.size, bool)
    starts[1:] = (row[1:] != row[:-1]) | (column[1:] - column[:-1] > 1)
    firsts = np.flatnonzero(starts)
    lasts = np.append(firsts[1:] - 1, row.size - 1)
    maxima = np.maximum.reduceat(windows[row, column], firsts)
    run_rows = row[firsts]
    # Each row's chain ends at its largest value below epsilon (0 when every value is above).
    floors = np.where(above, -np.inf, windows).max(axis=1)
    floors[above.sum(axis=1) == (width if lengths is None else np.asarray(lengths))] = 0.0
    # Per row, maxima in decreasing order, ties in step order (a stable sort).
    order = np.lexsort((-maxima, run_rows))
    ranked_rows, ranked = run_rows[order], maxima[order]
    last_of_row = np.append(ranked_rows[1:] != ranked_rows[:-1], True)
    following = np.where(last_of_row, floors[ranked_rows], np.append(ranked[1:], 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        drops = np.where(ranked > 0, (ranked - following) / ranked, 0.0)
    first_of_row = np.searchsorted(ranked_rows, ranked_rows)
    rank = np.arange(ranked.size) - first_of_row
    # Every run down to the row's last big drop survives.
    keep = np.zeros(count, np.int64)
    big = drops >= min_decrease
    np.maximum.at(keep, ranked_rows[big], rank[big] + 1)
    survivors = np.sort(order[rank < keep[ranked_rows]])
    for j in survivors.tolist():
        runs[int(run_rows[j])].append((int(column[firsts[j]]), int(column[lasts[j]])))
    return runs


@dataclass(frozen=True)
class ArrivalState:
    """What :func:`decide_on_arrival` carries between chunks (FP32-exact).

    Attributes:
        level: The EWMA value after the last step (``nan`` before the first).
        epsilon: The threshold chosen at the last completed batch (``nan`` before the first),
            rounded to float32.
        cut: What a new run must reach to count between batches (see
            :func:`decide_on_arrival`; ``inf`` before the first batch).
        flagged: Whether the last step was anomalous.
        history: The last ``window`` (or fewer) smoothed values, oldest first.
    """

    level: float = float("nan")
    epsilon: float = float("nan")
    cut: float = float("inf")
    flagged: bool = False
    history: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    HEAD = 5  # level, epsilon, cut, flagged, history length

    def to_array(self) -> np.ndarray:
        """A flat float32 vector ``[level, epsilon, cut, flagged, n, history...]``."""
        head = [self.level, self.epsilon, self.cut, float(self.flagged), self.history.size]
        return np.concatenate([np.asarray(head, np.float32), self.history.astype(np.float32)])

    @classmethod
    def from_array(cls, values: np.ndarray) -> ArrivalState:
        """Read a vector written by :meth:`to_array`.

        Raises:
            DataError: If its length does not match its recorded history length.
        """
        flat = np.asarray(values, np.float32).reshape(-1)
        if flat.size < cls.HEAD or flat.size != cls.HEAD + int(flat[4]):
            raise DataError(
                f"dynamic threshold state: expected [level, epsilon, cut, flagged, n, n values], "
                f"got {flat.size} values"
            )
        level, epsilon, cut, flagged = (float(v) for v in flat[:4])
        return cls(level, epsilon, cut, bool(flagged), flat[cls.HEAD :].astype(np.float64))


@dataclass(frozen=True)
class ArrivalResult:
    """What :func:`decide_and_confirm` gives for one chunk.

    Attributes:
        smoothed: Smoothed scores, float32 ``(T,)``.
        decision: On-arrival decisions, bool ``(T,)``.
        state: The state for the next chunk.
        confirmed_first: Stream step of the first confirmed decision.
        confirmed: Decisions of the batches completed in this chunk, from ``confirmed_first``
            on (their first steps may belong to the previous chunk).
    """

    smoothed: np.ndarray
    decision: np.ndarray
    state: ArrivalState
    confirmed_first: int
    confirmed: np.ndarray


def decide_and_confirm(
    scores: np.ndarray, state: ArrivalState, offset: int, settings: DynamicSettings
) -> ArrivalResult:
    """The served rule: smooth, decide each step when it arrives, confirm at batch ends.

    Every ``batch`` steps (stream steps ``batch - 1``, ``2 * batch - 1``, ...) the threshold
    and pruning of the module doc are computed over the window ending at that step, which is
    anomalous if it lies in a surviving run above ``min_score``. Any other step is decided
    with what the last completed batch chose: anomalous if its smoothed value is above that
    ``epsilon`` and ``min_score``, and either the previous step was anomalous (a surviving
    run goes on) or the value reaches ``cut``: the smallest maximum that survived pruning (a
    new run as high as the ones kept) or, when none did, the window's maximum over
    ``1 - min_decrease`` (a new run pruning would keep). Steps before the first completed
    batch and the first ``burn_in`` steps are normal, and in the first ``early_steps`` the
    floor is ``early_floor`` times ``min_score``.
    Every decision depends on the step and earlier ones only, so chunks give the decisions
    of the whole series.

    The same pass *confirms* each batch when it completes: the batch's steps that lie in a
    surviving run of that window, above the floor and past ``burn_in`` (the batch rule of
    the module doc, at most ``batch - 1`` steps late, without a second pass).

    Args:
        scores: The chunk's scores, ``(T,)``.
        state: The state after the previous chunk (``ArrivalState()`` for a new stream).
        offset: Stream index of the chunk's first step.
        settings: The dynamic threshold's settings (``min_score`` is the floor).

    Returns:
        The smoothed values, on-arrival decisions, next state and confirmed decisions.
    """
    level, smoothed = ewma(scores, settings.span, state.level)
    joined = np.concatenate([state.history, smoothed])
    base = state.history.size
    epsilon, cut = state.epsilon, state.cut
    confirmed: list[np.ndarray] = []
    # Each step's epsilon and cut are the last completed batch's; a batch end sets its own
    # decision (the steps between follow from it, below).
    epsilons = np.full(smoothed.size, epsilon)
    cuts = np.full(smoothed.size, cut)
    set_at = np.zeros(smoothed.size, bool)
    set_to = np.zeros(smoothed.size, bool)
    eligible = _eligible(smoothed, offset, settings)
    # The chunk's batch ends, thresholded and pruned together.
    batch_ends = np.arange((-offset - 1) % settings.batch, smoothed.size, settings.batch)
    choices = _batch_choices(joined, base + batch_ends + 1, settings)
    for i, (chosen, kept) in zip(batch_ends.tolist(), choices, strict=True):
        end = base + i + 1
        window = joined[max(0, end - settings.window) : end]
        first = offset + i + 1 - settings.batch
        confirmed.append(_tail_decisions(window, kept, settings.batch, first, settings))
        set_at[i] = True
        set_to[i] = bool(kept) and kept[-1][1] == window.size - 1 and eligible[i]
        # float32 values: the state carries them exactly through an FP32 tensor.
        epsilon = float(np.float32(chosen))
        if kept:
            cut = min(float(window[s : e + 1].max()) for s, e in kept)
        else:
            # Pruning would keep a lone new run whose maximum drops to everything else in
            # the window by at least min_decrease.
            cut = float(np.float32(float(window.max()) / (1 - settings.min_decrease)))
        epsilons[i + 1 :] = epsilon
        cuts[i + 1 :] = cut
    decision = _arrival_decisions(smoothed, epsilons, cuts, eligible, set_at, set_to, state.flagged)
    flagged = bool(decision[-1]) if decision.size else state.flagged
    history = joined[max(0, joined.size - settings.window) :].copy()
    new_state = ArrivalState(level, epsilon, float(cut), flagged, history)
    pending = offset % settings.batch
    return ArrivalResult(
        smoothed.astype(np.float32),
        decision,
        new_state,
        offset - pending,
        np.concatenate(confirmed) if confirmed else np.zeros(0, bool),
    )


def _arrival_decisions(
    values: np.ndarray,
    epsilons: np.ndarray,
    cuts: np.ndarray,
    eligible: np.ndarray,
    set_at: np.ndarray,
    set_to: np.ndarray,
    flagged: bool,
) -> np.ndarray:
    """Each step's on-arrival decision (see :func:`decide_and_confirm`).

    Between batch ends an ``eligible`` step is anomalous if its value is above its
    ``epsilon`` and either the previous step was anomalous (a run goes on) or the value
    reaches ``cut`` (a new run starts); any other step ends a run, and before the first
    batch (``epsilon`` nan) every step is normal. A batch end (``set_at``) takes the
    decision ``set_to`` its window gave. So each step copies the newest step at or before it
    that decides by itself (a run starting or ending, or a batch end), or ``flagged``, the
    previous chunk's last decision, when there is none: a few array passes, not a loop.
    """
    with np.errstate(invalid="ignore"):  # nan epsilon: every comparison is False
        above = (values > epsilons) & eligible
        starts = above & (values >= cuts)
    decides = set_at | ~above | starts
    outcome = np.where(set_at, set_to, starts)
    newest = np.maximum.accumulate(np.where(decides, np.arange(values.size), -1))
    return np.where(newest >= 0, outcome[np.maximum(newest, 0)], flagged)


def _batch_choices(
    values: np.ndarray, ends: np.ndarray, settings: DynamicSettings
) -> Iterator[tuple[float, list[tuple[int, int]]]]:
    """``(epsilon, surviving runs)`` of the window ending before each of ``ends`` (indices
    into ``values``): the full windows in one call each, the shorter ones of a stream's start
    in another."""
    epsilons = np.empty(ends.size, np.float64)
    runs: list[list[tuple[int, int]]] = [[] for _ in range(ends.size)]
    full = np.flatnonzero(ends >= settings.window)
    if full.size:
        windows = np.lib.stride_tricks.sliding_window_view(values, settings.window)
        rows = windows[ends[full] - settings.window]
        epsilons[full] = choose_epsilons(rows, settings)
        pruned = surviving_runs_of_rows(rows, epsilons[full], settings.min_decrease)
        for k, kept in zip(full.tolist(), pruned, strict=True):
            runs[k] = kept
    short = np.flatnonzero(ends < settings.window)
    if short.size:
        # A stream's first windows start at its first step: each is a prefix of ``values``.
        lengths = ends[short]
        longest = int(lengths.max())
        rows = np.where(np.arange(longest) < lengths[:, None], values[None, :longest], -np.inf)
        epsilons[short] = choose_epsilons(rows, settings, lengths)
        pruned = surviving_runs_of_rows(rows, epsilons[short], settings.min_decrease, lengths)
        for k, kept in zip(short.tolist(), pruned, strict=True):
            runs[k] = kept
    for k in range(ends.size):
        yield float(epsilons[k]), runs[k]


def decide_tail(
    window: np.ndarray, count: int, first_step: int, settings: DynamicSettings
) -> tuple[np.ndarray, float]:
    """The batch rule for the newest ``count`` steps of ``window`` (steps 2 to 4 of the module doc).

    Used at each completed batch, and at the end of a stream for its incomplete last batch.

    Args:
        window: The last ``window`` (or fewer) smoothed values, ending at the newest step.
        count: How many of the newest steps to decide.
        first_step: Stream index of the first of them (for ``burn_in``).
        settings: The dynamic threshold's settings (``min_score`` is the floor).

    Returns:
        The ``count`` decisions and the threshold chosen.
    """
    epsilon = choose_epsilon(window, settings)
    kept = surviving_runs(window, epsilon, settings.min_decrease)
    return _tail_decisions(window, kept, count, first_step, settings), epsilon


def _tail_decisions(
    window: np.ndarray,
    kept: list[tuple[int, int]],
    count: int,
    first_step: int,
    settings: DynamicSettings,
) -> np.ndarray:
    """Decisions of the newest ``count`` steps of ``window`` given the surviving runs: a step is
    anomalous if it lies in a ``kept`` run and is :func:`_eligible` (``first_step`` is the
    stream index of the first of them).
    """
    in_run = np.zeros(window.size, bool)
    for start, end in kept:
        in_run[start : end + 1] = True
    tail = window[window.size - count :]
    return in_run[window.size - count :] & _eligible(tail, first_step, settings)


def _eligible(values: np.ndarray, first_step: int, settings: DynamicSettings) -> np.ndarray:
    """Which steps may be anomalous at all: past ``burn_in`` and above the floor, which is
    ``early_floor`` times ``min_score`` in the stream's first ``early_steps`` steps.
    ``first_step`` is the stream index of ``values[0]``."""
    steps = first_step + np.arange(values.size)
    floors = settings.min_score
    if first_step < settings.early_steps:  # past them (most calls), one floor for all
        floors = np.where(steps < settings.early_steps, floors * settings.early_floor, floors)
    return (values > floors) & (steps >= settings.burn_in)


def decide_on_arrival(
    scores: np.ndarray, state: ArrivalState, offset: int, settings: DynamicSettings
) -> tuple[np.ndarray, np.ndarray, ArrivalState]:
    """``(smoothed float32 (T,), decision bool (T,), next state)`` of :func:`decide_and_confirm`."""
    result = decide_and_confirm(scores, state, offset, settings)
    return result.smoothed, result.decision, result.state


@dataclass(frozen=True)
class SeriesResult:
    """What :func:`confirm_series` gives for a whole series.

    Attributes:
        smoothed: Smoothed scores, float32 ``(T,)``.
        decision: The batch rule's decisions, bool ``(T,)``: each complete batch confirmed at
            its end, the incomplete last batch at the end of the series.
    """

    smoothed: np.ndarray
    decision: np.ndarray


def confirm_series(
    scores: np.ndarray, settings: DynamicSettings, warm: np.ndarray | None = None
) -> SeriesResult:
    """Telemanom's batch rule over a whole series: :func:`decide_and_confirm`, then the tail.

    Args:
        scores: The series, ``(T,)``; its first step is stream step 0 (``burn_in``, batches).
        settings: The dynamic threshold's settings (``min_score`` is the floor).
        warm: Past (e.g. training) scores, smoothed before the series: they fill the window
            and start the EWMA but are never decided.

    Raises:
        DataError: If the scores are not finite.
    """
    values = np.asarray(scores, np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise DataError(
            f"dynamic threshold: expected finite scores, got {values.size} "
            f"values with {int((~np.isfinite(values)).sum())} not finite"
        )
    state = ArrivalState()
    if warm is not None and np.asarray(warm).size:
        level, smoothed = ewma(warm, settings.span)
        state = ArrivalState(level=level, history=smoothed[-settings.window :].copy())
    result = decide_and_confirm(values, state, 0, settings)
    decision = result.confirmed
    rest = values.size % settings.batch
    if rest:
        first = values.size - rest
        tail, _ = decide_tail(result.state.history, rest, first, settings)
        decision = np.concatenate([decision, tail])
    return SeriesResult(result.smoothed, decision)
