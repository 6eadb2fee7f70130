"""Training orchestration: jobs, the model card, parallel workers, the `train` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from satwatch.commands import detectors as detectors_cli
from satwatch.data import load_dataset
from satwatch.detectors import omnianomaly as om
from satwatch.detectors.artifacts import data_sha256, load_trained
from satwatch.detectors.normalization import Normalisation
from satwatch.detectors.thresholds import pot_threshold
from satwatch.detectors.training import fit_threshold, plan_jobs, run_jobs, train_job
from satwatch.exceptions import ModelError

TINY = {"hidden": 16, "dense": 16, "flows": 4, "epochs": 2, "stride": 25, "batch_size": 32}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_plan_is_one_job_per_channel_for_omni_and_one_for_tranad(synth_data, tmp_path) -> None:
    omni = plan_jobs("omni", ["E-1", "A-1"], "quick", 0, synth_data, tmp_path)
    assert [(j.name, j.channels) for j in omni] == [("SMAP_E-1", ("E-1",)), ("SMAP_A-1", ("A-1",))]
    tranad = plan_jobs("tranad", ["E-1", "A-1"], "quick", 0, synth_data, tmp_path)
    assert [(j.name, j.channels) for j in tranad] == [("tranad_sat1", ("E-1", "A-1"))]


def test_unknown_detector_or_profile_is_a_model_error(synth_data, tmp_path) -> None:
    with pytest.raises(ModelError, match="lstm"):
        plan_jobs("lstm", ["E-1"], "quick", 0, synth_data, tmp_path)
    with pytest.raises(ModelError, match="fast"):
        plan_jobs("omni", ["E-1"], "fast", 0, synth_data, tmp_path)


def test_card_holds_what_rebuilds_uses_and_judges_the_model(synth_data, tmp_path) -> None:
    (job,) = plan_jobs("omni", ["A-1"], "quick", 5, synth_data, tmp_path, overrides=TINY)
    epochs: list[int] = []
    result = train_job(job, on_epoch=lambda name, epoch, loss: epochs.append(epoch))
    assert result.error is None and epochs == [1, 2]
    card = json.loads((tmp_path / "omni" / "SMAP_A-1" / "card.json").read_text())
    chan = load_dataset(synth_data).channel("A-1")
    assert card["detector"] == "omni" and card["channels"] == ["A-1"] and card["seed"] == 5
    assert card["params"]["hidden"] == 16 and card["params"]["window"] == 100
    assert len(card["train_loss"]) == 2 and card["train_seconds"] > 0
    assert card["data_sha256"] == {"A-1": data_sha256([chan.train])}
    assert {"torch", "numpy", "python"} <= set(card["versions"])
    assert card["normalisation"]["A-1"] == Normalisation.fit(chan.train).to_dict()
    stats = Normalisation.from_dict(card["normalisation"]["A-1"])
    model, loaded = load_trained(tmp_path / "omni" / "SMAP_A-1")
    train_scores = om.score(model, stats.apply(chan.train))
    top, median = train_scores.max(), np.median(train_scores)
    pot = pot_threshold(train_scores, risk=1e-3)
    assert loaded["threshold_fit"]["pot"] == pytest.approx(pot)
    expected = min(max(pot, top), top + 0.1 * (top - median))
    assert loaded["threshold"] == pytest.approx(expected, rel=1e-6)
    assert loaded["channel_thresholds"]["A-1"] == pytest.approx(loaded["threshold"])


def test_parallel_workers_train_each_channel_and_a_failure_does_not_stop_others(
    synth_data, tmp_path
) -> None:
    jobs = plan_jobs("omni", ["E-2", "Z-9"], "quick", 0, synth_data, tmp_path, overrides=TINY)
    seen: list[tuple[str, int]] = []
    results = run_jobs(jobs, workers=2, on_epoch=lambda name, epoch, _: seen.append((name, epoch)))
    good, bad = results
    assert good.error is None and (good.folder / "model.pt").is_file()
    assert bad.error is not None and "Z-9" in bad.error
    assert ("SMAP_E-2", 2) in seen


def test_clamped_rule_keeps_the_threshold_just_above_the_training_scores() -> None:
    scores = np.concatenate([np.zeros(990), np.linspace(1.0, 10.0, 10)])
    threshold, info = fit_threshold(scores, "pot-clamped")
    assert info["train_max"] == 10.0 and info["train_median"] == 0.0
    assert 10.0 <= threshold <= 11.0
    assert fit_threshold(scores, "pot")[0] == pytest.approx(info["pot"])
    with pytest.raises(ModelError, match="evt"):
        fit_threshold(scores, "evt")


def test_same_seed_trains_the_same_weights(synth_data, tmp_path) -> None:
    weights = []
    for run in ("a", "b"):
        (job,) = plan_jobs("omni", ["E-3"], "quick", 1, synth_data, tmp_path / run, overrides=TINY)
        weights.append(train_job(job).folder / "model.pt")
    first, second = (torch.load(w, weights_only=True) for w in weights)
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def test_train_command_runs_end_to_end_on_one_channel(synth_data, tmp_path, monkeypatch) -> None:
    tiny = om.Params(**{**om.Params.quick().__dict__, **TINY})
    monkeypatch.setattr(om.Params, "quick", classmethod(lambda cls: tiny))
    app = typer.Typer()
    app.callback()(lambda: None)
    detectors_cli.register(app)
    args = ["train", "--channels", "D-1", "--jobs", "1", "--data", str(synth_data)]
    result = CliRunner().invoke(app, [*args, "--artifacts", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "SMAP_D-1" in result.output
    card = json.loads((tmp_path / "omni" / "SMAP_D-1" / "card.json").read_text())
    assert np.isfinite(card["threshold"]) and card["profile"] == "quick"
    bad = CliRunner().invoke(
        app, ["train", "--channels", "Q-7", "--data", str(synth_data), "--artifacts", str(tmp_path)]
    )
    assert bad.exit_code == 1 and "Q-7" in bad.output
