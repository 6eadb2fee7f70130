"""The stuck-value rule of postprocessing: a frozen telemetry value is an anomaly by itself.

A step whose value has repeated for longer than the channel's frozen limit
(:func:`satwatch.detectors.frozen.frozen_limit`, fitted on training and kept in
``thresholds.json``) is anomalous whatever the fused score says. In the fusion a frozen run
competes with every other score: one just past its limit stays under the floor, and a large
score elsewhere in the dynamic threshold's window hides a long one
(``benchmarks/frozen_fusion.py`` measured OR-ing the rule against steeper scores).

:class:`StuckState` is what a stream carries for it: the last value, its run, and the rule's
flags of the last steps, which postprocessing confirms a batch later than they arrive.

Example::

    flags, state = stuck_steps(values, values.size, limit, StuckState(), keep=9)
    more, state = stuck_steps(next_values, next_values.size, limit, state, keep=9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from satwatch.detectors.frozen import unchanged_runs
from satwatch.exceptions import DataError


@dataclass(frozen=True)
class StuckState:
    """The rule's stream state (FP32-exact).

    Attributes:
        last_value: The telemetry value of the last step (``nan`` before the first).
        run: The run ending at the last step: how many steps in a row repeated the value of
            the step before them.
        recent: The rule's flags of the last steps seen (at most ``keep``), oldest first.
    """

    last_value: float = float("nan")
    run: int = 0
    recent: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    HEAD = 3  # last value, run, number of recent flags

    def to_array(self) -> np.ndarray:
        """A flat float32 vector ``[last value, run, n, flags...]``."""
        head = [self.last_value, self.run, self.recent.size]
        return np.concatenate([np.asarray(head, np.float32), self.recent.astype(np.float32)])

    @classmethod
    def from_array(cls, values: np.ndarray) -> tuple[StuckState, np.ndarray]:
        """Read a vector written by :meth:`to_array` at the start of ``values``; return it
        and the values after it.

        Raises:
            DataError: If ``values`` is shorter than the recorded number of flags.
        """
        flat = np.asarray(values, np.float32).reshape(-1)
        count = int(flat[2]) if flat.size >= cls.HEAD else -1
        if count < 0 or flat.size < cls.HEAD + count:
            raise DataError(
                f"stuck-value state: expected [last value, run, n, n flags], got {flat.size} values"
            )
        recent = flat[cls.HEAD : cls.HEAD + count] > 0.5
        return cls(float(flat[0]), int(flat[1]), recent), flat[cls.HEAD + count :]


def stuck_steps(
    values: np.ndarray | None, count: int, limit: float, state: StuckState, keep: int
) -> tuple[np.ndarray, StuckState]:
    """The rule's flags of ``state.recent``'s steps followed by the chunk's, and the next state.

    ``values`` is the chunk's telemetry value, ``(count,)``; ``None`` (a caller without the
    telemetry) flags nothing and restarts the run. The state keeps the last ``keep`` flags.

    Raises:
        DataError: If ``values`` does not hold ``count`` steps, or ``keep`` is negative.
    """
    if keep < 0:
        raise DataError(f"stuck-value rule: expected keep >= 0, got {keep}")
    if values is None:
        flags, last, run = np.zeros(count, bool), float("nan"), 0
    else:
        values = np.asarray(values, np.float32).reshape(-1)
        if values.size != count:
            raise DataError(
                f"stuck-value rule: expected the telemetry value of each of the {count} "
                f"steps scored, got {values.size} values"
            )
        runs = unchanged_runs(values, state.last_value, state.run)
        flags = runs > limit if math.isfinite(limit) else np.zeros(values.size, bool)
        last, run = state.last_value, state.run
        if values.size:
            last, run = float(values[-1]), int(runs[-1])
    joined = np.concatenate([state.recent, flags])
    return joined, StuckState(last, run, joined[max(0, joined.size - keep) :].copy())
