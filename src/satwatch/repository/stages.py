"""A repository's served preprocessing and postprocessing stages, run in one process.

The files are those of the ``preprocessing`` and ``postprocessing`` models: the
normalisation statistics (``normalisation.json``) and the thresholds (``thresholds.json``) of
their latest versions, and postprocessing's settings from its ``config.pbtxt``.
``custom_logic`` runs both stages in its own stub with them instead of calling the two models
(a BLS call is a round trip through the server and another stub); ``satwatch bench``'s
in-process replay and the offline evaluation run the same functions on the same files, so
all of them answer alike. The two models still serve the ensembles and direct callers.

Example::

    stages = CachedStages(Path("triton-repository"))
    normalised = stages.current().normalise("E-1", raw)
    result = stages.current().postprocess("E-1", [omni, tranad], state_vector)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satwatch.exceptions import ModelError, SatwatchError
from satwatch.pipeline.calibration import ChannelThresholds, select_thresholds
from satwatch.pipeline.calibration_file import THRESHOLDS_FILE, load_thresholds
from satwatch.pipeline.postprocess import PostResult, PostSettings, postprocess
from satwatch.pipeline.poststate import PostState
from satwatch.pipeline.preprocess import STATS_FILE, NormalisationTable, preprocess
from satwatch.repository.config import load_config, parameter_dict

LOGGER = logging.getLogger(__name__)

PREPROCESSING = "preprocessing"
POSTPROCESSING = "postprocessing"


def latest_version(model_dir: Path) -> Path:
    """The highest numbered version folder of a served model (what Triton serves by default).

    Raises:
        ModelError: If there is none.
    """
    model_dir = Path(model_dir)
    versions = [p for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise ModelError(
            f"{model_dir}: expected a served model with version folders (1/, 2/, ...), got none; "
            "build the repository with `satwatch build`"
        )
    return max(versions, key=lambda p: int(p.name))


def served_postprocessing(repository: Path) -> tuple[PostSettings, dict[str, ChannelThresholds]]:
    """The settings and shipped per-channel thresholds of the repository's ``postprocessing``.

    Raises:
        RepositoryError: If its config is missing or invalid.
        DataError: If its thresholds file is missing or malformed.
    """
    model_dir = Path(repository) / "python" / POSTPROCESSING
    settings = PostSettings.from_parameters(parameter_dict(load_config(model_dir / "config.pbtxt")))
    return settings, load_thresholds(latest_version(model_dir) / THRESHOLDS_FILE)


def _stage_files(repository: Path) -> list[Path]:
    """The files the stages are read from (their latest versions' files, then the config)."""
    python = Path(repository) / "python"
    return [
        latest_version(python / PREPROCESSING) / STATS_FILE,
        latest_version(python / POSTPROCESSING) / THRESHOLDS_FILE,
        python / POSTPROCESSING / "config.pbtxt",
    ]


@dataclass(frozen=True)
class ServedStages:
    """Both stages with one repository's files.

    Attributes:
        normalisation: Per-channel normalisation statistics (preprocessing's).
        settings: Postprocessing's settings (its config ``parameters``).
        thresholds: Per-channel thresholds and training statistics (postprocessing's).
    """

    normalisation: NormalisationTable
    settings: PostSettings
    thresholds: dict[str, ChannelThresholds]

    @classmethod
    def load(cls, repository: Path) -> ServedStages:
        """Read the stages' files from ``repository`` (its root folder).

        Raises:
            ModelError: If a model has no version folder.
            RepositoryError: If postprocessing's config is missing or invalid.
            DataError: If a statistics or thresholds file is missing or malformed.
        """
        model_dir = Path(repository) / "python" / PREPROCESSING
        normalisation = NormalisationTable.load(latest_version(model_dir) / STATS_FILE)
        return cls(normalisation, *served_postprocessing(repository))

    @property
    def dynamic(self) -> bool:
        """Whether postprocessing runs the dynamic threshold policy."""
        return self.settings.threshold_policy == "dynamic"

    def normalise(self, channel: str, raw: np.ndarray) -> np.ndarray:
        """Preprocessing: ``raw`` ``(T, F)`` normalised with the channel's statistics.

        Raises:
            DataError: For a channel without statistics, a row of the wrong width or a
                non-finite value (naming the channel and the rows).
        """
        return preprocess(raw, self.normalisation.get(channel), channel)

    def postprocess(
        self,
        channel: str,
        scores: Sequence[np.ndarray],
        state: np.ndarray | None = None,
        end_of_stream: bool = False,
        values: np.ndarray | None = None,
    ) -> PostResult:
        """Postprocessing: one chunk's scores (catalog order) fused, decided, made events.

        ``state`` is the ``post_state`` vector the previous chunk returned (None for a new
        stream); ``values`` the chunk's telemetry value, for the stuck-value rule.

        Raises:
            DataError: For an unknown channel, a ``post_state`` of other settings, or
                mismatched scores.
        """
        post_state = None
        if state is not None:
            post_state = PostState.from_array(state, self.settings.smoothing_window, self.dynamic)
        thresholds = select_thresholds(self.thresholds, len(scores), channel, None, self.dynamic)
        return postprocess(scores, thresholds, self.settings, post_state, end_of_stream, values)


class CachedStages:
    """A repository's :class:`ServedStages`, reread when one of their files changes.

    Rebuilding the thresholds or the statistics, editing postprocessing's config, or a new
    version folder takes effect at the next request, as it does for the two models once
    Triton reloads them; files that cannot be read keep the stages in use (logged).
    """

    def __init__(self, repository: Path) -> None:
        """Read the stages now, so that a repository without them fails at load time.

        Raises:
            ModelError, RepositoryError, DataError: As :meth:`ServedStages.load`.
        """
        self.repository = Path(repository)
        self._lock = threading.Lock()
        self._signature = self._files_signature()
        self._stages = ServedStages.load(self.repository)
        self.loads = 1
        """How many times the files were read (for tests and logs)."""

    def _files_signature(self) -> tuple:
        signature = []
        for path in _stage_files(self.repository):
            stat = path.stat()
            signature.append((str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))
        return tuple(signature)

    def current(self) -> ServedStages:
        """The stages of the files as they are now."""
        with self._lock:
            try:
                signature = self._files_signature()
            except (OSError, ModelError):
                return self._stages  # a file gone in the middle of a rebuild
            if signature != self._signature:
                # Remembered even if it fails: a file half-written now changes again.
                self._signature = signature
                try:
                    self._stages = ServedStages.load(self.repository)
                except SatwatchError:
                    LOGGER.exception("stages of %s: kept the ones in use", self.repository)
                else:
                    self.loads += 1
                    LOGGER.info("stages of %s reloaded", self.repository)
            return self._stages
