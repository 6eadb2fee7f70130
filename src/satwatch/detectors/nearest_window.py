"""Distance to the nearest training window: a detector that needs no training.

For each time step, the score is the Euclidean distance from the window of the last
``window`` telemetry values (column 0) ending there to the nearest window of the same length
in the channel's training split (an AB-join of the matrix profile). Telemetry that repeats
what training saw scores near 0; a shape training never showed scores high.

Served, the model keeps every training window: one matrix product gives the dot products of
the chunk's windows with all training windows, so a step costs O(training length x window).
The stream state is the last ``window - 1`` values (``recent_values``) and
the count of steps seen (``steps_seen``): a window not yet complete at a stream's start
scores 0, and a stream of chunks passing the state on scores as the whole series does.

Calibration scores the training split against itself with the trivial matches (windows
overlapping by more than three quarters) left out, :func:`training_scores`: the score a normal
window gets when it is not its own neighbour.

Example::

    model = fit([train], Params.quick(), seed=0)
    scores = score(model, test)            # (T,), 0 for the first window - 1 steps
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from satwatch.detectors.artifacts import load_trained
from satwatch.detectors.onnx_file import export_stream_graph
from satwatch.exceptions import DataError, ModelError

LOGGER = logging.getLogger(__name__)

THRESHOLD_RULE = "pot-clamped"
"""The anomaly_detected threshold: just above the largest training (self-join) score."""

STATES = ("recent_values", "steps_seen")
"""The served stream state: the last ``window - 1`` values, and how many steps came before."""


@dataclass
class Params:
    """Nearest-window hyperparameters.

    Attributes:
        window: Steps per window.
        epochs: Training is one pass that keeps the training windows (progress counts it).
    """

    window: int = 40
    epochs: int = 1

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ModelError(f"nearest-window window: expected at least 2 steps, got {self.window}")

    @classmethod
    def quick(cls) -> Params:
        """Windows of 40 steps (chosen on the validation channels; nothing to train)."""
        return cls()

    @classmethod
    def full(cls) -> Params:
        """The same as quick: the detector has no training budget."""
        return cls()


class NearestWindow(nn.Module):
    """The served computation: chunk + state -> score, decision and the next state."""

    def __init__(self, params: Params, n_features: int = 25, n_windows: int = 1) -> None:
        super().__init__()
        self.params = params
        self.n_features = n_features
        self.register_buffer("centre", torch.zeros(()))
        self.register_buffer("kernels", torch.zeros(params.window, n_windows))
        self.register_buffer("kernel_norms", torch.zeros(n_windows))
        self.register_buffer("last_values", torch.zeros(n_windows))
        self.register_buffer("threshold", torch.tensor(float("inf")))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        # The training windows' count is the saved state's: size the buffers to it first.
        for name in ("kernels", "kernel_norms", "last_values"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_training(self, values: np.ndarray) -> None:
        """Keep every window of the training values (column 0) as a column of ``kernels``.

        Values are centred on their training mean first: the distances come from
        ``|q|^2 + |w|^2 - 2 q.w``, whose float32 rounding grows with the norms.
        """
        centre = float(np.mean(values))
        windows = np.lib.stride_tricks.sliding_window_view(values - centre, self.params.window)
        self.centre = torch.tensor(centre, dtype=torch.float32)
        self.kernels = torch.as_tensor(np.ascontiguousarray(windows.T, dtype=np.float32))
        self.kernel_norms = torch.as_tensor((windows.astype(np.float64) ** 2).sum(axis=1)).float()
        self.last_values = torch.as_tensor(np.ascontiguousarray(windows[:, -1] + centre)).float()

    def forward(
        self, input_data: Tensor, recent_values: Tensor, steps_seen: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(T, F), (1, W-1), (1, 1)`` -> reconstruction, score, detected, both states out.

        The states are rank 2, as the other detectors' are, so ``custom_logic`` declares them
        all alike.
        """
        window = self.params.window
        series = torch.cat([recent_values[0], input_data[:, 0]])
        # Each step's window as a row, then one matrix product with every training window:
        # a row's sums do not depend on how many rows the chunk has, so chunks score exactly
        # as the whole series. Sizes come from tensors, never Python numbers, so the exported
        # graph keeps the time axis dynamic.
        ones = torch.ones_like(input_data[:, 0])
        position = torch.cumsum(ones, dim=0) - 1.0  # 0, 1, ..., T-1
        rows = position.long().unsqueeze(1) + torch.arange(window).unsqueeze(0)
        windows = series[rows] - self.centre
        distances = (
            (windows * windows).sum(dim=1, keepdim=True)
            + self.kernel_norms.unsqueeze(0)
            - 2.0 * (windows @ self.kernels)
        )
        nearest, index = distances.min(dim=1)
        complete = position + steps_seen[0] >= float(window - 1)
        score = torch.where(complete, torch.sqrt(torch.clamp(nearest, min=0.0)), 0.0)
        # The "reconstruction": the nearest training window's last value in column 0.
        reconstruction = torch.cat([self.last_values[index].unsqueeze(1), input_data[:, 1:]], 1)
        return (
            reconstruction,
            score,
            score > self.threshold,
            series[-(window - 1) :].unsqueeze(0),
            steps_seen + ones.sum(),
        )


def build_model(params: Params, n_features: int = 25) -> NearestWindow:
    """An empty model (its training windows are set by :func:`fit` or a state dict)."""
    return NearestWindow(params, n_features)


def _values(series: np.ndarray, what: str) -> np.ndarray:
    data = np.asarray(series, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] < 1 or not np.isfinite(data).all():
        raise DataError(f"nearest-window {what}: expected a finite (T, F) array, got {data.shape}")
    return data[:, 0]


def fit(
    train: list[np.ndarray],
    params: Params,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> NearestWindow:
    """Keep the training windows of one channel (``train`` holds its one series)."""
    if len(train) != 1:
        raise ModelError(f"nearest-window: expected one training series, got {len(train)}")
    values = _values(train[0], "training series")
    if values.size < params.window:
        raise DataError(
            f"nearest-window: expected at least {params.window} training steps, got {values.size}"
        )
    model = build_model(params, train[0].shape[1])
    model.set_training(values)
    if on_epoch is not None:
        on_epoch(1, 0.0)
    return model.eval()


@torch.inference_mode()
def score(model: NearestWindow, series: np.ndarray) -> np.ndarray:
    """The per-step score of a whole series from a fresh stream, as served."""
    data = torch.as_tensor(np.asarray(series, dtype=np.float32))
    history = model.params.window - 1
    out = model(data, torch.zeros(1, history), torch.zeros(1, 1))
    return out[1].numpy()


def training_scores(model: NearestWindow, series: np.ndarray) -> np.ndarray:
    """Calibration scores: each training window's distance to its nearest non-trivial match.

    Windows closer than a quarter window to each other are the same stretch of telemetry
    (stumpy's exclusion zone), so they are left out; the first ``window - 1`` steps score 0
    as served.
    """
    values = _values(series, "training series").astype(np.float64)
    window = model.params.window
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    norms = (windows**2).sum(axis=1)
    distances = norms[:, None] + norms[None, :] - 2.0 * windows @ windows.T
    count = windows.shape[0]
    zone = int(np.ceil(window / 4))
    offsets = np.abs(np.arange(count)[:, None] - np.arange(count)[None, :])
    distances[offsets < zone] = np.inf
    nearest = np.sqrt(np.clip(distances.min(axis=1), 0.0, None))
    nearest[~np.isfinite(nearest)] = 0.0  # a series shorter than the zone has no match
    return np.concatenate([np.zeros(window - 1), nearest]).astype(np.float32)


# --- served file ---------------------------------------------------------------------------


def export_trained(folder: Path, path: Path) -> Path:
    """Write the artifact in ``folder`` as the served ONNX graph at ``path`` (threshold baked)."""
    model, card = load_trained(folder)
    model.threshold.fill_(float(card["threshold"]))
    history = model.params.window - 1
    example = (torch.zeros(300, model.n_features), torch.zeros(1, history), torch.zeros(1, 1))
    return export_stream_graph(model, example, path, STATES)
