"""The nearest-training-window detector: scores, streaming, calibration and its ONNX file."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sine_series import sine_series  # the helper beside this file

from satwatch.detectors import nearest_window as nw
from satwatch.detectors.artifacts import load_trained, save_trained
from satwatch.detectors.onnx_file import fresh_stream_scorer
from satwatch.exceptions import DataError

WINDOW = 8


@pytest.fixture(scope="module")
def model() -> nw.NearestWindow:
    return nw.fit([sine_series(400)], nw.Params(window=WINDOW), seed=0)


def test_a_training_window_scores_zero_and_a_new_shape_scores_high(model) -> None:
    train = sine_series(400)
    assert np.allclose(nw.score(model, train)[WINDOW - 1 :], 0.0, atol=1e-3)
    odd = train.copy()
    odd[200:210, 0] = 3.0
    scores = nw.score(model, odd)
    assert scores[205] > 1.0
    assert scores[: WINDOW - 1].tolist() == [0.0] * (WINDOW - 1)  # incomplete windows


def test_a_stream_of_chunks_scores_as_the_wholesine_series(model) -> None:
    test = sine_series(300, seed=1)
    test[100::60, 1] = 1.0  # commands on some steps, so the correction crosses chunks
    test[100::60, 0] += 0.5
    whole = nw.score(model, test)
    states, parts = nw.zero_states(model), []
    with torch.inference_mode():
        for start in range(0, test.shape[0], 37):
            out = model(torch.as_tensor(test[start : start + 37]), *states)
            states = out[3:]
            parts.append(out[1].numpy())
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert states[2].item() == 300
    assert states[1].item() == test[-1, 0]


def test_calibration_leaves_out_each_windows_own_neighbourhood(model) -> None:
    train = sine_series(400)
    calibration = nw.training_scores(model, train)
    assert calibration.shape == (400,)
    assert (calibration[WINDOW - 1 :] > 0).all()  # never its own zero-distance match
    # Brute force for one window: the nearest window at least a quarter window away.
    windows = nw.centred_windows(train[:, 0].astype(np.float64), WINDOW)
    i = 100
    distances = [
        np.linalg.norm(windows[i] - windows[j]) for j in range(len(windows)) if abs(i - j) >= 2
    ]
    assert calibration[i + WINDOW - 1] == pytest.approx(min(distances), rel=1e-4)


def test_the_level_of_a_window_does_not_count_only_its_shape(model) -> None:
    shifted = sine_series(300, seed=1)
    shifted[:, 0] += 2.0  # a level training never reached, moving as training moved
    assert nw.score(model, shifted).max() < 0.2


def _stepped_training(commanded: bool) -> np.ndarray:
    """A sine whose level jumps by 1 every 100 steps, with command 1 sent on each jump."""
    train = sine_series(1000)
    for step in range(100, 1000, 100):
        train[step:, 0] += 1.0 if (step // 100) % 2 else -1.0
        train[step, 1] = 1.0 if commanded else 0.0
    return train


def test_a_jump_training_shows_with_its_command_is_explained_and_one_without_is_not() -> None:
    trained = nw.fit([_stepped_training(commanded=True)], nw.Params(window=WINDOW), 0)
    # Command 1 moves the value in training; command 2 is never sent, so it may.
    assert trained.explaining.tolist() == [1.0, 1.0]
    test = sine_series(300, seed=1)
    test[150:, 0] += 1.0
    with_command = test.copy()
    with_command[150, 1] = 1.0
    assert nw.score(trained, with_command).max() < 0.2
    assert nw.score(trained, test)[150:158].max() > 0.5


def test_commands_that_never_move_the_value_explain_nothing() -> None:
    train = _stepped_training(commanded=False)
    train[50::100, 1] = 1.0  # sent, but on quiet steps
    trained = nw.fit([train], nw.Params(window=WINDOW), 0)
    assert trained.explaining[0].item() == 0.0


def test_bad_training_data_is_refused() -> None:
    with pytest.raises(DataError, match="at least 8 training steps"):
        nw.fit([sine_series(5)], nw.Params(window=WINDOW), 0)
    broken = sine_series(50)
    broken[3, 0] = np.nan
    with pytest.raises(DataError, match="finite"):
        nw.fit([broken], nw.Params(window=WINDOW), 0)


def test_the_onnx_file_scores_as_the_module_after_a_round_trip(model, tmp_path) -> None:
    model.threshold.fill_(float("inf"))
    card = {"detector": "nearest", "params": {"window": WINDOW, "epochs": 1}}
    save_trained(tmp_path, model, {**card, "n_features": 3, "threshold": 0.5})
    reloaded, _ = load_trained(tmp_path)  # the buffers take the saved window count
    assert reloaded.kernels.shape == model.kernels.shape
    path = nw.export_trained(tmp_path, tmp_path / "model.onnx")
    test = sine_series(500, seed=2)  # not the 300 steps the export traced
    test[150:160, 0] = 3.0
    served = fresh_stream_scorer(path)(test)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = {name: s.numpy() for name, s in zip(nw.STATES, nw.zero_states(model), strict=True)}
    outputs = ["anomaly_score", *(f"{name}_out" for name in nw.STATES)]
    whole = session.run(outputs, {"input_data": test, **state})
    parts = []
    for start in range(0, 500, 64):
        score, *states = session.run(outputs, {"input_data": test[start : start + 64], **state})
        state = dict(zip(nw.STATES, states, strict=True))
        parts.append(score)
    np.testing.assert_array_equal(np.concatenate(parts), whole[0])
    np.testing.assert_array_equal(state["recent_changes"], whole[1])
    assert state["steps_seen"].tolist() == whole[3].tolist() == [[500.0]]
    # float32 distances through another matrix product: equal to rounding (sqrt of ~1e-6).
    np.testing.assert_allclose(served, nw.score(reloaded, test), atol=1e-4)
    assert served[155] > 0.5


def test_an_artifact_with_the_former_frozen_run_buffers_still_loads(model) -> None:
    former = {"frozen_limit": torch.tensor(50.0), "frozen_scale": torch.ones(())}
    saved = model.state_dict() | former
    loaded = nw.build_model(model.params, model.n_features)
    loaded.load_state_dict(saved)  # strict: every other key must match
    test = sine_series(300, seed=1)
    np.testing.assert_array_equal(nw.score(loaded, test), nw.score(model, test))
