"""Is an ensemble sound? Its steps against the models they name, and its dataflow.

Checks: each step names an existing model; its ``input_map``/``output_map`` keys are that
model's tensors and its required inputs are all mapped; the types fed agree; each tensor has
one producer and is produced (an ensemble input or another step's output) before it is
consumed, with no cycle; every ensemble output is produced.

Example::

    ensemble_problems(config, {"preprocessing": pre_config, ...}, {"preprocessing": [1]})
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from tritonclient.grpc import model_config_pb2 as mc

from satwatch.repository.config import find_tensor, type_name

LOGGER = logging.getLogger(__name__)

Models = Mapping[str, mc.ModelConfig | None]
"""Model name -> config (``None`` when the config did not parse)."""


def _known_type(name: str, config: mc.ModelConfig, models: Models) -> int | None:
    """The data type of ensemble tensor ``name``: declared, or its producer's output type."""
    declared = find_tensor(config.input, name) or find_tensor(config.output, name)
    if declared is not None:
        return declared.data_type
    for step in config.ensemble_scheduling.step:
        model = models.get(step.model_name)
        for model_tensor, ensemble_tensor in step.output_map.items():
            if ensemble_tensor == name and model is not None:
                produced = find_tensor(model.output, model_tensor)
                return produced.data_type if produced is not None else None
    return None


def _check_step(
    number: int,
    step: mc.ModelEnsembling.Step,
    config: mc.ModelConfig,
    models: Models,
    versions: Mapping[str, Sequence[int]],
) -> list[str]:
    label = f"step {number} ({step.model_name})"
    if step.model_name not in models:
        return [f"{label}: no model {step.model_name!r} in the repository"]
    model = models[step.model_name]
    if model is None:
        return []  # its own config problem is reported with its file
    problems = []
    for key, tensor in step.input_map.items():
        model_input = find_tensor(model.input, key)
        if model_input is None:
            problems.append(f"{label}: input_map key {key!r} is not an input of {step.model_name}")
            continue
        known = _known_type(tensor, config, models)
        if known is not None and known != model_input.data_type:
            problems.append(
                f"{label}: {tensor!r} is {type_name(known)} but input {key!r} of "
                f"{step.model_name} expects {type_name(model_input.data_type)}"
            )
    for key in step.output_map:
        if find_tensor(model.output, key) is None:
            problems.append(
                f"{label}: output_map key {key!r} is not an output of {step.model_name}"
            )
    for model_input in model.input:
        if not model_input.optional and model_input.name not in step.input_map:
            problems.append(f"{label}: required input {model_input.name!r} is not mapped")
    if step.model_version > 0 and step.model_version not in versions.get(step.model_name, []):
        problems.append(f"{label}: model_version {step.model_version} has no version folder")
    return problems


def _producers(config: mc.ModelConfig, problems: list[str]) -> dict[str, int]:
    """Return ``{tensor: step number}``; a second producer or an overwritten input is a problem."""
    inputs = {tensor.name for tensor in config.input}
    producers: dict[str, int] = {}
    for number, step in enumerate(config.ensemble_scheduling.step, 1):
        for tensor in step.output_map.values():
            if tensor in inputs:
                problems.append(
                    f"step {number} ({step.model_name}) overwrites ensemble input {tensor!r}"
                )
            elif tensor in producers:
                problems.append(
                    f"tensor {tensor!r} is produced by step {producers[tensor]} and step {number}: "
                    "expected one producer"
                )
            producers.setdefault(tensor, number)
    return producers


def _check_dataflow(config: mc.ModelConfig) -> list[str]:
    """Producers and consumers: one producer per tensor, nothing consumed before produced."""
    problems: list[str] = []
    producers = _producers(config, problems)
    available = {tensor.name for tensor in config.input}
    pending = dict(enumerate(config.ensemble_scheduling.step, 1))
    while pending:
        ready = [n for n, s in pending.items() if set(s.input_map.values()) <= available]
        if not ready:
            break
        for number in ready:
            available |= set(pending.pop(number).output_map.values())
    for number, step in pending.items():
        for tensor in sorted(set(step.input_map.values()) - available):
            if tensor in producers:
                problems.append(
                    f"step {number} ({step.model_name}) consumes {tensor!r}, which is produced "
                    f"only after it (step {producers[tensor]} waits on it: a cycle)"
                )
            else:
                problems.append(
                    f"step {number} ({step.model_name}) consumes {tensor!r}, which no ensemble "
                    "input or step produces"
                )
    for tensor in config.output:
        if tensor.name not in producers:
            problems.append(f"ensemble output {tensor.name!r} is produced by no step")
    return problems


def ensemble_problems(
    config: mc.ModelConfig, models: Models, versions: Mapping[str, Sequence[int]]
) -> list[str]:
    """Return what is wrong with an ensemble's steps and dataflow (empty: nothing).

    Args:
        config: The ensemble's config.
        models: Every model of the repository by name (``None``: its config did not parse).
        versions: Each model's version folders.
    """
    steps = config.ensemble_scheduling.step
    if not steps:
        return ["ensemble has no ensemble_scheduling steps"]
    problems = []
    for number, step in enumerate(steps, 1):
        problems += _check_step(number, step, config, models, versions)
    return problems + _check_dataflow(config)
