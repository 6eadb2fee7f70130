"""The detector plug-ins: one :class:`Detector` declaration per detector kind.

A declaration says everything the rest of satwatch needs to serve a detector: its kind (the
name used in artifacts, the catalog, ``custom_logic``'s ``<kind>_score`` outputs and the
reports), the served model's name, the Triton backend folder and config template, the state
tensors a stream carries from chunk to chunk, and where its code lives:

- ``implementation``: the module of the detector contract: ``Params`` (with ``quick()`` and
  ``full()`` profiles), ``build_model(params, n_features)``, ``fit(train, params, seed,
  on_epoch)``, ``score(model, series)`` and optionally ``THRESHOLD_RULE`` / ``CARD_DEFAULTS``;
- ``exporter``: ``"module:function"`` writing the served file from an artifact folder,
  ``export(artifact_folder, path) -> path``;
- ``served_scorer``: ``"module:function"`` loading that file in this process, as the server
  runs it, ``served_scorer(path) -> score(series) -> scores``.

The builder, ``custom_logic``'s catalog and config, postprocessing's score inputs, the
client, the offline evaluation and the report all iterate over :func:`detectors`, in
registration order, which is also the fused score order (``score1``, ``score2``, ...).
This module imports no ML library, so the client can read it; the code named by the
strings is imported only when a model is trained, exported or scored.

Example::

    register(Detector(kind="range", title="training range", implementation="my.module",
                      backend="onnx", model_file="model.onnx", name_pattern="range_{channel}",
                      exporter="my.module:export", served_scorer="my.module:served_scorer"))
    [d.kind for d in detectors()]   # ['omni', 'tranad', 'range']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from satwatch.exceptions import ModelError

BACKENDS = ("onnx", "pytorch")
"""Repository folders (and config templates) a detector may be served from."""

CORE_SUFFIX = "_core"
"""Added to the served name of a detector with a Python front for the model behind it."""


@dataclass(frozen=True)
class Detector:
    """One detector kind, as the rest of satwatch sees it.

    Attributes:
        kind: Short id (``omni``), unique; artifacts live under ``<artifacts>/<kind>/``.
        title: Name for people (``OmniAnomaly``).
        implementation: Module implementing the detector contract (see the module doc).
        backend: ``onnx`` or ``pytorch``: the repository folder and the config template.
        model_file: The served file in each version folder (``model.onnx``).
        name_pattern: The served model's name; ``{spacecraft}``, ``{craft}`` (the
            spacecraft in lower case) and ``{channel}`` are filled in. Without ``{channel}``
            one model serves every channel of a spacecraft.
        fixed_names: ``(spacecraft, name)`` pairs whose served name is not the pattern's
            (``tranad_sat1``, SMAP's TranAD since the seed).
        exporter: ``"module:function"``, ``export(artifact_folder, path) -> path``.
        served_scorer: ``"module:function"``, ``served_scorer(path) -> score(series)``.
        states: State inputs a stream passes back (the model outputs each as ``<name>_out``).
        python_front: The backend refuses optional inputs (Triton's native PyTorch backend
            does, server issue 6523), so the file is served as ``<name>_core`` with every
            state required, behind a Python model of the served name that fills a missing
            state (``python/<name>``, its ``model.py`` copied from the project's
            ``triton-repository/python/<SMAP's served name>/1/``).
    """

    kind: str
    title: str
    implementation: str
    backend: str
    model_file: str
    name_pattern: str
    exporter: str
    served_scorer: str
    states: tuple[str, ...] = ()
    python_front: bool = False
    fixed_names: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ModelError(
                f"detector {self.kind!r}: backend expected one of {BACKENDS}, got {self.backend!r}"
            )

    @property
    def per_channel(self) -> bool:
        """True when every channel has a model of its own."""
        return "{channel}" in self.name_pattern

    def served_name(self, channel: str | None = None, spacecraft: str = "SMAP") -> str:
        """The served (and artifact) model name for a channel (``SMAP_E-1``, ``MSL_C-1``;
        ``tranad_sat1`` for SMAP's TranAD, ``tranad_msl`` for MSL's)."""
        if self.per_channel and channel is None:
            raise ModelError(f"detector {self.kind!r}: a model name needs a channel")
        fixed = dict(self.fixed_names).get(spacecraft)
        if fixed is not None:
            return fixed
        return self.name_pattern.format(
            spacecraft=spacecraft, craft=spacecraft.lower(), channel=channel
        )

    @property
    def front_folder(self) -> str:
        """The folder under ``triton-repository/python/`` holding the front's ``model.py``."""
        return self.served_name(spacecraft="SMAP")

    def file_model(self, served: str) -> str:
        """The model serving the exported file, from the served name (``tranad_sat1`` ->
        ``tranad_sat1_core`` behind a Python front; the served name itself otherwise)."""
        return f"{served}{CORE_SUFFIX}" if self.python_front else served

    def module(self) -> ModuleType:
        """The implementation module (imports the ML library it needs)."""
        return importlib.import_module(self.implementation)

    def export(self) -> Callable:
        """``export(artifact_folder, path) -> path``."""
        return _function(self.exporter)

    def scorer_of_file(self) -> Callable:
        """``served_scorer(path) -> score(series)``."""
        return _function(self.served_scorer)


def _function(reference: str) -> Callable:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


OMNIANOMALY = Detector(
    kind="omni",
    title="OmniAnomaly",
    implementation="satwatch.detectors.omnianomaly",
    backend="onnx",
    model_file="model.onnx",
    name_pattern="{spacecraft}_{channel}",
    exporter="satwatch.export.onnx:export_trained",
    served_scorer="satwatch.export.onnx:served_scorer",
    states=("encoder_state", "decoder_state"),
)
TRANAD = Detector(
    kind="tranad",
    title="TranAD",
    implementation="satwatch.detectors.tranad",
    backend="pytorch",
    model_file="model.pt",
    name_pattern="tranad_{craft}",
    exporter="satwatch.export.torchscript:convert",
    served_scorer="satwatch.export.torchscript:served_scorer",
    states=("context",),
    python_front=True,
    # The seed named SMAP's TranAD after the satellite, before a second spacecraft came.
    fixed_names=(("SMAP", "tranad_sat1"),),
)

NEAREST_WINDOW = Detector(
    kind="nearest",
    title="nearest training window",
    implementation="satwatch.detectors.nearest_window",
    backend="onnx",
    model_file="model.onnx",
    name_pattern="nearest_{spacecraft}_{channel}",
    exporter="satwatch.detectors.nearest_window:export_trained",
    served_scorer="satwatch.detectors.onnx_file:fresh_stream_scorer",
    states=("recent_changes", "last_value", "steps_seen"),
)

PREDICTOR = Detector(
    kind="predictor",
    title="next-value predictor",
    implementation="satwatch.detectors.predictor",
    backend="onnx",
    model_file="model.onnx",
    name_pattern="predictor_{spacecraft}_{channel}",
    exporter="satwatch.detectors.predictor:export_trained",
    served_scorer="satwatch.detectors.onnx_file:fresh_stream_scorer",
    states=("hidden", "steps_seen"),
)

_REGISTERED: dict[str, Detector] = {
    d.kind: d for d in (OMNIANOMALY, TRANAD, NEAREST_WINDOW, PREDICTOR)
}


def register(detector: Detector) -> Detector:
    """Add a detector kind (after the ones already registered); return it.

    Raises:
        ModelError: If its kind, or a served name of its, is already taken.
    """
    if detector.kind in _REGISTERED or detector.kind == "fused":
        raise ModelError(f"detector kind {detector.kind!r} is already registered")
    taken = {d.name_pattern for d in _REGISTERED.values()}
    if detector.name_pattern in taken:
        raise ModelError(f"detector {detector.kind!r}: served name {detector.name_pattern!r} taken")
    _REGISTERED[detector.kind] = detector
    return detector


def unregister(kind: str) -> None:
    """Remove a registered detector kind (a test's extra one)."""
    _REGISTERED.pop(kind, None)


def detectors() -> tuple[Detector, ...]:
    """The registered detectors, in registration (= fused score) order."""
    return tuple(_REGISTERED.values())


def kinds() -> tuple[str, ...]:
    """The registered detector kinds, in order."""
    return tuple(_REGISTERED)


def detector(kind: str) -> Detector:
    """The declaration of a detector kind.

    Raises:
        ModelError: For an unknown kind.
    """
    if kind not in _REGISTERED:
        raise ModelError(f"unknown detector {kind!r}; expected one of {sorted(_REGISTERED)}")
    return _REGISTERED[kind]


def detector_of_model(model: str, spacecraft: str = "SMAP") -> Detector | None:
    """The detector serving a model name (``SMAP_E-1`` -> omni), or None."""
    for candidate in _REGISTERED.values():
        if not candidate.per_channel:
            if model == candidate.served_name(spacecraft=spacecraft):
                return candidate
            continue
        prefix, _, suffix = candidate.served_name("\0", spacecraft).partition("\0")
        if (
            model.startswith(prefix)
            and model.endswith(suffix)
            and len(model) > len(prefix + suffix)
        ):
            return candidate
    return None
