"""OmniAnomaly: flows, the state-space prior, training and one-pass scoring with carried state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from satwatch.data import load_dataset
from satwatch.detectors import omnianomaly as om
from satwatch.detectors.artifacts import load_trained, save_trained
from satwatch.detectors.normalization import Normalisation
from satwatch.exceptions import ModelError

TINY = dataclasses.replace(
    om.Params.quick(), hidden=16, dense=16, flows=4, epochs=1, stride=20, batch_size=32
)


@pytest.fixture(scope="module")
def e1(synth_data, one_torch_thread) -> tuple[np.ndarray, np.ndarray]:
    chan = load_dataset(synth_data).channel("E-1")
    stats = Normalisation.fit(chan.train)
    return stats.apply(chan.train), stats.apply(chan.test[:1500])


def test_profiles_keep_paper_defaults_in_full() -> None:
    full = om.Params.full()
    assert (full.window, full.z_dim, full.hidden, full.dense, full.flows) == (100, 3, 500, 500, 20)
    assert om.Params.quick().hidden < full.hidden


def test_planar_flow_log_det_matches_autograd_jacobian() -> None:
    torch.manual_seed(1)
    flow = om.PlanarFlow(3)
    with torch.no_grad():
        flow.u.copy_(torch.tensor([2.0, -1.0, 0.5]))  # beyond the constraint: u_hat must fix it
    z = torch.randn(3, dtype=torch.float32)
    _, log_det = flow(z)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow(v)[0], z)
    assert log_det.item() == pytest.approx(torch.linalg.slogdet(jacobian)[1].item(), abs=1e-5)


def test_state_space_prior_equals_a_kalman_filter_on_the_random_walk_model() -> None:
    # Per dimension: s_1 ~ N(0, 1), s_t = s_{t-1} + N(0, 1), z_t = s_t + N(0, 1).
    z = torch.randn(2, 7, 3, dtype=torch.float64)
    mean, var, expected = torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, dtype=torch.float64)
    for t in range(z.shape[1]):
        innovation = var + 1.0
        residual = z[:, t] - mean
        normal = torch.distributions.Normal(torch.zeros_like(residual), innovation.sqrt())
        expected = expected + normal.log_prob(residual).sum(-1)
        gain = var / innovation
        mean, var = mean + gain * residual, (1.0 - gain) * var + 1.0
    torch.testing.assert_close(om.state_space_log_prior(z), expected)


@pytest.fixture(scope="module")
def trained(e1) -> om.OmniAnomaly:
    return om.fit([e1[0]], TINY, seed=0)


def test_fit_reports_epochs_and_reproduces_with_seed(e1) -> None:
    train = e1[0][:600]
    losses: list[tuple[int, float]] = []
    first = om.fit([train], TINY, seed=3, on_epoch=lambda e, loss: losses.append((e, loss)))
    second = om.fit([train], TINY, seed=3)
    assert [e for e, _ in losses] == [1] and np.isfinite(losses[0][1])
    for key, value in first.state_dict().items():
        torch.testing.assert_close(value, second.state_dict()[key], rtol=0, atol=0)


def test_score_is_one_finite_value_per_step_and_chunks_with_state_match(e1, trained) -> None:
    test = e1[1]
    whole = om.score(trained, test)
    assert whole.shape == (test.shape[0],) and np.isfinite(whole).all()
    enc = dec = None
    parts = []
    with torch.no_grad():
        for start in range(0, test.shape[0], 97):
            x = torch.from_numpy(test[start : start + 97]).unsqueeze(0)
            _, s, enc, dec = trained(x, enc, dec)
            parts.append(s[0].numpy())
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-4)


def test_windowed_scoring_scores_each_step_from_its_own_window(e1, trained) -> None:
    test = e1[1]
    windowed = om.score_windowed(trained, test[:200])
    last = om.score(trained, test[150 - TINY.window + 1 : 151])[-1]
    assert windowed.shape == (200,)
    assert windowed[150] == pytest.approx(last, rel=1e-5, abs=1e-4)


def test_value_score_is_the_column_0_error_and_nll_the_summed_likelihood(e1, trained) -> None:
    x = torch.from_numpy(e1[1][:300]).unsqueeze(0)
    nll_model = om.build_model(dataclasses.replace(TINY, score_mode="nll"))
    nll_model.load_state_dict(trained.state_dict())
    with torch.no_grad():
        mean, value, _, _ = trained(x)
        _, nll, _, _ = nll_model.eval()(x)
        _, std, _ = trained.likelihood(trained.apply_flows(trained.posterior(x)[0])[0])
    assert trained.params.score_mode == "value"
    torch.testing.assert_close(value, (x[..., 0] - mean[..., 0]).abs())
    torch.testing.assert_close(nll, om.negative_log_prob(x, mean, std))
    assert not torch.allclose(value, nll)


def test_unknown_score_kind_is_refused_naming_the_choices() -> None:
    expected = r"score_mode: expected one of \('value', 'nll'\), got 'mse'"
    with pytest.raises(ModelError, match=expected):
        dataclasses.replace(TINY, score_mode="mse")


def test_cards_older_than_the_score_field_keep_the_nll_score(tmp_path, trained) -> None:
    params = dataclasses.asdict(TINY)
    del params["score_mode"]  # as cards written before the field existed
    card = {"detector": "omni", "n_features": om.N_FEATURES, "params": params}
    folder = save_trained(tmp_path / "old", trained, card)
    assert load_trained(folder)[0].params.score_mode == "nll"
    card["params"] = dataclasses.asdict(TINY)
    new = load_trained(save_trained(tmp_path / "new", trained, card))[0]
    assert new.params.score_mode == "value"
