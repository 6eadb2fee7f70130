"""OmniAnomaly (Su et al., KDD 2019): a recurrent VAE with planar flows, one model per channel.

The network, per time step ``t`` of a (normalised) telemetry series ``x``:

- q-net: a GRU encoder ``e_t = GRU(x_t, e_{t-1})``, two dense layers, a diagonal Gaussian
  ``q(z0_t | x_{<=t})`` (z dim 3), then ``K`` planar normalizing flows ``z0 -> zK``;
- p-net: a GRU decoder ``d_t = GRU(zK_t, d_{t-1})``, two dense layers and a diagonal Gaussian
  ``p(x_t | zK_{<=t})``; the prior over ``zK_{1:W}`` is a linear-Gaussian state-space model
  (random-walk state, identity observation, unit noises) as in the authors' code.

Training maximises the ELBO of 100-step windows (stride 1) with one reparameterised sample.
At inference ``z`` is the flows applied to the posterior mean (no sampling), and the anomaly
score of step ``t`` is, by ``Params.score_mode``:

- ``value`` (default): ``|x_t[0] - mean_t[0]|``, the reconstruction error of the telemetry value
  (column 0), the quantity Telemanom thresholds;
- ``nll``: the paper's ``-log p(x_t | z)`` summed over the 25 features.

Why ``value``: the 24 other columns are one-hot commands, mostly zero, whose tiny predicted
standard deviations make the summed ``-log p`` heavy-tailed and dominated by command bits rather
than by the telemetry. Measured on the 12 validation channels (non-seed SMAP, quick profile,
card threshold "pot-clamped"): event-wise F1 0.320 (TP/FP/FN 4/4/13) for ``value`` against
0.047 (2/67/15) for ``nll``; fused with TranAD under the first study's dynamic threshold
(``benchmarks/quality_study.py``), 0.667 (9/1/8) against 0.238 (5/20/12).

How "stochastic variables connected through time" is done here, and why:
the paper links ``z_{t-1} -> z_t`` twice: in the q-net (``z_{t-1}`` is an input of
``q(z_t)``) and in the p-net (the state-space prior). A ``z_{t-1}`` input to the q-net would
make ``z`` a second recurrence outside the GRUs, which an exported graph could only run as a
step-by-step ONNX ``Loop``, and whose state would have to be carried too. Instead the q-net's
temporal link goes through the encoder GRU (``e_t`` already summarises ``x_{<=t}``, and hence
everything ``z_{t-1}`` was computed from) and the decoder GRU carries ``zK_{<t}`` into
``p(x_t)``; the state-space prior stays in the training loss only, where it still ties
consecutive ``z`` together. The served graph is then two ONNX ``GRU`` nodes plus per-step
dense layers: one pass over any number of steps with the two GRU states carried as data
(a stream of chunks scores as the whole series does).

Scored this way, the seed channels keep the event-wise quality of the paper's windowed scoring
(:func:`score_windowed`, a window recomputed for every step) at a small fraction of its cost:
the trained GRUs forget within a window, so the per-step scores differ only within about a
window of the series start.

Usage::

    params = Params.quick()
    model = fit([train_normalised], params, seed=0)
    scores = score(model, test_normalised)      # (T,) one score per step
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812  (the conventional alias)

from satwatch.exceptions import DataError, ModelError

LOGGER = logging.getLogger(__name__)

N_FEATURES = 25
"""SMAP rows: the telemetry value and 24 one-hot command columns."""

_LOG_2PI = math.log(2.0 * math.pi)

SCORE_MODES = ("value", "nll")
"""The anomaly scores a model can serve (``Params.score_mode``)."""

CARD_DEFAULTS = {"score_mode": "nll"}
"""Parameters missing from older cards: cards written before ``Params.score_mode`` existed were
trained, thresholded and exported with the ``nll`` score, so they keep it."""

THRESHOLD_RULE = "pot-clamped"
"""How training fits the threshold (see ``training.fit_threshold``): POT, clamped just above
the largest training score, because these scores are too heavy-tailed for POT alone."""


@dataclass
class Params:
    """OmniAnomaly hyperparameters (defaults are the paper's).

    Attributes:
        window: training window length (steps).
        z_dim: latent dimension.
        hidden: GRU units (encoder and decoder).
        dense: units of the two dense layers in the q-net and in the p-net.
        flows: number of planar normalizing flows.
        epochs: passes over the training windows.
        batch_size: windows per optimizer step.
        lr: Adam learning rate.
        stride: step between consecutive training windows.
        std_epsilon: floor added to every predicted standard deviation.
        grad_clip: maximum gradient norm.
        weight_decay: L2 regularisation.
        score_mode: The served anomaly score: ``value`` (column-0 absolute reconstruction error)
            or ``nll`` (``-log p(x_t | z)`` summed over features).
    """

    window: int = 100
    z_dim: int = 3
    hidden: int = 500
    dense: int = 500
    flows: int = 20
    epochs: int = 10
    batch_size: int = 50
    lr: float = 1e-3
    stride: int = 1
    std_epsilon: float = 1e-4
    grad_clip: float = 10.0
    weight_decay: float = 1e-4
    score_mode: str = "value"

    def __post_init__(self) -> None:
        if self.score_mode not in SCORE_MODES:
            raise ModelError(
                f"OmniAnomaly score_mode: expected one of {SCORE_MODES}, got {self.score_mode!r}"
            )

    @classmethod
    def full(cls) -> Params:
        """The paper's settings (window 100, z 3, GRU/dense 500, 20 flows, 10 epochs)."""
        return cls()

    @classmethod
    def quick(cls) -> Params:
        """A small profile: GRU/dense 64, 20 flows, 5 epochs over windows at stride 2.

        Measured: ~23 s per channel on one idle core, so 27 channels take ~5-6 minutes with
        2 workers (20 minutes on the shared, 4x oversubscribed machine it was run on).
        """
        return cls(hidden=64, dense=64, flows=20, epochs=5, batch_size=64, stride=2)


class PlanarFlow(nn.Module):
    """``f(z) = z + u_hat * tanh(w.z + b)`` with ``u_hat`` constrained so ``f`` is invertible."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim) * 0.1)
        self.u = nn.Parameter(torch.randn(dim) * 0.1)
        self.b = nn.Parameter(torch.zeros(1))

    def _u_hat(self) -> torch.Tensor:
        # Rezende & Mohamed (2015), appendix A: w.u_hat >= -1 keeps the map invertible.
        wu = torch.dot(self.w, self.u)
        m = -1.0 + F.softplus(wu)
        return self.u + (m - wu) * self.w / (torch.dot(self.w, self.w) + 1e-12)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``f(z)`` and ``log|det df/dz|`` (shape ``z.shape[:-1]``)."""
        u_hat = self._u_hat()
        activation = torch.tanh(z @ self.w + self.b)
        out = z + activation.unsqueeze(-1) * u_hat
        psi = (1.0 - activation**2).unsqueeze(-1) * self.w
        log_det = torch.log(torch.abs(1.0 + psi @ u_hat) + 1e-12)
        return out, log_det


def _dense(n_in: int, n_units: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, n_units), nn.ReLU(), nn.Linear(n_units, n_units), nn.ReLU()
    )


class OmniAnomaly(nn.Module):
    """The network; ``forward`` maps a batch of sequences to the output distribution.

    Tensors are batch-first: ``x`` is ``(B, T, F)``, GRU states are ``(1, B, H)``.
    """

    def __init__(self, params: Params, n_features: int = N_FEATURES) -> None:
        super().__init__()
        self.params = params
        self.n_features = n_features
        self.encoder = nn.GRU(n_features, params.hidden, batch_first=True)
        self.q_dense = _dense(params.hidden, params.dense)
        self.q_mean = nn.Linear(params.dense, params.z_dim)
        self.q_std = nn.Linear(params.dense, params.z_dim)
        self.flows = nn.ModuleList(PlanarFlow(params.z_dim) for _ in range(params.flows))
        self.decoder = nn.GRU(params.z_dim, params.hidden, batch_first=True)
        self.p_dense = _dense(params.hidden, params.dense)
        self.x_mean = nn.Linear(params.dense, n_features)
        self.x_std = nn.Linear(params.dense, n_features)

    def posterior(
        self, x: torch.Tensor, encoder_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the mean and std of ``q(z0_t | x_{<=t})`` and the final encoder state."""
        e, state = self.encoder(x, encoder_state)
        h = self.q_dense(e)
        return self.q_mean(h), F.softplus(self.q_std(h)) + self.params.std_epsilon, state

    def apply_flows(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Push ``z0`` through the planar flows; return ``zK`` and the summed log-det."""
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for flow in self.flows:
            z, step_log_det = flow(z)
            log_det = log_det + step_log_det
        return z, log_det

    def likelihood(
        self, z: torch.Tensor, decoder_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the mean and std of ``p(x_t | z_{<=t})`` and the final decoder state."""
        d, state = self.decoder(z, decoder_state)
        g = self.p_dense(d)
        return self.x_mean(g), F.softplus(self.x_std(g)) + self.params.std_epsilon, state

    def forward(
        self,
        x: torch.Tensor,
        encoder_state: torch.Tensor | None = None,
        decoder_state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deterministic pass (posterior mean): reconstruction, score, and both final states.

        Returns:
            ``(x_mean (B,T,F), score (B,T), encoder_state (1,B,H), decoder_state (1,B,H))``
            with the score chosen by ``params.score_mode`` (module docstring).
        """
        z_mean, _, enc_out = self.posterior(x, encoder_state)
        z, _ = self.apply_flows(z_mean)
        x_mean, x_std, dec_out = self.likelihood(z, decoder_state)
        if self.params.score_mode == "value":
            score = torch.abs(x[..., 0] - x_mean[..., 0])
        else:
            score = negative_log_prob(x, x_mean, x_std)
        return x_mean, score, enc_out, dec_out

    def negative_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Mean negative ELBO per time step of a batch of windows ``(B, W, F)``."""
        z_mean, z_std, _ = self.posterior(x)
        z0 = z_mean + z_std * torch.randn_like(z_std)
        z, log_det = self.apply_flows(z0)
        x_mean, x_std, _ = self.likelihood(z)
        log_px = -negative_log_prob(x, x_mean, x_std).sum(dim=1)
        log_q0 = -0.5 * (((z0 - z_mean) / z_std) ** 2 + 2.0 * torch.log(z_std) + _LOG_2PI)
        log_qz = (log_q0.sum(-1) - log_det).sum(dim=1)
        elbo = log_px + state_space_log_prior(z) - log_qz
        return -elbo.mean() / x.shape[1]


def negative_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``-log N(x; mean, std)`` summed over the last axis."""
    z = (x - mean) / std
    return (0.5 * z * z + torch.log(std) + 0.5 * _LOG_2PI).sum(-1)


def state_space_log_prior(z: torch.Tensor) -> torch.Tensor:
    """``log p(z_{1:W})`` under the LGSSM prior, per window (shape ``(B,)``).

    The model per latent dimension: ``s_1 ~ N(0, 1)``, ``s_t = s_{t-1} + N(0, 1)``,
    ``z_t = s_t + N(0, 1)``, which is what the authors' code builds with identity matrices
    and unit noises. Dimensions are independent and every noise is fixed, so the marginal of
    ``z_{1:W}`` per dimension is one Gaussian with ``Cov(z_i, z_j) = min(i, j) + [i == j]``:
    its precision matrix is computed once per length, and the density is a batched quadratic
    form (the same value a Kalman filter gives, without a Python loop over time).
    """
    precision, log_det = _prior_precision(z.shape[1])
    precision = precision.to(z.dtype)
    quadratic = torch.einsum("bid,ij,bjd->b", z, precision, z)
    n_dims = z.shape[1] * z.shape[2]
    return -0.5 * (quadratic + z.shape[2] * log_det + n_dims * _LOG_2PI)


@functools.lru_cache(maxsize=8)
def _prior_precision(steps: int) -> tuple[torch.Tensor, float]:
    index = torch.arange(1, steps + 1, dtype=torch.float64)
    cov = torch.minimum(index[:, None], index[None, :]) + torch.eye(steps, dtype=torch.float64)
    return torch.linalg.inv(cov), float(torch.linalg.slogdet(cov)[1])


def _windows(series: np.ndarray, window: int, stride: int, n_features: int) -> torch.Tensor:
    if series.ndim != 2 or series.shape[1] != n_features:
        raise DataError(f"training series: expected shape (T, {n_features}), got {series.shape}")
    if series.shape[0] < window:
        raise DataError(f"training series: expected at least {window} steps, got {series.shape[0]}")
    tensor = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))
    return tensor.unfold(0, window, stride).permute(0, 2, 1).contiguous()


def fit(
    train: list[np.ndarray],
    params: Params,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> OmniAnomaly:
    """Train OmniAnomaly on normalised series (one channel: a list of one ``(T, F)`` array).

    Args:
        train: normalised training series, float32 ``(T, F)`` each, one width F for all
            (25 for SMAP, 55 for MSL; the model's width is the first series').
        params: hyperparameters.
        seed: seeds torch (weights, sampling, shuffling) so a run reproduces.
        on_epoch: called with ``(epoch, mean loss)`` after each epoch (1-based).

    Returns:
        The trained model in eval mode.
    """
    torch.manual_seed(seed)
    n_features = int(train[0].shape[1]) if np.ndim(train[0]) == 2 else -1
    windows = torch.cat([_windows(s, params.window, params.stride, n_features) for s in train])
    model = OmniAnomaly(params, n_features)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(1, params.epochs + 1):
        order = torch.randperm(windows.shape[0], generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(order), params.batch_size):
            batch = windows[order[start : start + params.batch_size]]
            loss = model.negative_elbo(batch)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            optimizer.step()
            total += loss.item() * batch.shape[0]
            count += batch.shape[0]
        mean_loss = total / count
        LOGGER.debug("epoch %d: loss %.4f", epoch, mean_loss)
        if not math.isfinite(mean_loss):
            raise ModelError(f"OmniAnomaly training: expected a finite loss, got {mean_loss}")
        if on_epoch is not None:
            on_epoch(epoch, mean_loss)
    model.eval()
    return model


def build_model(params: Params, n_features: int = N_FEATURES) -> OmniAnomaly:
    """An untrained model with these hyperparameters (to load a state dict into)."""
    return OmniAnomaly(params, n_features)


@torch.no_grad()
def score(model: OmniAnomaly, series: np.ndarray) -> np.ndarray:
    """Per-step anomaly scores of a whole normalised series, one pass, zero initial state.

    This is exactly what the exported graph computes (design B): the GRUs run once over the
    series, so a chunked stream with the states passed on gives the same scores.
    """
    x = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32)).unsqueeze(0)
    _, scores, _, _ = model(x)
    return scores[0].numpy()


@torch.no_grad()
def score_windowed(model: OmniAnomaly, series: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Per-step scores the original way (design A): each step scored at the end of its own window.

    Every step ``t`` is scored by a fresh pass (zero state) over ``x[t-W+1 .. t]``; the
    series is replicate-padded at the start so the first steps have a full window too.
    Only for comparison with :func:`score`: it costs ``W`` times as much.
    """
    window = model.params.window
    padded = np.concatenate([np.repeat(series[:1], window - 1, axis=0), series]).astype(np.float32)
    windows = torch.from_numpy(padded).unfold(0, window, 1).permute(0, 2, 1)
    out = []
    for start in range(0, windows.shape[0], batch_size):
        _, scores, _, _ = model(windows[start : start + batch_size].contiguous())
        out.append(scores[:, -1])
    return torch.cat(out).numpy()
