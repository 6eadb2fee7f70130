"""TorchScript TranAD: reloaded file vs eager, context passing, the served signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from satwatch.data import load_dataset
from satwatch.detectors import tranad
from satwatch.detectors.artifacts import save_trained
from satwatch.detectors.normalization import Normalisation
from satwatch.exceptions import ModelError
from satwatch.export import torchscript


@pytest.fixture(scope="module")
def telemetry(synth_data: Path) -> dict[str, np.ndarray]:
    """Normalised E-1 training steps and the first 1500 test steps."""
    chan = load_dataset(synth_data).channel("E-1")
    stats = Normalisation.fit(chan.train)
    return {"train": stats.apply(chan.train[:800]), "test": stats.apply(chan.test[:1500])}


@pytest.fixture(scope="module")
def trained(telemetry: dict[str, np.ndarray], one_torch_thread) -> tuple[tranad.TranAD, float]:
    """A briefly trained TranAD and a threshold that flags about 10% of the test steps."""
    params = tranad.Params(epochs=1, windows_per_epoch=256, batch_size=64)
    model = tranad.fit([telemetry["train"]], params, seed=0)
    threshold = float(np.quantile(tranad.score(model, telemetry["test"]), 0.9))
    return model, threshold


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> torch.jit.ScriptModule:
    model, threshold = trained
    path = tmp_path_factory.mktemp("ts") / "model.pt"
    torchscript.export_module(model, threshold, path)
    return torchscript.load_exported(path)


def _eager(trained, data: torch.Tensor, context: torch.Tensor | None = None):
    model, threshold = trained
    with torch.no_grad():
        return torchscript.ServedTranAD(model, threshold).eval()(data, context)


def _run(exported, data: torch.Tensor, context: torch.Tensor | None = None):
    with torch.no_grad():
        return exported(data) if context is None else exported(data, context)


@pytest.mark.parametrize("source", ["random", "telemetry"])
def test_reloaded_torchscript_matches_eager(trained, exported, telemetry, source: str) -> None:
    if source == "random":
        data = torch.rand(600, 25, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    else:
        data = torch.as_tensor(telemetry["test"])
    eager = _eager(trained, data)
    got = _run(exported, data)
    assert float((eager[1] - got[1]).abs().max()) < 1e-4
    assert float((eager[0] - got[0]).abs().max()) < 1e-4
    assert torch.equal(eager[2], got[2])
    assert got[2].dtype == torch.bool and got[1].dtype == torch.float32
    if source == "telemetry":  # the threshold is baked in and splits the steps
        assert 0 < int(got[2].sum()) < data.shape[0]


def test_exported_score_equals_offline_score(trained, exported, telemetry) -> None:
    model, _ = trained
    offline = tranad.score(model, telemetry["test"])
    served = _run(exported, torch.as_tensor(telemetry["test"]))[1].numpy()
    assert np.abs(offline - served).max() < 1e-4


def test_chunks_passing_the_context_score_like_the_whole_series(exported, telemetry) -> None:
    data = torch.as_tensor(telemetry["test"])
    whole = _run(exported, data)
    scores, decisions, context = [], [], None
    bounds = [0, 1, 4, 13, 23, 700, data.shape[0]]  # chunks shorter and longer than a window
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        _, score, detected, context = _run(exported, data[start:end], context)
        scores.append(score)
        decisions.append(detected)
    assert float((torch.cat(scores) - whole[1]).abs().max()) < 1e-5
    assert torch.equal(torch.cat(decisions), whole[2])
    assert torch.equal(context, data[-9:])


def test_absent_context_replicate_pads_the_first_step(exported, telemetry) -> None:
    data = torch.as_tensor(telemetry["test"][:50])
    implicit = _run(exported, data)
    explicit = _run(exported, data, data[:1].repeat(9, 1))
    assert torch.equal(implicit[1], explicit[1])
    assert implicit[3].shape == (9, 25)


def test_one_step_input_works_and_keeps_the_older_context(exported, telemetry) -> None:
    data = torch.as_tensor(telemetry["test"][:20])
    _, score, _, context = _run(exported, data[10:11], data[1:10])
    assert score.shape == (1,)
    assert torch.equal(context, data[2:11])


def test_bad_shapes_are_refused_with_the_expected_shape(exported) -> None:
    with pytest.raises(Exception, match=r"expected shape \[-1, 25\], got \[5, 3\]"):
        _run(exported, torch.zeros(5, 3))
    with pytest.raises(Exception, match="at least 1 time step"):
        _run(exported, torch.zeros(0, 25))
    with pytest.raises(Exception, match=r"context: expected shape \[9, 25\], got \[4, 25\]"):
        _run(exported, torch.zeros(5, 25), torch.zeros(4, 25))


def test_convert_bakes_the_card_threshold(trained, tmp_path: Path, telemetry) -> None:
    model, threshold = trained
    params = tranad.Params(epochs=1, windows_per_epoch=256, batch_size=64)
    card = {"detector": "tranad", "params": params.to_dict(), "n_features": 25}
    folder = save_trained(tmp_path / "tranad" / "tranad_sat1", model, card)
    with pytest.raises(ModelError, match="threshold"):
        torchscript.convert(folder, tmp_path / "out" / "model.pt")
    save_trained(folder, model, {**card, "threshold": threshold})
    path = torchscript.convert(folder, tmp_path / "out" / "model.pt")
    _, score, detected, _ = _run(
        torchscript.load_exported(path), torch.as_tensor(telemetry["test"])
    )
    assert torch.equal(detected, score > threshold)
