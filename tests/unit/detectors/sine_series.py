"""The small telemetry-like series the streaming detectors' unit tests train and score on."""

from __future__ import annotations

import numpy as np


def sine_series(steps: int, seed: int = 0) -> np.ndarray:
    """``(steps, 3)`` rows: a noisy sine as the telemetry value, two zero command columns."""
    rng = np.random.default_rng(seed)
    data = np.zeros((steps, 3), np.float32)
    data[:, 0] = np.sin(np.arange(steps) / 5.0) + 0.01 * rng.normal(size=steps)
    return data
