"""TranAD: a transformer reconstruction detector with self-conditioning and adversarial training.

TranAD (Tuli, Casale, Jennings; VLDB 2022) reconstructs the last time step of a short window
(10 steps) twice. Phase 1 encodes the window concatenated with a zero "focus score" and decodes
it with two decoders (outputs O1, O2). Phase 2 encodes the window again, now concatenated with
the squared phase-1 error of decoder 1, and decodes with decoder 2 (output Ô2). Training plays
the two decoders against each other with an epoch-dependent weight ``w = epsilon ** -epoch``::

    loss1 = w * L(O1) + (1 - w) * L(Ô2)     # encoder, decoder 1, output head: minimise
    loss2 = w * L(O2) - (1 - w) * L(Ô2)     # decoder 2: reconstruct, yet tell Ô2 apart

The anomaly score of time step t uses the window of the 10 steps ending at t (the start of a
series replicate-padded) and is ``0.5 * (O1 - x_t)**2 + 0.5 * (Ô2 - x_t)**2`` per feature,
reduced to one number by a weight vector kept in the model (``score_weights``): column 0 only
(the telemetry value, the default) or the mean of all features (see :class:`Params`).

Measured on the 27 seed SMAP channels (seed 0, min-max normalisation, POT risk 1e-3 / init
level 0.98 on the training scores, Telemanom event-wise metrics over 34 labelled events):

=================  ==========  ================  ===============  ======
profile            score       threshold         event F1 (P/R)   PA-F1
=================  ==========  ================  ===============  ======
full (5 epochs)    column 0    pooled            0.44 (.42/.47)   0.61
full (5 epochs)    column 0    per channel       0.10 (.05/.44)   0.54
full (5 epochs)    mean        pooled            0.23 (.14/.53)   0.73
full (5 epochs)    mean        per channel       0.19 (.14/.29)   0.58
quick              column 0    pooled            0.36 (.27/.53)   0.62
quick              column 0    per channel       0.17 (.10/.56)   0.65
quick              mean        pooled            0.24 (.15/.56)   0.73
quick              mean        per channel       0.21 (.14/.38)   0.68
=================  ==========  ================  ===============  ======

So the served score is column 0 with one threshold pooled over all channels' training scores
(per-channel POT on ~2,900 training steps sets thresholds too low: many false events). The
one-hot command columns mostly add reconstruction noise of command switches to the score.

Differences from the paper: no MAML meta-learning step; the output sigmoid is stretched to
each feature's training range (plus a margin) because the data are min-max normalised per
channel and test values may leave [0, 1].

Usage::

    from satwatch.detectors import tranad

    model = tranad.fit([train_e1, train_a1], tranad.Params.quick(), seed=0)
    scores = tranad.score(model, test_e1)          # (T,), as the exported model computes them
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from satwatch.exceptions import DataError, ModelError

LOGGER = logging.getLogger(__name__)

N_FEATURES = 25
"""SMAP rows: the telemetry value (column 0) and 24 one-hot command columns."""

SCORE_MODES = ("value", "mean")
"""How per-feature errors become one score: column 0 only, or the mean over features."""


@dataclass
class Params:
    """TranAD hyperparameters and training profile.

    Attributes:
        window: Steps per window (paper: 10).
        d_ff: Hidden units of the transformer feed-forward blocks (paper code: 16).
        dropout: Dropout in the transformer layers (paper: 0.1).
        layers: Encoder/decoder layers (paper: 1).
        epochs: Training epochs over all windows (paper code: 5).
        batch_size: Windows per optimiser step (paper code: 128).
        lr: AdamW learning rate (paper code for SMAP: 1e-3).
        weight_decay: AdamW weight decay (paper code: 1e-5).
        lr_step: Epochs between learning-rate decays (reference code: 5).
        lr_gamma: Learning-rate decay factor per step (reference code: 0.8-0.9 by version).
        epsilon: Base of the adversarial weight ``w = epsilon ** -epoch`` (> 1; the paper
            calls it a training parameter; w decays from mostly-reconstruction to mostly-
            adversarial as epochs pass).
        windows_per_epoch: If set, each epoch draws this many windows at random (without
            replacement) instead of all of them: the quick profile's time budget.
        score_mode: ``"value"`` (column 0, the telemetry value) or ``"mean"`` (all features).
        range_margin: The output head is bounded to each feature's training range widened by
            this fraction, so decoder 2's maximisation cannot run away (the paper bounds it
            with a sigmoid on [0, 1] data).
    """

    window: int = 10
    d_ff: int = 16
    dropout: float = 0.1
    layers: int = 1
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_step: int = 5
    lr_gamma: float = 0.9
    epsilon: float = 1.5
    windows_per_epoch: int | None = None
    score_mode: str = "value"
    range_margin: float = 0.1

    @classmethod
    def quick(cls) -> Params:
        """4 epochs of 32,768 random windows each: the profile ``make demo`` trains."""
        return cls(epochs=4, windows_per_epoch=32768)

    @classmethod
    def full(cls) -> Params:
        """The reference settings: 5 epochs over every window, batch 128, AdamW 1e-3."""
        return cls(epochs=5)

    def to_dict(self) -> dict:
        """JSON-serialisable form for the model card."""
        return asdict(self)

    def validate(self) -> None:
        """Raise ModelError if a value is out of range."""
        if self.score_mode not in SCORE_MODES:
            raise ModelError(
                f"TranAD score_mode must be one of {SCORE_MODES}, got {self.score_mode!r}"
            )
        if self.window < 2:
            raise ModelError(f"TranAD window must be at least 2 steps, got {self.window}")
        if self.epsilon <= 1.0:
            raise ModelError(f"TranAD epsilon must be > 1 so the weight decays, got {self.epsilon}")


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal positions (Vaswani et al.) added to a (batch, window, d_model) input."""

    def __init__(self, d_model: int, window: int) -> None:
        super().__init__()
        position = torch.arange(window, dtype=torch.float32).unsqueeze(1)
        rate = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model)
        )
        table = torch.zeros(window, d_model)
        table[:, 0::2] = torch.sin(position * rate)
        table[:, 1::2] = torch.cos(position * rate)[:, : d_model // 2]
        self.register_buffer("table", table)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.table[: x.shape[1]]


class TranAD(nn.Module):
    """The TranAD network: one encoder, two decoders, a bounded output head.

    Input windows are (batch, window, features); outputs are reconstructions of the window's
    last step, (batch, features).
    """

    def __init__(
        self,
        n_features: int = N_FEATURES,
        window: int = 10,
        d_ff: int = 16,
        dropout: float = 0.1,
        layers: int = 1,
    ) -> None:
        super().__init__()
        d_model = 2 * n_features
        self.n_features = n_features
        self.window = window
        self.input_scale = math.sqrt(n_features)
        self.positions = PositionalEncoding(d_model, window)

        def encoder_layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(
                d_model, nhead=n_features, dim_feedforward=d_ff, dropout=dropout, batch_first=True
            )

        def decoder_layer() -> nn.TransformerDecoderLayer:
            return nn.TransformerDecoderLayer(
                d_model, nhead=n_features, dim_feedforward=d_ff, dropout=dropout, batch_first=True
            )

        self.encoder = nn.TransformerEncoder(encoder_layer(), layers, enable_nested_tensor=False)
        self.decoder1 = nn.TransformerDecoder(decoder_layer(), layers)
        self.decoder2 = nn.TransformerDecoder(decoder_layer(), layers)
        self.head = nn.Linear(d_model, n_features)
        # Output bounds per feature (set from the training data by fit) and the score's
        # per-feature weights: buffers, so the state dict and the exported module carry them.
        self.register_buffer("out_low", torch.zeros(n_features))
        self.register_buffer("out_high", torch.ones(n_features))
        self.register_buffer("score_weights", torch.full((n_features,), 1.0 / n_features))

    def _encode(self, windows: Tensor, focus: Tensor) -> Tensor:
        x = torch.cat((windows, focus), dim=2) * self.input_scale
        return self.encoder(self.positions(x))

    def _output(self, decoded: Tensor) -> Tensor:
        # A sigmoid bounded to the training range (the paper's head on [0, 1] data).
        hidden = decoded[:, -1, :]
        return self.out_low + (self.out_high - self.out_low) * torch.sigmoid(self.head(hidden))

    def forward(self, windows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Run both phases; return (O1, O2, Ô2), each (batch, features)."""
        target = windows[:, -1:, :].repeat(1, 1, 2)
        memory = self._encode(windows, torch.zeros_like(windows))
        o1 = self._output(self.decoder1(target, memory))
        o2 = self._output(self.decoder2(target, memory))
        focus = (o1.unsqueeze(1) - windows) ** 2
        o2_hat = self._output(self.decoder2(target, self._encode(windows, focus)))
        return o1, o2, o2_hat

    def reconstruct(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        """Inference path: (O1, Ô2) without decoder 2's unused phase-1 output."""
        target = windows[:, -1:, :].repeat(1, 1, 2)
        memory = self._encode(windows, torch.zeros_like(windows))
        o1 = self._output(self.decoder1(target, memory))
        focus = (o1.unsqueeze(1) - windows) ** 2
        o2_hat = self._output(self.decoder2(target, self._encode(windows, focus)))
        return o1, o2_hat


class TranADScorer(nn.Module):
    """Per-step scoring of a series with the model's own layers: the reference computation.

    ``forward(series, context)`` takes (T, F) normalised steps and optionally the (window-1, F)
    steps that preceded them; without context the series start is replicate-padded. It
    returns (reconstruction (T, F) = Ô2, score (T,), context_out (window-1, F) = the last
    window-1 steps seen), so chunks scored with the context passed on equal one pass.
    :class:`FastTranADScorer` computes the same faster: it is what is served and what
    :func:`score` uses; this one is what it is checked against.
    """

    def __init__(self, model: TranAD) -> None:
        super().__init__()
        self.model = model
        self.window = model.window
        self.n_features = model.n_features

    def forward(
        self,
        series: Tensor,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        history = self.window - 1
        if context is None:
            context = series[:1].expand(history, self.n_features)
        padded = torch.cat((context, series), dim=0)
        # (T, F, window) -> (T, window, F): window t holds steps t-window+1 .. t.
        windows = padded.unfold(0, self.window, 1).transpose(1, 2)
        o1, o2_hat = self.model.reconstruct(windows)
        error = 0.5 * (o1 - series) ** 2 + 0.5 * (o2_hat - series) ** 2
        score = (error * self.model.score_weights).sum(dim=1)
        return o2_hat, score, padded[padded.shape[0] - history :]


_LOG2_E = 1.0 / math.log(2.0)


def _attend(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Dot-product attention of every head of every window at once, the windows innermost.

    ``query`` is (H, D, Lq, N), already scaled by log2(e)/sqrt(D) so that the softmax can use
    ``exp2`` (twice as fast as ``exp`` on the CPUs measured); ``key`` and ``value`` are
    (H, D, Lk, N): head h, component d, position, window. Heads are D = 2 wide, so the
    products are D elementwise passes over (H, Lk, Lq, N), not N*H tiny matrix products, and
    with the windows innermost each pass, the softmax over the key axis included, runs over
    long contiguous rows. Returns (H, D, Lq, N). No mask, no dropout.
    """
    scores = query[:, 0].unsqueeze(1) * key[:, 0].unsqueeze(2)
    for d in range(1, query.shape[1]):
        scores.addcmul_(query[:, d].unsqueeze(1), key[:, d].unsqueeze(2))
    # The softmax in place: faster here than torch.softmax over a middle axis.
    weights = scores.sub_(scores.amax(dim=1, keepdim=True)).exp2_()
    weights = weights.div_(weights.sum(dim=1, keepdim=True))
    outputs = [(weights * value[:, d].unsqueeze(2)).sum(dim=1) for d in range(value.shape[1])]
    return torch.stack(outputs, dim=1)


def _to_columns(rows: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``rows @ weight.T + bias`` transposed: (outputs, rows), the features outermost."""
    return torch.addmm(bias.unsqueeze(1), weight, rows.t())


def _to_rows(columns: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """The linear map of (features, rows) columns, as (rows, outputs)."""
    return torch.addmm(bias, columns.t(), weight.t())


def _check_layer(layer: nn.Module, attentions: list[nn.MultiheadAttention]) -> None:
    plain = all(
        a._qkv_same_embed_dim
        and a.in_proj_bias is not None
        and a.bias_k is None
        and not a.add_zero_attn
        for a in attentions
    )
    if layer.norm_first or layer.activation is not nn.functional.relu or not plain:
        raise ModelError(
            "FastTranADScorer: expected post-norm ReLU transformer layers with one biased "
            f"q/k/v projection per attention, got {layer}"
        )


class _EncoderLayer(nn.Module):
    """An nn.TransformerEncoderLayer of TranAD, eval mode, on (L*N, E) rows in (l, n) order."""

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        _check_layer(layer, [layer.self_attn])
        attention = layer.self_attn
        self.heads = attention.num_heads
        self.scale = _LOG2_E / math.sqrt(attention.head_dim)
        self.in_weight = attention.in_proj_weight
        self.in_bias = attention.in_proj_bias
        self.out_weight = attention.out_proj.weight
        self.out_bias = attention.out_proj.bias
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        self.linear1, self.linear2 = layer.linear1, layer.linear2

    def forward(self, x: Tensor, length: int) -> Tensor:
        width = x.shape[1]
        # One product for q, k and v: (3E, L*N) -> (3, H, D, L, N).
        qkv = _to_columns(x, self.in_weight, self.in_bias)
        qkv = qkv.reshape(3, self.heads, -1, length, x.shape[0] // length)
        attended = _attend(qkv[0] * self.scale, qkv[1], qkv[2]).reshape(width, -1)
        x = self.norm1(x + _to_rows(attended, self.out_weight, self.out_bias))
        return self.norm2(x + self.linear2(torch.relu(self.linear1(x))))


class _DecoderLayer(nn.Module):
    """An nn.TransformerDecoderLayer of TranAD, eval mode, for a one-step (N, E) target."""

    def __init__(self, layer: nn.TransformerDecoderLayer) -> None:
        super().__init__()
        _check_layer(layer, [layer.self_attn, layer.multihead_attn])
        cross = layer.multihead_attn
        self.heads = cross.num_heads
        self.scale = _LOG2_E / math.sqrt(cross.head_dim)
        self.self_weight = layer.self_attn.in_proj_weight
        self.self_bias = layer.self_attn.in_proj_bias
        self.self_out = layer.self_attn.out_proj
        self.cross_weight = cross.in_proj_weight
        self.cross_bias = cross.in_proj_bias
        self.cross_out_weight = cross.out_proj.weight
        self.cross_out_bias = cross.out_proj.bias
        self.norm1, self.norm2, self.norm3 = layer.norm1, layer.norm2, layer.norm3
        self.linear1, self.linear2 = layer.linear1, layer.linear2

    def forward(self, target: Tensor, memory: Tensor) -> Tensor:
        windows, width = target.shape
        # Self-attention over the one target step gives it weight 1: out_proj(value).
        value_weight = self.self_weight[2 * width :]
        value = nn.functional.linear(target, value_weight, self.self_bias[2 * width :])
        x = self.norm1(target + self.self_out(value))
        query = _to_columns(x, self.cross_weight[:width], self.cross_bias[:width])
        query = query.reshape(self.heads, -1, 1, windows) * self.scale
        kv = _to_columns(memory, self.cross_weight[width:], self.cross_bias[width:])
        kv = kv.reshape(2, self.heads, -1, memory.shape[0] // windows, windows)
        attended = _attend(query, kv[0], kv[1]).reshape(width, windows)
        x = self.norm2(x + _to_rows(attended, self.cross_out_weight, self.cross_out_bias))
        return self.norm3(x + self.linear2(torch.relu(self.linear1(x))))


class FastTranADScorer(nn.Module):
    """:class:`TranADScorer`'s computation rearranged for CPUs: the module that is served.

    Same model (its own parameters and buffers, nothing copied), same interface, same outputs
    up to float rounding (differences ~1e-7 measured). The reference spends three quarters of
    its time in ``scaled_dot_product_attention`` over N*25 heads two features wide; here each
    attention is a few elementwise passes over all windows and heads at once (see
    :func:`_attend`), the q/k/v projections of a layer are one matrix product, and decoder
    self-attention over its one target step is its value projection. Windows go ``block`` at
    a time: with 64 the intermediates stay in cache and are reused by the allocator, where
    256 at once page-faults megabytes afresh on every call (see ``benchmarks/tranad_speed.py``).
    Eval mode only: no dropout.
    """

    def __init__(self, model: TranAD, block: int = 64) -> None:
        super().__init__()
        if model.encoder.norm is not None or any(
            decoder.norm is not None for decoder in (model.decoder1, model.decoder2)
        ):
            raise ModelError("FastTranADScorer: expected no final encoder or decoder norm")
        self.window = model.window
        self.n_features = model.n_features
        self.block = block
        self.input_scale = model.input_scale
        self.register_buffer("positions", model.positions.table[: model.window].unsqueeze(1))
        self.encoder = nn.ModuleList([_EncoderLayer(layer) for layer in model.encoder.layers])
        self.decoder1 = nn.ModuleList([_DecoderLayer(layer) for layer in model.decoder1.layers])
        self.decoder2 = nn.ModuleList([_DecoderLayer(layer) for layer in model.decoder2.layers])
        self.head = model.head
        self.register_buffer("out_low", model.out_low)
        self.register_buffer("out_high", model.out_high)
        self.register_buffer("score_weights", model.score_weights)

    def _encode(self, steps: Tensor, focus: Tensor) -> Tensor:
        # (L, N, 2F) -> (L*N, E) rows, position-major.
        x = torch.cat((steps, focus), dim=2) * self.input_scale + self.positions
        x = x.reshape(-1, x.shape[2])
        for layer in self.encoder:
            x = layer(x, self.window)
        return x

    def _output(self, decoded: Tensor) -> Tensor:
        return self.out_low + (self.out_high - self.out_low) * torch.sigmoid(self.head(decoded))

    def _reconstruct(self, steps: Tensor) -> tuple[Tensor, Tensor]:
        """(O1, Ô2) of (window, N, F) windows, positions outermost."""
        last = steps[-1]
        target = torch.cat((last, last), dim=1)
        memory = self._encode(steps, torch.zeros_like(steps))
        decoded = target
        for layer in self.decoder1:
            decoded = layer(decoded, memory)
        o1 = self._output(decoded)
        memory = self._encode(steps, (o1 - steps) ** 2)
        decoded = target
        for layer in self.decoder2:
            decoded = layer(decoded, memory)
        return o1, self._output(decoded)

    def reconstruct(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        """(O1, Ô2) of (N, window, F) windows, as :meth:`TranAD.reconstruct` gives them."""
        steps = windows.transpose(0, 1)
        if steps.shape[1] <= self.block:
            return self._reconstruct(steps)
        o1, o2_hat = [], []
        for start in range(0, steps.shape[1], self.block):
            block_o1, block_o2_hat = self._reconstruct(steps[:, start : start + self.block])
            o1.append(block_o1)
            o2_hat.append(block_o2_hat)
        return torch.cat(o1), torch.cat(o2_hat)

    def forward(
        self,
        series: Tensor,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        history = self.window - 1
        if context is None:
            context = series[:1].expand(history, self.n_features)
        padded = torch.cat((context, series), dim=0)
        windows = padded.unfold(0, self.window, 1).transpose(1, 2)
        o1, o2_hat = self.reconstruct(windows)
        error = 0.5 * (o1 - series) ** 2 + 0.5 * (o2_hat - series) ** 2
        score = (error * self.score_weights).sum(dim=1)
        return o2_hat, score, padded[padded.shape[0] - history :]


def build_model(params: Params, n_features: int = N_FEATURES) -> TranAD:
    """An untrained TranAD shaped by ``params`` (load a state dict into it to restore one)."""
    params.validate()
    model = TranAD(n_features, params.window, params.d_ff, params.dropout, params.layers)
    model.score_weights.copy_(_score_weights(params.score_mode, n_features))
    return model


def _score_weights(mode: str, n_features: int) -> Tensor:
    if mode == "value":
        weights = torch.zeros(n_features)
        weights[0] = 1.0
        return weights
    return torch.full((n_features,), 1.0 / n_features)


def set_score_mode(model: TranAD, mode: str) -> None:
    """Switch a trained model's score reduction (``"value"`` or ``"mean"``) in place."""
    if mode not in SCORE_MODES:
        raise ModelError(f"TranAD score mode must be one of {SCORE_MODES}, got {mode!r}")
    model.score_weights.copy_(_score_weights(mode, model.n_features))


def make_windows(series: np.ndarray | Tensor, window: int) -> Tensor:
    """All windows of one series, (T, window, F), the start replicate-padded."""
    data = torch.as_tensor(np.asarray(series, dtype=np.float32))
    padded = torch.cat((data[:1].expand(window - 1, data.shape[1]), data), dim=0)
    return padded.unfold(0, window, 1).transpose(1, 2).contiguous()


def training_windows(train: list[np.ndarray], window: int) -> Tensor:
    """Windows of several series stacked, (sum T, window, F); no window crosses two series."""
    return torch.cat([make_windows(series, window) for series in train], dim=0)


def _check_series(series: np.ndarray, what: str, n_features: int) -> None:
    if series.ndim != 2 or series.shape[1] != n_features or series.shape[0] < 1:
        raise DataError(f"TranAD {what}: expected a (T, {n_features}) array, got {series.shape}")
    if not np.isfinite(series).all():
        raise DataError(f"TranAD {what}: the series holds NaN or Inf values")


def _set_output_range(model: TranAD, train: list[np.ndarray], margin: float) -> None:
    stacked = np.concatenate(train, axis=0)
    low = stacked.min(axis=0)
    high = stacked.max(axis=0)
    # Constant features get a unit-wide band so a deviation at test time can be reconstructed
    # wrongly (and scored) rather than pinned to the constant.
    span = np.where(high - low > 1e-6, high - low, 1.0)
    model.out_low.copy_(torch.as_tensor(low - margin * span, dtype=torch.float32))
    model.out_high.copy_(torch.as_tensor(high + margin * span, dtype=torch.float32))


def fit(
    train: list[np.ndarray],
    params: Params,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TranAD:
    """Train one TranAD over several normalised (T, F) series (windows never cross series).

    Args:
        train: Normalised float32 training arrays, one per channel.
        params: Hyperparameters and profile.
        seed: Seeds weights, dropout and shuffling: same seed, same model.
        on_epoch: Called after each epoch with (epoch starting at 1, mean phase-1
            reconstruction error L(O1) of the epoch).

    Returns:
        The trained model in eval mode.
    """
    if not train:
        raise DataError("TranAD fit: got no training series")
    n_features = train[0].shape[1] if train[0].ndim == 2 else -1
    for index, series in enumerate(train):
        _check_series(series, f"training series {index}", n_features)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(params, n_features)
    _set_output_range(model, train, params.range_margin)
    windows = training_windows(train, params.window)
    side1 = [p for name, p in model.named_parameters() if not name.startswith("decoder2.")]
    side2 = list(model.decoder2.parameters())
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=params.lr, weight_decay=params.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, params.lr_step, params.lr_gamma)
    started = time.perf_counter()
    model.train()
    for epoch in range(1, params.epochs + 1):
        weight = params.epsilon**-epoch
        order = torch.randperm(windows.shape[0], generator=generator)
        if params.windows_per_epoch is not None:
            order = order[: params.windows_per_epoch]
        sums = torch.zeros(3)  # loss1, loss2, L(O1) summed over batches
        batches = 0
        for start in range(0, order.shape[0], params.batch_size):
            batch = windows[order[start : start + params.batch_size]]
            last = batch[:, -1, :]
            o1, o2, o2_hat = model(batch)
            adversarial = torch.mean((o2_hat - last) ** 2)
            recon1 = torch.mean((o1 - last) ** 2)
            loss1 = weight * recon1 + (1 - weight) * adversarial
            loss2 = weight * torch.mean((o2 - last) ** 2) - (1 - weight) * adversarial
            # Each side follows its own objective: summing the two losses would cancel the
            # adversarial term, so the gradients are taken apart.
            grads1 = torch.autograd.grad(loss1, side1, retain_graph=True, allow_unused=True)
            grads2 = torch.autograd.grad(loss2, side2, allow_unused=True)
            for parameter, grad in zip(side1 + side2, grads1 + grads2, strict=True):
                parameter.grad = grad
            optimizer.step()
            sums += torch.stack((loss1, loss2, recon1)).detach()
            batches += 1
        scheduler.step()
        loss1_mean, loss2_mean, recon1_mean = (sums / max(batches, 1)).tolist()
        LOGGER.info(
            "TranAD epoch %d/%d (w %.3f): loss1 %.6f loss2 %.6f L(O1) %.6f",
            *(epoch, params.epochs, weight, loss1_mean, loss2_mean, recon1_mean),
        )
        if on_epoch is not None:
            # loss1 and loss2 trade off by design (decoder 2 maximises Ô2's error), so the
            # curve reported is decoder 1's phase-1 reconstruction error, which training lowers.
            on_epoch(epoch, recon1_mean)
    LOGGER.info(
        "TranAD trained on %d windows in %.1f s", windows.shape[0], time.perf_counter() - started
    )
    return model.eval()


def score_with_reconstruction(
    model: TranAD, series: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step scores (T,) and Ô2 reconstructions (T, F) of a whole normalised series.

    Computed as served (:class:`FastTranADScorer`), in chunks that pass the context on, which
    gives the same numbers as one pass (windows are independent) with bounded memory.
    """
    _check_series(np.asarray(series), "series to score", model.n_features)
    scorer = FastTranADScorer(model).eval()
    data = torch.as_tensor(np.asarray(series, dtype=np.float32))
    scores, reconstructions = [], []
    context: Tensor | None = None
    with torch.no_grad():
        for start in range(0, data.shape[0], chunk):
            recon, step_scores, context = scorer(data[start : start + chunk], context)
            scores.append(step_scores)
            reconstructions.append(recon)
    return torch.cat(scores).numpy(), torch.cat(reconstructions).numpy()


def score(model: TranAD, series: np.ndarray) -> np.ndarray:
    """Per-step anomaly scores (T,) of a whole normalised series, as the exported model gives."""
    return score_with_reconstruction(model, series)[0]


def state_dims(params: Params, n_features: int = N_FEATURES) -> dict[str, list[int]]:
    """The served stream state: ``context``, the ``window - 1`` steps before a chunk."""
    return {"context": [params.window - 1, n_features]}
