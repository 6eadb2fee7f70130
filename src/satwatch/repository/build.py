"""``satwatch build``: fill a Triton model repository from the trained detectors.

For the channels asked for (default the 27 seed SMAP channels) of one spacecraft (default
SMAP; MSL or a data set's own name, models ``<SPACECRAFT>_<chan>``, TranAD ``tranad_<craft>``)
the builder

1. trains what is missing (``artifacts/omni/SMAP_<chan>``, ``artifacts/tranad/tranad_sat1``)
   with the chosen profile through :mod:`satwatch.detectors.training`;
2. exports each OmniAnomaly to ``onnx/SMAP_<chan>/1/model.onnx`` with ``config.pbtxt``
   (production, ``KIND_GPU``, two versions served) and ``configs/cpu.pbtxt``, the config read
   from the graph (:func:`satwatch.repository.deploy.onnx_model_config`);
3. scripts TranAD to ``pytorch/tranad_sat1_core/1/model.pt`` with its configs, and writes
   its Python front ``python/tranad_sat1`` (the served name; see ``registry.Detector``);
4. writes the Python models' configs and data files: ``preprocessing/1/normalisation.json``
   (training statistics per channel), ``postprocessing/1/thresholds.json`` (threshold and
   baseline = median training score per detector per channel, for the ``ratio`` policy; the
   training scores' median and standard deviation and the POT floor of their smoothed fused
   z-score, for the ``dynamic`` policy) and
   ``custom_logic/1/catalog.db`` (channel -> subsystem, models, thresholds);
5. rebuilds the seed's ensembles and validates the whole repository.

The width of a row (25 features for SMAP, 55 for MSL) is the data's: each detector's config
has its training width; ``preprocessing`` and ``custom_logic`` have the width of every channel
they route, or ``-1`` when the spacecraft a repository holds differ (preprocessing then checks
each row against its channel's width). A build of one spacecraft keeps the channels of the
others an earlier build left in the catalog, statistics and thresholds.

When the target is not the project's own ``triton-repository/``, the builder first copies the
source parts it needs there (``configs/`` and the Python models' ``model.py``).

Example::

    report = build_repository(artifacts_dir(), repository_dir(), data_dir(), channels="seed")
    report.seconds["SMAP_E-1"], report.size_bytes
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from satwatch.data import load_dataset, subsystem_of
from satwatch.detectors import registry
from satwatch.detectors.artifacts import artifact_dir, card_params, load_trained
from satwatch.detectors.frozen import frozen_limit
from satwatch.detectors.normalization import Normalisation
from satwatch.detectors.registry import Detector
from satwatch.detectors.training import calibration_scores, plan_jobs, run_jobs
from satwatch.exceptions import DataError, ModelError, RepositoryError
from satwatch.onnx_defaults import add_zero_defaults, missing_defaults
from satwatch.paths import PROJECT_ROOT
from satwatch.pipeline.calibration import ChannelThresholds, Threshold, training_statistics
from satwatch.pipeline.calibration_file import THRESHOLDS_FILE, load_thresholds, save_thresholds
from satwatch.pipeline.catalog import (
    CATALOG_FILE,
    ChannelEntry,
    ModelEntry,
    read_catalog,
    write_catalog,
)
from satwatch.pipeline.postprocess import PostSettings
from satwatch.pipeline.preprocess import STATS_FILE, NormalisationTable
from satwatch.repository.config import load_config, parameter_dict, write_model_configs
from satwatch.repository.deploy import onnx_model_config
from satwatch.repository.ensembles import ONNX_DETECTOR, write_seed_ensembles
from satwatch.repository.seed import (
    FEATURES,
    custom_logic_config,
    detector_config,
    postprocessing_config,
    preprocessing_config,
)
from satwatch.repository.signatures import onnx_signature
from satwatch.repository.validate import BACKEND_FOLDERS, Problem, validate_repository

LOGGER = logging.getLogger(__name__)

SOURCE_REPOSITORY = PROJECT_ROOT / "triton-repository"
"""The checked-in repository holding ``configs/`` and the Python models' source."""

PYTHON_MODELS = ("preprocessing", "postprocessing", "custom_logic")
NUM_VERSIONS = 2

Progress = Callable[[str, int, int], None]
"""``progress(description, completed, total)``: the builder's progress, in steps."""


@dataclass
class BuildReport:
    """What :func:`build_repository` did.

    Attributes:
        repository: The repository filled.
        channels: Channels built.
        trained: Models trained because they were missing.
        seconds: Wall time per step (``train``, each model name, ``ensembles``, ``validate``).
        size_bytes: Size of the repository's files afterwards.
        problems: What the validator found (empty: valid).
    """

    repository: Path
    channels: list[str]
    trained: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    size_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)


def _copy_sources(repository: Path) -> None:
    """Copy ``configs/`` and the Python models' source into a repository outside the project.

    Both are copied at every build, over the files of an earlier one: the configs are made
    from the project's templates, so a repository built again serves the settings of now.
    """
    if repository.resolve() == SOURCE_REPOSITORY.resolve():
        return
    shutil.copytree(SOURCE_REPOSITORY / "configs", repository / "configs", dirs_exist_ok=True)
    for name in PYTHON_MODELS:
        source = SOURCE_REPOSITORY / "python" / name / "1" / "model.py"
        target = repository / "python" / name / "1" / "model.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _has_artifact(artifacts: Path, detector: Detector, name: str) -> bool:
    return (artifact_dir(artifacts, detector.kind, name) / "card.json").is_file()


def _missing(
    artifacts: Path, channels: Sequence[str], spacecraft: str
) -> dict[Detector, list[str]]:
    """Per registered detector, the channels whose trained model is missing."""
    missing = {}
    for detector in registry.detectors():
        if detector.per_channel:
            absent = [
                c
                for c in channels
                if not _has_artifact(artifacts, detector, detector.served_name(c, spacecraft))
            ]
        elif _has_artifact(artifacts, detector, detector.served_name(spacecraft=spacecraft)):
            absent = []
        else:
            absent = list(channels)  # one model over all channels
        if absent:
            missing[detector] = absent
    return missing


def _train(
    artifacts: Path,
    data: Path,
    missing: Mapping[Detector, list[str]],
    *,
    profile: str,
    jobs: int,
    seed: int,
    spacecraft: str,
    overrides: Mapping[str, dict],
    progress: Progress,
) -> list[str]:
    planned = []
    for detector, channels in missing.items():
        planned += plan_jobs(
            detector.kind,
            channels,
            profile,
            seed,
            data,
            artifacts,
            spacecraft=spacecraft,
            overrides=overrides.get(detector.kind),
        )
    if not planned:
        return []
    total = sum(job.epochs for job in planned)
    done = [0]

    def on_epoch(name: str, epoch: int, loss: float) -> None:
        done[0] += 1
        progress(f"train {name} epoch {epoch} (loss {loss:.4g})", done[0], total)

    results = run_jobs(planned, workers=jobs, on_epoch=on_epoch)
    failed = [f"{r.name}: {r.error}" for r in results if r.error]
    if failed:
        raise RepositoryError("training failed for " + "; ".join(failed))
    return [r.name for r in results]


def _baseline_of(kind: str, scores: np.ndarray, threshold: float) -> float:
    """Median training score: where the threshold-normalised score is 0.

    A threshold at or below the median (a detector flagging most training steps) would make
    the ratio meaningless; the baseline then falls below the threshold by its own size and
    the build says so.
    """
    median = float(np.median(scores))
    if median < threshold:
        return median
    fallback = threshold - max(abs(threshold), 1.0)
    LOGGER.warning(
        "%s threshold %.6g is not above its median training score %.6g: baseline set to %.6g",
        kind,
        threshold,
        median,
        fallback,
    )
    return fallback


def _served_config(
    detector: Detector, name: str, path: Path, card: dict, repository: Path
) -> mc.ModelConfig:
    """An ONNX detector's config is read from its graph; a TorchScript one's from the
    implementation's ``state_dims`` (TorchScript files carry no tensor shapes)."""
    if detector.backend == "onnx":
        return onnx_model_config(
            onnx_signature(path),
            name,
            num_versions=NUM_VERSIONS,
            repository=repository,
            source=str(path),
        )
    states, features = _state_dims(detector, card)
    # Behind a front, the backend model takes every state: the front fills a missing one.
    return detector_config(
        detector.backend,
        name,
        states,
        repository,
        optional_states=not detector.python_front,
        features=features,
    )


def _state_dims(detector: Detector, card: dict) -> tuple[dict[str, list[int]], int]:
    """A TorchScript detector's state dims and row width, from its card (the file has none)."""
    features = int(card["n_features"])
    return detector.module().state_dims(card_params(card), features), features


def _write_front(detector: Detector, name: str, card: dict, repository: Path) -> None:
    """``python/<name>``: the Python front of a detector whose backend refuses optional inputs."""
    states, features = _state_dims(detector, card)
    front = repository / "python" / name
    source = SOURCE_REPOSITORY / "python" / detector.front_folder / "1" / "model.py"
    if source.resolve() != (front / "1" / "model.py").resolve():
        (front / "1").mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, front / "1" / "model.py")
    config = detector_config("python", name, states, repository, features=features)
    write_model_configs(front, config)


@dataclass
class Calibration:
    """What the build learns of one detector on one channel from its training split."""

    model: str
    threshold: float
    baseline: float
    train_scores: np.ndarray
    normalisation: Normalisation


def _export(
    detector: Detector,
    name: str,
    channels: Sequence[str],
    trains: Mapping[str, np.ndarray],
    artifacts: Path,
    repository: Path,
) -> dict[str, Calibration]:
    """Export one trained model and calibrate it on each channel it serves."""
    folder = artifact_dir(artifacts, detector.kind, name)
    file_model = detector.file_model(name)
    model_dir = repository / detector.backend / file_model
    path = detector.export()(folder, model_dir / "1" / detector.model_file)
    if detector.backend == "onnx":
        # A plain request (no state) must run on the native backend too.
        add_zero_defaults(path, detector.states)
    model, card = load_trained(folder)
    write_model_configs(model_dir, _served_config(detector, file_model, path, card, repository))
    if detector.python_front:
        _write_front(detector, name, card, repository)
        # An earlier build served the file under the front's name: two models of one name.
        shutil.rmtree(repository / detector.backend / name, ignore_errors=True)
    module = detector.module()
    per_channel = card.get("channel_thresholds") or {}
    calibrations = {}
    for channel in channels:
        stats = Normalisation.from_dict(card["normalisation"][channel])
        # A channel a shared model was not trained on falls back to its pooled threshold.
        threshold = float(per_channel.get(channel, card["threshold"]))
        scores = calibration_scores(module, model, stats.apply(trains[channel]))
        baseline = _baseline_of(detector.kind, scores, threshold)
        calibrations[channel] = Calibration(name, threshold, baseline, scores, stats)
    return calibrations


def write_python_configs(repository: Path, features: int = FEATURES) -> list[Path]:
    """Write the ``config.pbtxt`` of the three Python models (checked in for the project's),
    for rows of ``features`` columns (``-1``: the channels' widths differ)."""
    configs = {
        "preprocessing": preprocessing_config(repository, features),
        "postprocessing": postprocessing_config(repository),
        "custom_logic": custom_logic_config(repository, features=features),
    }
    written = []
    for name, config in configs.items():
        written += write_model_configs(Path(repository) / "python" / name, config)
    return written


@dataclass(frozen=True)
class KeptChannel:
    """A channel of another spacecraft an earlier build served, kept as it was."""

    entry: ChannelEntry
    normalisation: Normalisation
    thresholds: ChannelThresholds


def kept_channels(repository: Path, spacecraft: str) -> dict[str, KeptChannel]:
    """The channels of spacecraft other than ``spacecraft`` the repository already serves
    (a repository holds several side by side: channel ids differ between spacecraft)."""
    python = Path(repository) / "python"
    catalog = python / "custom_logic" / "1" / CATALOG_FILE
    if not catalog.is_file():
        return {}
    try:
        entries = read_catalog(catalog)
        stats = NormalisationTable.load(python / "preprocessing" / "1" / STATS_FILE).stats
        thresholds = load_thresholds(python / "postprocessing" / "1" / THRESHOLDS_FILE)
    except DataError as error:
        LOGGER.warning("earlier channels not kept: %s", error)
        return {}
    return {
        channel: KeptChannel(entry, stats[channel], thresholds[channel])
        for channel, entry in entries.items()
        if entry.spacecraft != spacecraft and channel in stats and channel in thresholds
    }


def shared_width(normalisations: Sequence[Normalisation]) -> int:
    """The row width of models serving these channels: theirs when one, else ``-1``."""
    widths = {n.n_features for n in normalisations}
    return widths.pop() if len(widths) == 1 else -1


def _write_python_models(
    repository: Path,
    calibrations: Mapping[str, Mapping[Detector, Calibration]],
    spacecraft: str,
    frozen_limits: Mapping[str, float],
) -> None:
    python = repository / "python"
    kept = {c: k for c, k in kept_channels(repository, spacecraft).items() if c not in calibrations}
    # Every detector normalises with the same training statistics: take the first one's.
    stats = {c: next(iter(by.values())).normalisation for c, by in calibrations.items()}
    stats |= {c: k.normalisation for c, k in kept.items()}
    write_python_configs(repository, shared_width(list(stats.values())))
    NormalisationTable(stats).save(python / "preprocessing" / "1" / STATS_FILE)
    # The floors depend on the dynamic policy's smoothing: the settings postprocessing serves.
    served = parameter_dict(postprocessing_config(repository))
    dynamic = PostSettings.from_parameters(served).dynamic
    thresholds = {
        c: replace(
            training_statistics(
                [k.train_scores for k in by.values()],
                [Threshold(k.threshold, k.baseline) for k in by.values()],
                dynamic,
                [d.kind for d in by],
            ),
            frozen_limit=frozen_limits[c],
        )
        for c, by in calibrations.items()
    }
    thresholds |= {c: k.thresholds for c, k in kept.items()}
    save_thresholds(python / "postprocessing" / "1" / THRESHOLDS_FILE, thresholds)
    entries = [
        ChannelEntry(
            channel,
            spacecraft,
            subsystem_of(channel),
            tuple(ModelEntry(d.kind, k.model, d.states, _core(d, k.model)) for d, k in by.items()),
        )
        for channel, by in calibrations.items()
    ]
    entries += [k.entry for k in kept.values()]
    write_catalog(python / "custom_logic" / "1" / CATALOG_FILE, entries)


def _core(detector: Detector, model: str) -> str:
    """The catalog's ``core`` of a served model: the model behind a Python front, or ''."""
    return detector.file_model(model) if detector.python_front else ""


def repository_size(repository: Path) -> int:
    """Total bytes of the files under ``repository``."""
    return sum(p.stat().st_size for p in Path(repository).rglob("*") if p.is_file())


def build_repository(
    artifacts: Path,
    repository: Path,
    data: Path,
    *,
    channels: str | Sequence[str] = "seed",
    train_if_missing: bool = True,
    profile: str = "quick",
    jobs: int = 1,
    seed: int = 0,
    spacecraft: str = "SMAP",
    overrides: Mapping[str, dict] | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Fill ``repository`` from the artifacts (training missing ones first); see the module doc.

    Args:
        artifacts: Artifacts root (``<artifacts>/<detector>/<name>/``).
        repository: The model repository to fill (created when absent).
        data: Telemetry folder.
        channels: ``"seed"``, ``"all"``, ``"E-1,A-1"`` or a list of channel ids.
        train_if_missing: Train missing artifacts; otherwise a missing one is an error.
        profile: Training profile (``quick`` or ``full``).
        jobs: Training worker processes.
        seed: Training seed.
        spacecraft: Whose channels: ``SMAP``, ``MSL`` or the data set's own name (models
            ``<SPACECRAFT>_<chan>``).
        overrides: Per detector (``omni``, ``tranad``) hyperparameters replacing the profile's
            (e.g. tiny models in tests).
        progress: Called as ``progress(description, completed, total)``.

    Raises:
        RepositoryError: If artifacts are missing (and not to be trained) or training fails.
    """
    progress = progress or (lambda description, completed, total: None)
    artifacts, repository, data = Path(artifacts), Path(repository), Path(data)
    dataset = load_dataset(data, spacecraft=spacecraft)
    spacecraft = dataset.spacecraft  # upper case, as model names and the catalog spell it
    names = dataset.resolve_channels(channels) if isinstance(channels, str) else list(channels)
    report = BuildReport(repository, names)
    # Every backend folder, empty ones too: Triton refuses a --model-repository that is absent.
    for folder in BACKEND_FOLDERS:
        (repository / folder).mkdir(parents=True, exist_ok=True)
    _copy_sources(repository)

    started = time.perf_counter()
    missing = _missing(artifacts, names, spacecraft)
    if missing and not train_if_missing:
        absent = [
            d.served_name(c, spacecraft) if d.per_channel else d.served_name(spacecraft=spacecraft)
            for d, channels in missing.items()
            for c in (channels if d.per_channel else channels[:1])
        ]
        raise RepositoryError(
            f"{artifacts}: expected trained artifacts, missing {', '.join(absent)}"
        )
    report.trained = _train(
        artifacts,
        data,
        missing,
        profile=profile,
        jobs=jobs,
        seed=seed,
        spacecraft=spacecraft,
        overrides=overrides or {},
        progress=progress,
    )
    report.seconds["train"] = time.perf_counter() - started

    trains = {c: dataset.channel(c).train for c in names}
    models = [
        (d, d.served_name(c, spacecraft), [c])
        for d in registry.detectors()
        for c in (names if d.per_channel else names[:1])
    ]
    total, step = len(models) + 3, 0
    calibrations: dict[str, dict[Detector, Calibration]] = {c: {} for c in names}
    for detector, name, served in models:
        progress(f"export {name}", step, total)
        started = time.perf_counter()
        channels = served if detector.per_channel else names
        for channel, calibration in _export(
            detector, name, channels, trains, artifacts, repository
        ).items():
            calibrations[channel][detector] = calibration
        report.seconds[name] = time.perf_counter() - started
        step += 1

    progress("python models", step, total)
    started = time.perf_counter()
    # Postprocessing's stuck-value rule: each channel's limit from its training split.
    frozen_limits = {c: frozen_limit(train) for c, train in trains.items()}
    _write_python_models(repository, calibrations, spacecraft, frozen_limits)
    report.seconds["python"] = time.perf_counter() - started
    step += 1

    progress("ensembles", step, total)
    started = time.perf_counter()
    if registry.detector("omni").served_name("E-1", spacecraft) == ONNX_DETECTOR and "E-1" in names:
        write_seed_ensembles(repository)
    else:
        LOGGER.warning(
            "E-1 not built: the seed's ensembles (which chain SMAP_E-1) are left as they are"
        )
    report.seconds["ensembles"] = time.perf_counter() - started
    step += 1

    progress("validate", step, total)
    started = time.perf_counter()
    report.problems = validate_repository(repository)
    report.seconds["validate"] = time.perf_counter() - started
    progress("done", total, total)
    report.size_bytes = repository_size(repository)
    return report


def is_built(repository: Path, channels: list[str], spacecraft: str = "SMAP") -> bool:
    """Whether every served model file of the channels' pipeline exists, as this satwatch
    builds it.

    An ONNX file whose state inputs have no zero default was exported before the backends
    stopped feeding zeros themselves, and a postprocessing config other than the project's
    template makes now was built with other settings (its shipped floors depend on them):
    such a repository is rebuilt (the artifacts are kept).
    """
    names = {(d, d.served_name(c, spacecraft)) for d in registry.detectors() for c in channels}
    needed = {
        (d, repository / d.backend / d.file_model(name) / "1" / d.model_file) for d, name in names
    }
    if not all(path.exists() for _, path in needed) or not _serves_current_settings(repository):
        return False
    onnx = [(d, path) for d, path in needed if d.backend == "onnx"]
    try:
        return all(not missing_defaults(path, d.states) for d, path in onnx)
    except ModelError:  # an unreadable file: build it again
        return False


def _serves_current_settings(repository: Path) -> bool:
    """Whether the repository's postprocessing config is what the project's template makes."""
    path = Path(repository) / "python" / "postprocessing" / "config.pbtxt"
    try:
        return load_config(path) == postprocessing_config(SOURCE_REPOSITORY)
    except RepositoryError:  # missing or unreadable: build it again
        return False
