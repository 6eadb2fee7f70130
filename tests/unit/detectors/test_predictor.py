"""The next-value predictor: training, streaming and its ONNX file."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sine_series import sine_series  # the helper beside this file

from satwatch.detectors import predictor as pr
from satwatch.detectors.artifacts import load_trained, save_trained
from satwatch.detectors.onnx_file import fresh_stream_scorer
from satwatch.exceptions import DataError, ModelError

PARAMS = pr.Params(hidden=8, window=40, stride=4, warm_up=5, epochs=15, lr=1e-2)


@pytest.fixture(scope="module")
def model() -> pr.NextValuePredictor:
    return pr.fit([sine_series(400)], PARAMS, seed=0)


def test_training_learns_the_next_value_and_a_jump_scores_high(model) -> None:
    losses = []
    pr.fit([sine_series(400)], PARAMS, seed=0, on_epoch=lambda epoch, loss: losses.append(loss))
    assert len(losses) == PARAMS.epochs and losses[-1] < losses[0] / 5
    test = sine_series(300, seed=1)
    test[200, 0] = 3.0
    scores = pr.score(model, test)
    assert scores[0] == 0.0  # nothing predicted the first step
    assert scores[200] > 1.0 > 5 * np.median(scores[50:190])


def test_a_stream_of_chunks_scores_as_the_wholesine_series(model) -> None:
    test = sine_series(300, seed=1)
    whole = pr.score(model, test)
    hidden, seen, parts = torch.zeros(1, PARAMS.hidden), torch.zeros(1, 1), []
    with torch.inference_mode():
        for start in range(0, test.shape[0], 37):
            out = model(torch.as_tensor(test[start : start + 37]), hidden, seen)
            hidden, seen = out[3], out[4]
            parts.append(out[1].numpy())
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    assert seen.item() == 300


def test_bad_settings_and_data_are_refused() -> None:
    with pytest.raises(ModelError, match="warm_up"):
        pr.Params(window=10, warm_up=10)
    with pytest.raises(DataError, match="more than 6 training steps"):
        pr.fit([sine_series(5)], PARAMS, 0)
    broken = sine_series(50)
    broken[3, 0] = np.inf
    with pytest.raises(DataError, match="finite"):
        pr.fit([broken], PARAMS, 0)


def test_the_onnx_file_scores_as_the_module_and_chunks_as_the_whole(model, tmp_path) -> None:
    card = {"detector": "predictor", "params": PARAMS.__dict__, "n_features": 3, "threshold": 0.5}
    save_trained(tmp_path, model, card)
    reloaded, _ = load_trained(tmp_path)
    path = pr.export_trained(tmp_path, tmp_path / "model.onnx")
    test = sine_series(500, seed=2)  # not the 300 steps the export traced
    test[150, 0] = 3.0
    served = fresh_stream_scorer(path)(test)
    np.testing.assert_allclose(served, pr.score(reloaded, test), atol=1e-5)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = list(pr.STATES)
    state = {"hidden": np.zeros((1, PARAMS.hidden), np.float32)}
    state |= {"steps_seen": np.zeros((1, 1), np.float32)}
    outputs = ["anomaly_score", "anomaly_detected", *(f"{n}_out" for n in names)]
    parts = []
    for start in range(0, 500, 64):
        score, detected, *carried = session.run(
            outputs, {"input_data": test[start : start + 64], **state}
        )
        state = dict(zip(names, carried, strict=True))
        parts.append(score)
        np.testing.assert_array_equal(detected, score > 0.5)
    np.testing.assert_array_equal(np.concatenate(parts), served)
    assert state["steps_seen"].tolist() == [[500.0]]
    assert served[150] > 0.5


DEEP = pr.Params(
    hidden=6,
    window=40,
    stride=4,
    warm_up=5,
    epochs=4,
    lr=1e-2,
    layers=2,
    dropout=0.2,
    horizon=3,
    known_commands=True,
)


def test_a_deeper_model_predicting_ahead_streams_and_exports_as_the_whole(tmp_path) -> None:
    model = pr.fit([sine_series(400)], DEEP, seed=0)
    assert not model.training  # dropout off when scoring
    test = sine_series(300, seed=1)
    whole = pr.score(model, test)
    hidden, seen, parts = torch.zeros(DEEP.layers, DEEP.hidden), torch.zeros(1, 1), []
    with torch.inference_mode():
        for start in range(0, 300, 41):
            out = model(torch.as_tensor(test[start : start + 41]), hidden, seen)
            hidden, seen = out[3], out[4]
            parts.append(out[1].numpy())
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    assert hidden.shape == (DEEP.layers, DEEP.hidden)
    card = {"detector": "predictor", "params": DEEP.__dict__, "n_features": 3, "threshold": 0.5}
    save_trained(tmp_path, model, card)
    path = pr.export_trained(tmp_path, tmp_path / "model.onnx")
    np.testing.assert_allclose(fresh_stream_scorer(path)(test), whole, atol=1e-5)


def test_the_windows_hold_the_targets_ahead_and_the_holdout_is_the_latest() -> None:
    series = torch.arange(100, dtype=torch.float32).reshape(50, 2)
    windows = pr.training_windows(series, pr.Params(window=10, stride=5, warm_up=0, horizon=3))
    assert windows.shape == (8, 13, 2)
    np.testing.assert_array_equal(windows[1, :, 0], series[5:18, 0])
    kept, held = pr._split(windows, 0.25)
    assert len(kept) == 6 and torch.equal(held, windows[6:])
    assert pr._split(windows, 0.0)[1] is None


def test_the_held_out_epoch_is_kept_and_patience_stops_training() -> None:
    # A learning rate high enough that some epochs end worse on the held-out windows.
    params = pr.Params(hidden=8, window=40, stride=4, warm_up=5, lr=0.2, holdout=0.25)
    series = torch.as_tensor(sine_series(400))
    _, held = pr._split(pr.training_windows(series, params), params.holdout)

    def held_out_loss(epochs: int) -> float:
        model = pr.fit([sine_series(400)], pr.Params(**{**params.__dict__, "epochs": epochs}), 0)
        with torch.no_grad():
            return float(pr._loss(model, held))

    # The same seed walks the same epochs: with more of them the kept loss can only fall, and
    # after an epoch that ends worse it stays where it was.
    losses = [held_out_loss(epochs) for epochs in range(1, 7)]
    assert all(later <= earlier for earlier, later in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0]
    epochs_run = []
    diverging = pr.Params(**{**params.__dict__, "lr": 5.0, "epochs": 30, "patience": 2})
    pr.fit([sine_series(400)], diverging, 0, on_epoch=lambda e, loss: epochs_run.append(e))
    assert 3 <= len(epochs_run) < 30


def test_settings_out_of_range_are_refused() -> None:
    for bad, match in (
        ({"layers": 0}, "layers"),
        ({"horizon": 0}, "horizon"),
        ({"dropout": 1.0}, "dropout"),
        ({"holdout": -0.1}, "holdout"),
        ({"patience": 3}, "patience"),
    ):
        with pytest.raises(ModelError, match=match):
            pr.Params(**bad)


def test_known_commands_predict_a_commanded_step_that_history_cannot() -> None:
    """A command that moves the value on the step it is sent: only a model reading that step's
    commands can predict the move."""
    rng = np.random.default_rng(0)

    def commanded(steps: int) -> np.ndarray:
        rows = np.zeros((steps, 2), np.float32)
        rows[:, 1] = rng.random(steps) < 0.05
        rows[:, 0] = np.where(rows[:, 1] > 0, 1.0, 0.0) + 0.01 * rng.standard_normal(steps)
        return rows

    base = {"hidden": 8, "window": 50, "stride": 5, "warm_up": 2, "epochs": 30, "lr": 1e-2}
    train, test = commanded(1500), commanded(600)
    sent = test[1:, 1] > 0
    errors = {}
    for known in (False, True):
        model = pr.fit([train], pr.Params(**base, known_commands=known), seed=0)
        errors[known] = pr.score(model, test)[1:][sent].mean()
    assert errors[True] < 0.2 < 0.5 < errors[False]
