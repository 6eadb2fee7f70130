"""TranAD: shapes, the score formula, windows per channel, training on real telemetry, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from satwatch.data import load_dataset
from satwatch.detectors import tranad
from satwatch.detectors.normalization import Normalisation
from satwatch.exceptions import DataError, ModelError

TINY = tranad.Params(epochs=3, windows_per_epoch=384, batch_size=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def real_train(shared_data: Path) -> list[np.ndarray]:
    """The first 600 normalised training steps of two real channels."""
    return _first_train_steps(shared_data)


@pytest.fixture(scope="module")
def synth_train(synth_data: Path) -> list[np.ndarray]:
    """The same from the generated set, for tests that do not need NASA's telemetry."""
    return _first_train_steps(synth_data)


def _first_train_steps(folder: Path) -> list[np.ndarray]:
    dataset = load_dataset(folder)
    series = []
    for name in ("E-1", "P-1"):
        chan = dataset.channel(name)
        series.append(Normalisation.fit(chan.train).apply(chan.train[:600]))
    return series


def test_forward_reconstructs_the_last_step_three_times_within_bounds() -> None:
    torch.manual_seed(0)
    model = tranad.build_model(tranad.Params()).eval()
    windows = torch.rand(7, 10, 25)
    with torch.no_grad():
        outputs = model(windows)
    assert [tuple(o.shape) for o in outputs] == [(7, 25)] * 3
    for output in outputs:
        assert bool((output >= model.out_low).all() and (output <= model.out_high).all())


def test_score_is_half_the_squared_errors_of_o1_and_o2_hat_on_column_zero() -> None:
    torch.manual_seed(1)
    model = tranad.build_model(tranad.Params(score_mode="value")).eval()
    series = np.random.default_rng(1).uniform(0, 1, (40, 25)).astype(np.float32)
    with torch.no_grad():
        o1, o2_hat = model.reconstruct(tranad.make_windows(series, 10))
    expected = 0.5 * (o1[:, 0] - series[:, 0]) ** 2 + 0.5 * (o2_hat[:, 0] - series[:, 0]) ** 2
    np.testing.assert_allclose(tranad.score(model, series), expected.numpy(), rtol=1e-5, atol=1e-7)
    tranad.set_score_mode(model, "mean")
    mean = (0.5 * (o1 - torch.as_tensor(series)) ** 2 + 0.5 * (o2_hat - series) ** 2).mean(1)
    np.testing.assert_allclose(tranad.score(model, series), mean.numpy(), rtol=1e-5, atol=1e-7)


def test_score_gives_one_finite_score_per_step_even_below_one_window() -> None:
    model = tranad.build_model(tranad.Params()).eval()
    for steps in (1, 3, 10, 57):
        series = np.random.default_rng(steps).uniform(0, 1, (steps, 25)).astype(np.float32)
        scores = tranad.score(model, series)
        assert scores.shape == (steps,)
        assert np.isfinite(scores).all()


def test_windows_are_replicate_padded_and_never_cross_series() -> None:
    # Series i holds the constant i, so a window mixing two series would not be constant.
    train = [np.full((length, 25), float(i), np.float32) for i, length in enumerate((3, 12, 5))]
    windows = tranad.training_windows(train, 10)
    assert windows.shape == (20, 10, 25)
    assert bool((windows == windows[:, :1, :1]).all())
    first = tranad.make_windows(np.arange(50, dtype=np.float32).reshape(2, 25), 10)
    assert bool((first[0] == first[0, -1]).all())  # step 0: its own row, replicated
    assert torch.equal(first[1, -1], torch.arange(25.0, 50.0))


def test_fit_lowers_the_loss_on_real_telemetry(real_train: list[np.ndarray]) -> None:
    losses: list[float] = []
    tranad.fit(real_train, TINY, seed=0, on_epoch=lambda epoch, loss: losses.append(loss))
    assert len(losses) == TINY.epochs
    assert losses[-1] < losses[0]


def test_fit_is_deterministic_for_a_seed(synth_train: list[np.ndarray]) -> None:
    short = tranad.Params(epochs=2, windows_per_epoch=128, batch_size=64)
    first = tranad.fit(synth_train, short, seed=3).state_dict()
    again = tranad.fit(synth_train, short, seed=3).state_dict()
    other = tranad.fit(synth_train, short, seed=4).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_fit_bounds_the_output_to_the_training_range(synth_train: list[np.ndarray]) -> None:
    model = tranad.fit(synth_train, tranad.Params(epochs=1, windows_per_epoch=64), seed=0)
    stacked = np.concatenate(synth_train)
    low, high = stacked.min(0)[0], stacked.max(0)[0]
    margin = TINY.range_margin * (high - low)  # widened by a share of the training range
    assert np.allclose(model.out_low.numpy()[0], low - margin, atol=1e-6)
    assert np.allclose(model.out_high.numpy()[0], high + margin, atol=1e-6)


def test_bad_series_and_params_are_refused() -> None:
    model = tranad.build_model(tranad.Params())
    with pytest.raises(DataError, match=r"expected a \(T, 25\) array, got \(10, 3\)"):
        tranad.score(model, np.zeros((10, 3), np.float32))
    with pytest.raises(DataError, match="NaN"):
        tranad.fit([np.full((20, 25), np.nan, np.float32)], TINY, seed=0)
    with pytest.raises(ModelError, match="score_mode"):
        tranad.build_model(tranad.Params(score_mode="max"))
    with pytest.raises(ModelError, match="epsilon"):
        tranad.build_model(tranad.Params(epsilon=1.0))
