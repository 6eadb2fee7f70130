"""Next-value predictor: the error of predicting the telemetry value one step ahead.

The family Telemanom (Hundman et al., KDD 2018) thresholds: a recurrent network reads the
channel's normalised rows (the telemetry value and its command columns) and predicts the
next step's telemetry value (column 0). The score of step ``t`` is
``|x_t[0] - prediction made at t - 1|``; the first step of a stream scores 0.

Small on purpose, so that every channel trains within the quick budget on a CPU: one GRU
layer over the rows and a linear head, trained on windows of the training split whose first
``warm_up`` predictions (made from a zero state) are not scored.

Served, the model runs once over each chunk with its state carried (``hidden``, the GRU's
state, whose top layer the prediction for the next chunk's first step is made from;
``steps_seen``), so a stream of chunks scores as the whole series.

Example::

    model = fit([train], Params.quick(), seed=0)
    errors = score(model, test)            # (T,), 0 at t = 0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from satwatch.detectors.artifacts import load_trained
from satwatch.detectors.onnx_file import export_stream_graph
from satwatch.exceptions import DataError, ModelError

STATES = ("hidden", "steps_seen")
"""The served stream state: the GRU's state and how many steps came before."""


CARD_DEFAULTS = {
    "layers": 1,
    "dropout": 0.0,
    "horizon": 1,
    "holdout": 0.0,
    "patience": 0,
    "known_commands": False,
}
"""The settings added after the first cards were written, as those cards were trained."""


@dataclass
class Params:
    """Predictor hyperparameters (the same for every channel).

    Attributes:
        hidden: GRU units per layer.
        window: Steps per training window (shorter when the training split is).
        stride: Steps between the starts of training windows.
        warm_up: Predictions at the start of each window left out of the loss.
        epochs: The most passes over the training windows.
        batch_size: Windows per optimiser step.
        lr: Adam's learning rate.
        layers: Stacked GRU layers.
        dropout: Dropout between the layers and before the head, while training.
        horizon: Values ahead each step predicts in training (the first is served).
        holdout: Fraction of the training windows, the latest, held out to choose the epoch.
        patience: Epochs without a better held-out loss before training stops (0: never).
        known_commands: Each step's prediction also reads that step's command columns:
            commands are known when sent, and a command that moves the value moves it on the
            step it is sent.
    """

    hidden: int = 64
    window: int = 250
    stride: int = 5
    warm_up: int = 20
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    layers: int = 1
    dropout: float = 0.0
    horizon: int = 1
    holdout: float = 0.0
    patience: int = 0
    known_commands: bool = False

    def __post_init__(self) -> None:
        for name in ("hidden", "window", "stride", "epochs", "batch_size", "layers", "horizon"):
            value = getattr(self, name)
            if value < 1:
                raise ModelError(f"predictor {name}: expected at least 1, got {value}")
        if not 0 <= self.warm_up < self.window:
            raise ModelError(
                f"predictor warm_up: expected 0 to window - 1 ({self.window - 1}), "
                f"got {self.warm_up}"
            )
        for name in ("dropout", "holdout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ModelError(f"predictor {name}: expected 0 to 1, got {getattr(self, name)}")
        if self.patience < 0 or (self.patience and not self.holdout):
            raise ModelError(
                f"predictor patience: expected 0, or at least 1 with a holdout, got "
                f"{self.patience} with holdout {self.holdout}"
            )

    @classmethod
    def quick(cls) -> Params:
        """64 GRU units, 250-step windows, 10 epochs (``benchmarks/predictor_study.py``)."""
        return cls()

    @classmethod
    def full(cls) -> Params:
        """Twice the epochs of the quick profile."""
        return cls(epochs=20)


class NextValuePredictor(nn.Module):
    """The served computation: chunk + state -> error, decision and the next state."""

    def __init__(self, params: Params, n_features: int = 25) -> None:
        super().__init__()
        self.params = params
        self.n_features = n_features
        between = params.dropout if params.layers > 1 else 0.0
        self.gru = nn.GRU(
            n_features, params.hidden, num_layers=params.layers, batch_first=True, dropout=between
        )
        self.drop = nn.Dropout(params.dropout)
        commands = n_features - 1 if params.known_commands else 0
        self.head = nn.Linear(params.hidden + commands, params.horizon)
        self.register_buffer("threshold", torch.tensor(float("inf")))

    def head_of(self, out: Tensor, next_rows: Tensor) -> Tensor:
        """The predictions from the GRU's output at each step and the rows of the step after
        (``(..., H)``, ``(..., F)`` -> ``(..., horizon)``); the rows' command columns are read
        only with ``known_commands``."""
        if self.params.known_commands:
            out = torch.cat([out, next_rows[..., 1:]], -1)
        return self.head(self.drop(out))

    def predict_ahead(self, rows: Tensor, next_rows: Tensor) -> Tensor:
        """``(B, T, F)`` rows and the ``(B, T, F)`` rows one step later -> ``(B, T, horizon)``
        predictions of the values ahead, from a zero state."""
        out, _ = self.gru(rows)
        return self.head_of(out, next_rows)

    def forward(
        self, input_data: Tensor, hidden: Tensor, steps_seen: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(T, F), (layers, H), (1, 1)`` -> reconstruction, score, detected, states out."""
        out, state = self.gru(input_data.unsqueeze(0), hidden.unsqueeze(1))
        # Step t is judged by the prediction made from the GRU's output at t - 1 (the carried
        # top layer's for the chunk's first step) and, with known_commands, step t's commands.
        before = torch.cat([hidden[-1:], out[0, :-1]])
        predicted = self.head_of(before, input_data)[:, 0]
        ones = torch.ones_like(input_data[:, 0])
        position = torch.cumsum(ones, dim=0) - 1.0
        first = position + steps_seen[0] < 0.5
        score = torch.where(first, 0.0, torch.abs(input_data[:, 0] - predicted))
        # The "reconstruction": the predicted value in column 0, the commands as sent.
        reconstruction = torch.cat([predicted.unsqueeze(1), input_data[:, 1:]], 1)
        return reconstruction, score, score > self.threshold, state[:, 0], steps_seen + ones.sum()


def build_model(params: Params, n_features: int = 25) -> NextValuePredictor:
    """An untrained model."""
    return NextValuePredictor(params, n_features)


def _rows(series: np.ndarray, what: str) -> torch.Tensor:
    data = np.asarray(series, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] < 1 or not np.isfinite(data).all():
        raise DataError(f"predictor {what}: expected a finite (T, F) array, got {data.shape}")
    return torch.from_numpy(np.ascontiguousarray(data))


def training_windows(series: torch.Tensor, params: Params) -> torch.Tensor:
    """``(N, L + horizon, F)`` windows of a training series: ``L`` rows to predict from, plus
    the ``horizon`` rows after them, only targets. ``L`` is ``params.window``, or shorter when
    the series is.
    """
    length = min(params.window, series.shape[0] - params.horizon)
    if length <= params.warm_up:
        raise DataError(
            f"predictor: expected more than {params.warm_up + params.horizon} training steps, "
            f"got {series.shape[0]}"
        )
    size = length + params.horizon
    return series.unfold(0, size, params.stride).permute(0, 2, 1).contiguous()


def _loss(model: NextValuePredictor, batch: Tensor) -> Tensor:
    """Mean squared error of every scored prediction of a batch of training windows."""
    params = model.params
    length = batch.shape[1] - params.horizon
    predicted = model.predict_ahead(batch[:, :length], batch[:, 1 : length + 1])
    # Row t's k-th output predicts the value at t + 1 + k.
    targets = batch[:, 1:, 0].unfold(1, params.horizon, 1)
    # The first predictions of a window start from a zero state: not scored.
    error = predicted[:, params.warm_up :] - targets[:, params.warm_up :]
    return (error**2).mean()


def _held_out(count: int, holdout: float) -> int:
    """How many of ``count`` training windows, the latest, are held out (0: none)."""
    held = int(round(count * holdout))
    return held if 0 < held < count else 0


def _split(windows: Tensor, holdout: float) -> tuple[Tensor, Tensor | None]:
    """The training windows and the held-out latest ones (None without a holdout)."""
    held = _held_out(len(windows), holdout)
    if not held:
        return windows, None
    return windows[:-held], windows[-held:]


def fit(
    train: list[np.ndarray],
    params: Params,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> NextValuePredictor:
    """Train on one channel's normalised training split (``train`` holds its one series).

    With a holdout, the weights kept are the epoch's with the lowest held-out loss.
    """
    if len(train) != 1:
        raise ModelError(f"predictor: expected one training series, got {len(train)}")
    series = _rows(train[0], "training series")
    windows, held = _split(training_windows(series, params), params.holdout)
    torch.manual_seed(seed)
    model = build_model(params, series.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    generator = torch.Generator().manual_seed(seed)
    best, best_state, waited = float("inf"), None, 0
    for epoch in range(1, params.epochs + 1):
        model.train()
        order = torch.randperm(len(windows), generator=generator)
        total = 0.0
        for start in range(0, len(order), params.batch_size):
            batch = windows[order[start : start + params.batch_size]]
            loss = _loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        if on_epoch is not None:
            on_epoch(epoch, total / len(windows))
        if held is None:
            continue
        model.eval()
        with torch.no_grad():
            checked = float(_loss(model, held))
        if checked < best:
            best, waited = checked, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if params.patience and waited >= params.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()


@torch.inference_mode()
def score(model: NextValuePredictor, series: np.ndarray) -> np.ndarray:
    """The per-step score of a whole series from a fresh stream, as served."""
    hidden = torch.zeros(model.params.layers, model.params.hidden)
    out = model(_rows(series, "series"), hidden, torch.zeros(1, 1))
    return out[1].numpy()


# --- served file ---------------------------------------------------------------------------


def export_trained(folder: Path, path: Path) -> Path:
    """Write the artifact in ``folder`` as the served ONNX graph at ``path`` (threshold baked)."""
    model, card = load_trained(folder)
    model.threshold.fill_(float(card["threshold"]))
    example = (
        torch.zeros(300, model.n_features),
        torch.zeros(model.params.layers, model.params.hidden),
        torch.zeros(1, 1),
    )
    return export_stream_graph(model, example, path, STATES)
