"""What one chunk of a channel's stream is sent to, and what comes back.

A target turns one chunk of raw telemetry plus the stream state of the previous chunk into
per-step arrays, the events postprocessing reported and the next state:

* :class:`PipelineTarget` — one request per chunk to ``custom_logic`` (routes by channel,
  keeps the server-side event log), ``multi_detector`` or ``anomaly_pipeline`` (the seed's
  ensembles, wired to ``SMAP_E-1``). Every optional input ``X`` of the model that has an
  output ``X_out`` (``encoder_state``, ``decoder_state``, ``context``, ``post_state``) is
  passed back with the next chunk. Arrays: ``fused_score`` (``final_result``) and
  ``fused_decision``, plus ``<d>_score``/``<d>_decision`` for every detector whose
  ``<d>_score``/``<d>_detected`` the model outputs (``custom_logic``: every registered
  detector), so an event names the detectors that agreed.
* :class:`StepsTarget` — the same pipeline called step by step from the client:
  ``preprocessing`` -> every registered detector (``SMAP_<chan>``, ``tranad_sat1``) ->
  ``postprocessing``, so every detector's own ``anomaly_score``/``anomaly_detected`` comes
  back too (what the served evaluation needs). One request per step instead of one.
* :class:`DetectorTarget` — one detector (``SMAP_<chan>`` or ``tranad_sat1``): the chunk is
  normalised by ``preprocessing`` (with the channel's statistics), then scored; its events
  are the runs of ``anomaly_detected`` (no smoothing or merging).

Each target reads the state tensors a model carries (an optional input ``X`` with an output
``X_out``) from the model's metadata, so a detector's state needs no list here.

Example::

    target = make_target("custom_logic")
    target.check_channel("E-1")
    result, state = target.step(connection, "E-1", raw_chunk, state={})
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from satwatch.client.connection import Connection
from satwatch.client.tracking import FUSED
from satwatch.data import subsystem_of
from satwatch.detectors import registry
from satwatch.exceptions import ClientError

LOGGER = logging.getLogger(__name__)

PIPELINES = ("custom_logic", "multi_detector", "anomaly_pipeline")
STEPS = "steps"
ENSEMBLE_CHANNEL = "E-1"
"""The channel the seed's ensembles are wired to (their detector is ``SMAP_E-1``)."""
RESULTS = ("final_result", "decision", "events")


@dataclass
class ChunkResult:
    """What one chunk gave.

    Attributes:
        arrays: Per-step arrays of the chunk: ``<detector>_score`` float32 and
            ``<detector>_decision`` bool for each detector the target sees (``fused`` for
            postprocessing's ``final_result``/``decision``).
        reported: Event rows ``(start, end, peak)`` postprocessing reported for this chunk
            (absolute steps since the stream began), or None for a target without
            postprocessing.
        subsystem: The channel's subsystem when the server said it.
    """

    arrays: dict[str, np.ndarray]
    reported: np.ndarray | None = None
    subsystem: str | None = None


State = dict[str, np.ndarray]


@dataclass
class Target:
    """Base: a served model (or chain) a channel's chunks go to.

    Attributes:
        model: The model named on the command line.
        version: Its version ("" for the server's choice).
        detectors: Names of the per-detector arrays this target gives.
        spacecraft: Whose models a channel's detectors are (``SMAP_E-1``, ``MSL_C-1``).
    """

    model: str
    version: str = ""
    detectors: tuple[str, ...] = field(default=())
    spacecraft: str = "SMAP"
    states: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def models(self, channel: str) -> list[str]:
        """The models a channel's requests go to (checked READY before streaming)."""
        return [self.model]

    def discover(self, connection: Connection) -> None:
        """Read from the server what the target needs to know of its model (see subclasses)."""

    def states_of(self, connection: Connection, model: str, version: str = "") -> tuple[str, ...]:
        """The state tensors of a model: each optional input ``X`` with an output ``X_out``."""
        if model not in self.states:
            inputs, outputs = connection.tensor_names(model, version)
            self.states[model] = tuple(n for n in inputs if f"{n}_out" in outputs)
        return self.states[model]

    def score(
        self, connection: Connection, model: str, normalized: np.ndarray, state: State
    ) -> tuple[dict[str, np.ndarray], State]:
        """One detector model's answer to a normalised chunk, and its state for the next."""
        names = self.states_of(connection, model, self.version if model == self.model else "")
        out = connection.infer(
            model,
            {"input_data": normalized, **{n: state.get(n) for n in names}},
            ["anomaly_score", "anomaly_detected", *(f"{n}_out" for n in names)],
            self.version if model == self.model else "",
        )
        return out, {n: out[f"{n}_out"] for n in names}

    def check_channel(self, channel: str) -> None:
        """Raise a ClientError when this target cannot serve ``channel``."""

    def step(
        self,
        connection: Connection,
        channel: str,
        raw: np.ndarray,
        state: State,
        last: bool = False,
    ) -> tuple[ChunkResult, State]:
        """Send one chunk; return its result and the state for the next chunk.

        ``last`` marks the stream's last chunk (postprocessing then confirms its incomplete
        last batch).
        """
        raise NotImplementedError


def _channel_id(channel: str) -> np.ndarray:
    return np.array([channel.encode()], dtype=object)


def _end_of_stream(last: bool) -> np.ndarray | None:
    """The ``end_of_stream`` input: sent on the last chunk only (absent means false)."""
    return np.array([True]) if last else None


@dataclass
class PipelineTarget(Target):
    """``custom_logic`` or one of the seed's ensembles: one request per chunk."""

    state_names: tuple[str, ...] = ()
    has_subsystem: bool = False
    detector_outputs: tuple[str, ...] = ()
    takes_end_of_stream: bool = False

    def check_channel(self, channel: str) -> None:
        if self.model != "custom_logic" and channel != ENSEMBLE_CHANNEL:
            raise ClientError(
                f"model {self.model!r} is wired to channel {ENSEMBLE_CHANNEL} (its detector is "
                f"{registry.detector('omni').served_name(ENSEMBLE_CHANNEL)}); got channel "
                f"{channel!r}: use --model "
                "custom_logic, which routes every channel"
            )

    def discover(self, connection: Connection) -> None:
        """Read the state tensors (optional ``X`` with an ``X_out``) from the model's metadata."""
        inputs, outputs = connection.tensor_names(self.model, self.version)
        self.state_names = self.states_of(connection, self.model, self.version)
        self.has_subsystem = "subsystem" in outputs
        # custom_logic and the ensembles pass it on to postprocessing (older configs lack it).
        self.takes_end_of_stream = "end_of_stream" in inputs
        self.detector_outputs = tuple(
            d for d in registry.kinds() if f"{d}_score" in outputs and f"{d}_detected" in outputs
        )
        self.detectors = (*self.detector_outputs, FUSED)

    def step(self, connection, channel, raw, state, last=False):
        inputs: dict[str, np.ndarray | None] = {"raw_input": raw}
        if self.model == "custom_logic":
            inputs["channel_id"] = _channel_id(channel)
        inputs |= {name: state.get(name) for name in self.state_names}
        if self.takes_end_of_stream:
            inputs["end_of_stream"] = _end_of_stream(last)
        outputs = [*RESULTS, *(f"{n}_out" for n in self.state_names)]
        if self.has_subsystem:
            outputs.append("subsystem")
        for detector in self.detector_outputs:
            outputs += [f"{detector}_score", f"{detector}_detected"]
        out = connection.infer(self.model, inputs, outputs, self.version)
        subsystem = None
        if self.has_subsystem:
            subsystem = _text(out["subsystem"])
        arrays = {}
        for detector in self.detector_outputs:
            arrays[f"{detector}_score"] = out[f"{detector}_score"]
            arrays[f"{detector}_decision"] = out[f"{detector}_detected"]
        arrays |= {"fused_score": out["final_result"], "fused_decision": out["decision"]}
        new_state = {n: out[f"{n}_out"] for n in self.state_names}
        return ChunkResult(arrays, out["events"].reshape(-1, 3), subsystem), new_state


@dataclass
class StepsTarget(Target):
    """preprocessing -> every registered detector -> postprocessing, called from the client."""

    def __post_init__(self) -> None:
        self.detectors = registry.kinds()

    def models(self, channel: str) -> list[str]:
        detectors = [d.served_name(channel, self.spacecraft) for d in registry.detectors()]
        return ["preprocessing", *detectors, "postprocessing"]

    def step(self, connection, channel, raw, state, last=False):
        ids = _channel_id(channel)
        normalized = connection.infer(
            "preprocessing", {"raw_input": raw, "channel_id": ids}, ["normalized"]
        )["normalized"]
        arrays: dict[str, np.ndarray] = {}
        new_state: State = {}
        scores = {}
        for i, detector in enumerate(registry.detectors()):
            served = detector.served_name(channel, self.spacecraft)
            out, states = self.score(connection, served, normalized, state)
            arrays[f"{detector.kind}_score"] = out["anomaly_score"]
            arrays[f"{detector.kind}_decision"] = out["anomaly_detected"]
            new_state |= states
            scores[f"score{i + 1}"] = out["anomaly_score"]
        post = connection.infer(
            "postprocessing",
            {
                **scores,
                "channel_id": ids,
                "post_state": state.get("post_state"),
                "end_of_stream": _end_of_stream(last),
                # The telemetry value, for postprocessing's stuck-value rule.
                "telemetry": np.ascontiguousarray(raw[:, 0], np.float32),
            },
            [*RESULTS, "post_state_out"],
        )
        new_state["post_state"] = post["post_state_out"]
        arrays |= {"fused_score": post["final_result"], "fused_decision": post["decision"]}
        return ChunkResult(arrays, post["events"].reshape(-1, 3)), new_state


@dataclass
class DetectorTarget(Target):
    """One detector, fed by ``preprocessing``; events are runs of its decisions."""

    detector: str = "omni"

    def models(self, channel: str) -> list[str]:
        return ["preprocessing", self.model]

    def check_channel(self, channel: str) -> None:
        declared = registry.detector(self.detector)
        expected = declared.served_name(channel, self.spacecraft)
        if declared.per_channel and self.model != expected:
            raise ClientError(
                f"model {self.model!r} scores one channel only (its training statistics and "
                f"threshold), not {channel!r}: use --model {expected} or custom_logic"
            )

    def step(self, connection, channel, raw, state, last=False):
        normalized = connection.infer(
            "preprocessing", {"raw_input": raw, "channel_id": _channel_id(channel)}, ["normalized"]
        )["normalized"]
        out, new_state = self.score(connection, self.model, normalized, state)
        arrays = {
            f"{self.detector}_score": out["anomaly_score"],
            f"{self.detector}_decision": out["anomaly_detected"],
        }
        return ChunkResult(arrays), new_state


def make_target(model: str, version: str = "", spacecraft: str = "SMAP") -> Target:
    """The target for a ``--model`` value (a detector's model of ``spacecraft``).

    Raises:
        ClientError: For a name that is none of the pipelines, ``steps`` or a detector's
            served model.
    """
    if model in PIPELINES:
        return PipelineTarget(model, version, detectors=(FUSED,))
    if model == STEPS:
        return StepsTarget(model, version, spacecraft=spacecraft)
    declared = registry.detector_of_model(model, spacecraft)
    if declared is not None:
        kind = declared.kind
        return DetectorTarget(model, version, (kind,), spacecraft=spacecraft, detector=kind)
    served = ", ".join(d.served_name("<channel>", spacecraft) for d in registry.detectors())
    raise ClientError(
        f"model: expected one of {', '.join(PIPELINES)}, {STEPS} or a detector ({served}); "
        f"got {model!r}"
    )


def subsystem_for(channel: str, told: str | None = None) -> str:
    """The subsystem the server told, else the one of the channel's name ('?' if unknown)."""
    if told:
        return told
    try:
        return subsystem_of(channel)
    except Exception:  # noqa: BLE001 - a channel from --input may have any name
        return "?"


def _text(value: np.ndarray) -> str:
    item = np.asarray(value, dtype=object).reshape(-1)[0]
    return item.decode() if isinstance(item, bytes) else str(item)
