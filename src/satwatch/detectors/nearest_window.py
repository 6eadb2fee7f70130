"""Distance to the nearest training window of the telemetry's shape: no training needed.

For each time step, the score is the Euclidean distance from the window of the last
``window`` telemetry values (column 0) ending there to the nearest window of the same length
in the channel's training split (an AB-join of the matrix profile), both windows first
centred on their own mean. Two things are taken out of the value before comparing:

- **its level**: a centred window compares shapes only, so telemetry at a level training
  never reached but moving as it did scores low; the other detectors see levels;
- **jumps that commands explain**: where a command column of a step is one the channel's
  training shows moving the value (:func:`explaining_commands`), the step's change is taken
  out (the value is continued from the step before), so a commanded level change is not a
  shape training never saw. A command never issued in training counts as explaining: nothing
  says it does not.

Telemetry that repeats what training saw scores near 0; a shape training never showed
(a spike, a burst of noise, a jump no command explains) scores high.

A **frozen value** is the exception: a flat window is close to the quietest training windows,
so it scores low. Postprocessing's stuck-value rule finds those (:mod:`satwatch.pipeline.stuck`).

Served, the model keeps every training window: one matrix product gives the dot products of
the chunk's windows with all training windows, so a step costs O(training length x window).
The stream state is the last ``window - 1`` changes of the value, with the explained ones
taken out (``recent_changes``), the last raw value (``last_value``) and the count of steps
seen (``steps_seen``): a window not yet complete at a stream's start scores 0, and a stream
of chunks passing the state on scores as the whole series does.

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

STATES = ("recent_changes", "last_value", "steps_seen")
"""The served stream state: the last ``window - 1`` corrected changes, the last raw value,
and how many steps came before."""

QUIET_QUANTILE = 99.0
"""A command explains jumps when its training steps' median change exceeds this percentile
of the changes on steps without a command."""


@dataclass
class Params:
    """Nearest-window hyperparameters.

    Attributes:
        window: Steps per window.
        epochs: Training is one pass that keeps the training windows (progress counts it).
    """

    window: int = 20
    epochs: int = 1

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ModelError(f"nearest-window window: expected at least 2 steps, got {self.window}")

    @classmethod
    def quick(cls) -> Params:
        """Windows of 20 steps (chosen on the validation channels; nothing to train)."""
        return cls()

    @classmethod
    def full(cls) -> Params:
        """The same as quick: the detector has no training budget."""
        return cls()


def explaining_commands(train: np.ndarray) -> np.ndarray:
    """Bool ``(F - 1,)``: the command columns whose steps may move the value (see module doc).

    A column explains when its training steps' median absolute change of column 0 is above
    :data:`QUIET_QUANTILE` of the changes on steps without any command, or when training
    never issues it.
    """
    values = train[:, 0].astype(np.float64)
    change = np.abs(np.diff(values, prepend=values[0]))
    issued = train[:, 1:] > 0.5
    quiet = ~issued.any(axis=1)
    limit = np.percentile(change[quiet], QUIET_QUANTILE) if quiet.any() else np.inf
    moving = [bool(col.any()) and np.median(change[col]) > limit for col in issued.T]
    return np.asarray(moving, bool) | ~issued.any(axis=0)


def corrected_values(series: np.ndarray, explaining: np.ndarray) -> np.ndarray:
    """Column 0 with each change on a step of an explaining command taken out (float64)."""
    values = series[:, 0].astype(np.float64)
    change = np.diff(values, prepend=values[0])
    change[(series[:, 1:][:, explaining] > 0.5).any(axis=1)] = 0.0
    return values[0] + np.cumsum(change)


def centred_windows(values: np.ndarray, window: int) -> np.ndarray:
    """Every window of ``values`` as a row, minus its own mean."""
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    return windows - windows.mean(axis=1, keepdims=True)


class NearestWindow(nn.Module):
    """The served computation: chunk + state -> score, decision and the next state."""

    def __init__(self, params: Params, n_features: int = 25, n_windows: int = 1) -> None:
        super().__init__()
        self.params = params
        self.n_features = n_features
        self.register_buffer("explaining", torch.zeros(n_features - 1))
        self.register_buffer("kernels", torch.zeros(params.window, n_windows))
        self.register_buffer("kernel_norms", torch.zeros(n_windows))
        self.register_buffer("last_values", torch.zeros(n_windows))
        self.register_buffer("threshold", torch.tensor(float("inf")))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        # The training windows' count is the saved state's: size the buffers to it first.
        for name in ("kernels", "kernel_norms", "last_values"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        # Artifacts trained while this graph scored frozen runs itself carry two buffers for
        # it; the rule is postprocessing's now, and the rest of such an artifact is sound.
        for name in ("frozen_limit", "frozen_scale"):
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_training(self, train: np.ndarray) -> None:
        """Keep every centred window of the corrected training values as a column of ``kernels``."""
        explaining = explaining_commands(train)
        windows = centred_windows(corrected_values(train, explaining), self.params.window)
        self.explaining = torch.as_tensor(explaining.astype(np.float32))
        self.kernels = torch.as_tensor(np.ascontiguousarray(windows.T, dtype=np.float32))
        self.kernel_norms = torch.as_tensor((windows**2).sum(axis=1)).float()
        last = train[self.params.window - 1 :, 0]
        self.last_values = torch.as_tensor(np.ascontiguousarray(last, dtype=np.float32))

    def _changes(self, input_data: Tensor, last_value: Tensor, started: Tensor) -> Tensor:
        """The chunk's step-to-step changes of column 0, 0 where a command explains them."""
        values = input_data[:, 0]
        previous = torch.where(started, last_value[0], values[:1])
        change = values - torch.cat([previous, values[:-1]])
        if self.n_features > 1:  # telemetry without command columns has nothing to explain
            explained = (input_data[:, 1:] * self.explaining).amax(dim=1) > 0.5
            change = torch.where(explained, 0.0, change)
        return change

    def forward(
        self, input_data: Tensor, recent_changes: Tensor, last_value: Tensor, steps_seen: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(T, F), (1, W-1), (1, 1), (1, 1)`` -> reconstruction, score, detected, states out.

        The states are rank 2, as the other detectors' are, so ``custom_logic`` declares them
        all alike.
        """
        window = self.params.window
        started = steps_seen[0] > 0.0
        changes = torch.cat([recent_changes[0], self._changes(input_data, last_value, started)])
        # Each step's window as a row: its corrected values relative to its first one, summed
        # from the changes inside it. A row's sums do not depend on the chunk, so chunks score
        # exactly as the whole series. Sizes come from tensors, never Python numbers, so the
        # exported graph keeps the time axis dynamic.
        ones = torch.ones_like(input_data[:, 0])
        position = torch.cumsum(ones, dim=0) - 1.0  # 0, 1, ..., T-1
        rows = position.long().unsqueeze(1) + torch.arange(1, window).unsqueeze(0)
        relative = torch.cumsum(changes[rows], dim=1)
        windows = torch.cat([torch.zeros_like(relative[:, :1]), relative], dim=1)
        windows = windows - windows.mean(dim=1, keepdim=True)
        # Then one matrix product with every training window gives |k|^2 - 2 w.k for each
        # training window k: the ones column picks up the norms row. The (steps x training
        # windows) matrix is written once, with no sums over it before its row minima are
        # found; |w|^2 is the same along a row, so it is added after.
        augmented = torch.cat([windows, torch.ones_like(windows[:, :1])], dim=1)
        weights = torch.cat([-2.0 * self.kernels, self.kernel_norms.unsqueeze(0)], dim=0)
        partial, index = (augmented @ weights).min(dim=1)
        nearest = (windows * windows).sum(dim=1) + partial
        complete = position + steps_seen[0] >= float(window - 1)
        score = torch.where(complete, torch.sqrt(torch.clamp(nearest, min=0.0)), 0.0)
        # The "reconstruction": the nearest training window's last value in column 0.
        reconstruction = torch.cat([self.last_values[index].unsqueeze(1), input_data[:, 1:]], 1)
        return (
            reconstruction,
            score,
            score > self.threshold,
            changes[-(window - 1) :].unsqueeze(0),
            input_data[-1:, :1],
            steps_seen + ones.sum(),
        )


def build_model(params: Params, n_features: int = 25) -> NearestWindow:
    """An empty model (its training windows are set by :func:`fit` or a state dict)."""
    return NearestWindow(params, n_features)


def _series(series: np.ndarray, what: str) -> np.ndarray:
    data = np.asarray(series, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] < 1 or not np.isfinite(data).all():
        raise DataError(f"nearest-window {what}: expected a finite (T, F) array, got {data.shape}")
    return data


def fit(
    train: list[np.ndarray],
    params: Params,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> NearestWindow:
    """Keep the training windows of one channel (``train`` holds its one series)."""
    if len(train) != 1:
        raise ModelError(f"nearest-window: expected one training series, got {len(train)}")
    data = _series(train[0], "training series")
    if data.shape[0] < params.window:
        raise DataError(
            f"nearest-window: expected at least {params.window} training steps, got {data.shape[0]}"
        )
    model = build_model(params, data.shape[1])
    model.set_training(data)
    if on_epoch is not None:
        on_epoch(1, 0.0)
    return model.eval()


def zero_states(model: NearestWindow) -> tuple[Tensor, Tensor, Tensor]:
    """The states of a fresh stream."""
    return torch.zeros(1, model.params.window - 1), torch.zeros(1, 1), torch.zeros(1, 1)


@torch.inference_mode()
def score(model: NearestWindow, series: np.ndarray) -> np.ndarray:
    """The per-step score of a whole series from a fresh stream, as served."""
    data = torch.as_tensor(np.asarray(series, dtype=np.float32))
    return model(data, *zero_states(model))[1].numpy()


def training_scores(model: NearestWindow, series: np.ndarray) -> np.ndarray:
    """Calibration scores: each training window's distance to its nearest non-trivial match.

    Windows closer than a quarter window to each other are the same stretch of telemetry
    (stumpy's exclusion zone), so they are left out; the first ``window - 1`` steps score 0
    as served.
    """
    data = _series(series, "training series")
    window = model.params.window
    explaining = model.explaining.numpy() > 0.5
    windows = centred_windows(corrected_values(data, explaining), window)
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
    example = (torch.zeros(300, model.n_features), *zero_states(model))
    return export_stream_graph(model, example, path, STATES)
