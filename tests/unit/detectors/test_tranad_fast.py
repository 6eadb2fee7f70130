"""FastTranADScorer: the served TranAD computation equals the nn.Transformer reference."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from satwatch.data import load_dataset
from satwatch.detectors import tranad
from satwatch.detectors.normalization import Normalisation
from satwatch.exceptions import ModelError
from satwatch.export import torchscript

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def models(synth_data: Path, one_torch_thread) -> dict[str, tranad.TranAD]:
    """Random weights (seeded) and a briefly trained model with its fitted output range."""
    torch.manual_seed(0)
    chan = load_dataset(synth_data).channel("E-1")
    train = Normalisation.fit(chan.train).apply(chan.train[:800])
    params = tranad.Params(epochs=1, windows_per_epoch=256, batch_size=64, score_mode="mean")
    return {
        "random": tranad.build_model(tranad.Params()).eval(),
        "trained": tranad.fit([train], params, seed=0),
    }


@pytest.fixture(scope="module")
def scripted(models: dict[str, tranad.TranAD]) -> dict[str, torch.jit.ScriptModule]:
    return {name: _script(tranad.FastTranADScorer(m)) for name, m in models.items()}


def _script(module: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # what Triton's backend runs
        return torch.jit.script(module.eval())


def _series(steps: int, seed: int) -> torch.Tensor:
    return torch.rand(steps, tranad.N_FEATURES, generator=torch.Generator().manual_seed(seed))


def _max_difference(expected: tuple[torch.Tensor, ...], got: tuple[torch.Tensor, ...]) -> float:
    assert [o.shape for o in got] == [o.shape for o in expected]
    return max(float((e - g).abs().max()) for e, g in zip(expected, got, strict=True))


@pytest.mark.parametrize("kind", ["random", "trained"])
@pytest.mark.parametrize("steps", [1, 7, 256, 1000])
@pytest.mark.parametrize("with_context", [False, True])
def test_fast_scorer_equals_the_reference_eager_and_scripted(
    models, scripted, kind: str, steps: int, with_context: bool
) -> None:
    model = models[kind]
    series = _series(steps, seed=steps) * 1.4 - 0.2  # a little outside the training range
    context = _series(model.window - 1, seed=99) if with_context else None
    with torch.no_grad():
        expected = tranad.TranADScorer(model).eval()(series, context)
        eager = tranad.FastTranADScorer(model).eval()(series, context)
        got = scripted[kind](series, context)
    assert _max_difference(expected, eager) < TOLERANCE
    assert _max_difference(expected, got) < TOLERANCE
    assert torch.equal(got[2], expected[2])  # context_out: the last steps, not computed


@pytest.mark.parametrize("block", [1, 3, 64, 4096])
def test_the_block_size_does_not_change_the_scores(models, block: int) -> None:
    model = models["trained"]
    series = _series(200, seed=1)
    with torch.no_grad():
        expected = tranad.TranADScorer(model).eval()(series)
        got = tranad.FastTranADScorer(model, block=block).eval()(series)
    assert _max_difference(expected, got) < TOLERANCE


def test_several_layers_and_other_widths_are_computed_as_the_reference() -> None:
    torch.manual_seed(2)
    model = tranad.build_model(tranad.Params(layers=2, d_ff=8, window=6), n_features=7).eval()
    series = _series(90, seed=2)[:, :7]
    with torch.no_grad():
        expected = tranad.TranADScorer(model).eval()(series)
        got = _script(tranad.FastTranADScorer(model))(series)
    assert _max_difference(expected, got) < TOLERANCE


def test_the_scorer_uses_the_model_weights_as_they_are_loaded(models) -> None:
    model = tranad.build_model(tranad.Params()).eval()
    fast = tranad.FastTranADScorer(model).eval()
    model.load_state_dict(models["trained"].state_dict())  # in place, after building
    series = _series(40, seed=3)
    with torch.no_grad():
        expected = tranad.TranADScorer(models["trained"]).eval()(series)
        got = fast(series)
    assert _max_difference(expected, got) < TOLERANCE


def test_served_and_offline_scores_use_it_and_the_export_check_passes(models, tmp_path) -> None:
    model = models["trained"]
    served = torchscript.ServedTranAD(model, threshold=0.01)
    assert isinstance(served.scorer, tranad.FastTranADScorer)
    path = torchscript.export_module(model, 0.01, tmp_path / "model.pt", check=True)
    difference = torchscript.check_exported(path, model, 0.01)  # against the reference
    assert difference < TOLERANCE
    series = _series(300, seed=4).numpy()
    with torch.no_grad():
        reference = tranad.TranADScorer(model).eval()(torch.as_tensor(series))[1].numpy()
    assert np.abs(tranad.score(model, series) - reference).max() < TOLERANCE
    assert np.abs(torchscript.served_scorer(path)(series) - reference).max() < TOLERANCE


def test_layers_it_does_not_compute_are_refused() -> None:
    model = tranad.build_model(tranad.Params())
    model.encoder.layers[0] = nn.TransformerEncoderLayer(
        50, nhead=25, dim_feedforward=16, batch_first=True, norm_first=True
    )
    with pytest.raises(ModelError, match="post-norm ReLU"):
        tranad.FastTranADScorer(model)
