"""Train detectors end to end: data -> normalisation -> fit -> POT threshold -> artifacts.

One *job* is one model: an OmniAnomaly per channel, or the one TranAD over all its channels.
Jobs run in parallel worker processes (each limited to one torch thread, so ``jobs`` workers
use ``jobs`` cores); each reports its epochs through a queue so the caller can draw progress.

Usage::

    jobs = plan_jobs("omni", ["E-1", "A-1"], profile="quick", seed=0,
                     data=data_dir(), artifacts=artifacts_dir())
    results = run_jobs(jobs, workers=2, on_epoch=lambda name, epoch, loss: ...)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from satwatch.data import load_dataset
from satwatch.detectors import registry
from satwatch.detectors.artifacts import (
    CARD_FILE,
    artifact_dir,
    data_sha256,
    load_trained,
    params_to_dict,
    save_trained,
    versions,
)
from satwatch.detectors.normalization import Normalisation
from satwatch.detectors.thresholds import pot_threshold
from satwatch.exceptions import ModelError, SatwatchError

LOGGER = logging.getLogger(__name__)

PROFILES = ("quick", "full")
POT_RISK = 1e-3
POT_INIT_LEVEL = 0.98
CLAMP_MARGIN = 0.1

EpochCallback = Callable[[str, int, float], None]


@dataclass(frozen=True)
class TrainJob:
    """One model to train.

    Attributes:
        detector: ``omni`` or ``tranad``.
        name: artifact name (``SMAP_E-1``, ``tranad_sat1``).
        channels: the channels it trains on.
        profile: ``quick`` or ``full``.
        seed: random seed.
        data: telemetry folder.
        artifacts: artifacts root.
        spacecraft: ``SMAP`` or ``MSL``.
        overrides: hyperparameters that replace the profile's (e.g. tiny models in tests).
    """

    detector: str
    name: str
    channels: tuple[str, ...]
    profile: str
    seed: int
    data: Path
    artifacts: Path
    spacecraft: str = "SMAP"
    overrides: dict = field(default_factory=dict)

    @property
    def params(self) -> object:
        """The detector's hyperparameters: the profile's, with the overrides applied."""
        return dataclasses.replace(detector_params(self.detector, self.profile), **self.overrides)

    @property
    def epochs(self) -> int:
        """Number of epochs the job trains for."""
        return self.params.epochs


@dataclass
class JobResult:
    """What a finished (or failed) job reports back."""

    name: str
    folder: Path | None = None
    seconds: float = 0.0
    threshold: float | None = None
    final_loss: float | None = None
    error: str | None = None
    card: dict = field(default_factory=dict)


def detector_params(detector: str, profile: str) -> object:
    """The ``Params`` of a detector for a profile name."""
    if profile not in PROFILES:
        raise ModelError(f"unknown training profile {profile!r}; expected one of {PROFILES}")
    return getattr(registry.detector(detector).module().Params, profile)()


def plan_jobs(
    detector: str,
    channels: list[str],
    profile: str,
    seed: int,
    data: Path,
    artifacts: Path,
    spacecraft: str = "SMAP",
    overrides: dict | None = None,
) -> list[TrainJob]:
    """One job per channel for a per-channel detector, else one job over all channels."""
    detector_params(detector, profile)  # fail early on a bad detector or profile
    common = {
        "profile": profile,
        "seed": seed,
        "data": Path(data),
        "artifacts": Path(artifacts),
        "overrides": dict(overrides or {}),
    }
    declared = registry.detector(detector)
    if not declared.per_channel:
        name = declared.served_name(spacecraft=spacecraft)
        return [TrainJob(detector, name, tuple(channels), spacecraft=spacecraft, **common)]
    return [
        TrainJob(
            detector, declared.served_name(c, spacecraft), (c,), spacecraft=spacecraft, **common
        )
        for c in channels
    ]


def _pot(scores: np.ndarray) -> float:
    return float(pot_threshold(scores, risk=POT_RISK, init_level=POT_INIT_LEVEL))


def fit_threshold(scores: np.ndarray, rule: str = "pot") -> tuple[float, dict]:
    """The threshold of one set of training scores, and the figures it came from.

    Rules:
        ``pot``: the POT threshold (risk ``POT_RISK``, initial level ``POT_INIT_LEVEL``).
        ``pot-clamped``: the POT threshold clamped to ``[max, max + CLAMP_MARGIN * (max -
        median)]`` of the training scores. OmniAnomaly's ``nll`` scores (``-log p`` with standard
        deviations down to 1e-4) are so heavy-tailed that the GPD fitted to ~60 peaks
        extrapolates the 1e-3 risk level orders of magnitude past anything seen (e.g. 3e8
        for E-1, whose largest training score is 2.6e3) and flags nothing; on steady
        channels it can also land inside the bulk and flag every step. The clamp keeps it
        just above everything seen in training. For the ``value`` score it was kept because
        it scored better than plain POT on the validation channels.
    """
    scores = np.asarray(scores, dtype=np.float64)
    pot = _pot(scores)
    top, median = float(scores.max()), float(np.median(scores))
    info = {"pot": pot, "train_max": top, "train_median": median}
    if rule == "pot":
        return pot, info
    if rule != "pot-clamped":
        raise ModelError(f"threshold rule: expected 'pot' or 'pot-clamped', got {rule!r}")
    return float(min(max(pot, top), top + CLAMP_MARGIN * (top - median))), info


def calibration_scores(
    module: ModuleType, model: torch.nn.Module, series: np.ndarray
) -> np.ndarray:
    """A detector's scores of its own training split, which thresholds are fitted on.

    They are its served ``score`` unless the detector defines ``training_scores``: one that
    remembers its training data (nearest window) would score it 0 everywhere.
    """
    return getattr(module, "training_scores", module.score)(model, series)


def _thresholds(module: ModuleType, model: torch.nn.Module, train: dict[str, np.ndarray]) -> dict:
    """Card entries of the threshold: overall, per channel, and how they were fitted."""
    rule = getattr(module, "THRESHOLD_RULE", "pot")
    # Thresholds come from the training scores computed exactly as serving computes them.
    scores = {name: calibration_scores(module, model, series) for name, series in train.items()}
    threshold, info = fit_threshold(np.concatenate(list(scores.values())), rule)
    return {
        "threshold": threshold,
        "channel_thresholds": {name: fit_threshold(s, rule)[0] for name, s in scores.items()},
        "threshold_method": {
            "method": rule,
            "risk": POT_RISK,
            "init_level": POT_INIT_LEVEL,
            "clamp_margin": CLAMP_MARGIN,
            "fitted_on": "training scores",
        },
        "threshold_fit": info,
    }


def rethreshold(folder: Path, data: Path | None = None) -> dict:
    """Refit the threshold(s) of a trained model with the current rule; rewrite its card."""
    model, card = load_trained(folder)
    dataset = load_dataset(data, spacecraft=card["spacecraft"])
    train = {
        name: Normalisation.from_dict(card["normalisation"][name]).apply(
            dataset.channel(name).train
        )
        for name in card["channels"]
    }
    card.update(_thresholds(registry.detector(card["detector"]).module(), model, train))
    (Path(folder) / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return card


def train_job(job: TrainJob, on_epoch: EpochCallback | None = None) -> JobResult:
    """Train one model, fit its threshold(s) on the training scores and write its artifacts."""
    dataset = load_dataset(job.data, spacecraft=job.spacecraft)
    channels = [dataset.channel(name) for name in job.channels]
    stats = {c.name: Normalisation.fit(c.train) for c in channels}
    train = [stats[c.name].apply(c.train) for c in channels]
    module = registry.detector(job.detector).module()
    params = job.params
    losses: list[float] = []

    def record(epoch: int, loss: float) -> None:
        losses.append(float(loss))
        if on_epoch is not None:
            on_epoch(job.name, epoch, float(loss))

    started = time.perf_counter()
    model = module.fit(train, params, job.seed, on_epoch=record)
    seconds = time.perf_counter() - started
    thresholds = _thresholds(
        module, model, {c.name: s for c, s in zip(channels, train, strict=True)}
    )
    card = {
        "detector": job.detector,
        "name": job.name,
        "spacecraft": job.spacecraft,
        "channels": list(job.channels),
        "profile": job.profile,
        "params": params_to_dict(params),
        "n_features": int(train[0].shape[1]),
        **thresholds,
        "normalisation": {name: s.to_dict() for name, s in stats.items()},
        "train_loss": losses,
        "data_sha256": {c.name: data_sha256([c.train]) for c in channels},
        "train_seconds": round(seconds, 3),
        "seed": job.seed,
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    folder = save_trained(artifact_dir(job.artifacts, job.detector, job.name), model, card)
    return JobResult(
        job.name,
        folder,
        seconds,
        thresholds["threshold"],
        losses[-1] if losses else None,
        None,
        card,
    )


def _worker(job: TrainJob, events: queue.Queue | None, threads: int = 1) -> JobResult:
    # One thread per worker: `jobs` workers then share `jobs` cores without oversubscribing.
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)

    def on_epoch(name: str, epoch: int, loss: float) -> None:
        if events is not None:
            events.put((name, epoch, loss))

    return _guarded(job, on_epoch)


def _guarded(job: TrainJob, on_epoch: EpochCallback | None) -> JobResult:
    try:
        return train_job(job, on_epoch)
    except SatwatchError as err:
        return JobResult(job.name, error=str(err))
    except Exception as err:  # noqa: BLE001  a failing channel is recorded, the others go on
        LOGGER.exception("training %s failed", job.name)
        return JobResult(job.name, error=f"{type(err).__name__}: {err}")


def run_jobs(
    jobs: list[TrainJob],
    workers: int = 2,
    on_epoch: EpochCallback | None = None,
    on_done: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """Run jobs in ``workers`` processes (in this process when ``workers`` is 1).

    A failing job is returned with ``error`` set; the others still run. Worker processes are
    spawned, so a script calling this needs the ``if __name__ == "__main__":`` guard. A single
    job (TranAD) runs here with ``workers`` torch threads instead.
    """
    if workers < 1:
        raise ModelError(f"--jobs: expected at least 1 worker, got {workers}")
    if workers == 1 or len(jobs) == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(workers if len(jobs) == 1 else 1)
        results = []
        try:
            for job in jobs:
                result = _guarded(job, on_epoch)
                results.append(result)
                if on_done is not None:
                    on_done(result)
        finally:
            torch.set_num_threads(threads)
        return results
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        events = manager.Queue()
        futures: dict[Future, TrainJob] = {pool.submit(_worker, job, events): job for job in jobs}
        results_by_name: dict[str, JobResult] = {}
        while len(results_by_name) < len(jobs):
            try:
                name, epoch, loss = events.get(timeout=0.2)
                if on_epoch is not None:
                    on_epoch(name, epoch, loss)
            except queue.Empty:
                pass
            for future, job in futures.items():
                if future.done() and job.name not in results_by_name:
                    result = _future_result(future, job)
                    results_by_name[job.name] = result
                    if on_done is not None:
                        on_done(result)
        _drain(events, on_epoch)
    return [results_by_name[job.name] for job in jobs]


def _future_result(future: Future, job: TrainJob) -> JobResult:
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001  e.g. a worker killed by the OS
        return JobResult(job.name, error=f"worker failed: {type(err).__name__}: {err}")


def _drain(events: queue.Queue, on_epoch: EpochCallback | None) -> None:
    while True:
        try:
            name, epoch, loss = events.get_nowait()
        except (queue.Empty, EOFError, OSError):
            return
        if on_epoch is not None:
            on_epoch(name, epoch, loss)
