"""Trained detectors on disk: ``<artifacts>/<detector>/<name>/{model.pt,card.json}``.

``model.pt`` is the state dict; ``card.json`` is everything needed to rebuild, use and judge
the model: detector, channel(s), hyperparameters, threshold(s), normalisation statistics per
channel, the training loss curve, a hash of the training data, the training time, the seed
and the library versions.

Usage::

    folder = artifact_dir(artifacts_dir(), "omni", registry.detector("omni").served_name("E-1"))
    save_trained(folder, model, card)
    model, card = load_trained(folder)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
from pathlib import Path

import numpy as np
import torch

from satwatch.detectors import registry
from satwatch.exceptions import ModelError

LOGGER = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CARD_FILE = "card.json"


def artifact_dir(root: Path, detector: str, name: str) -> Path:
    """Where one trained model lives."""
    return Path(root) / detector / name


def data_sha256(arrays: list[np.ndarray]) -> str:
    """SHA-256 over the raw training arrays (float32, C order), in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Library versions recorded on every card."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        satwatch_version = version("satwatch")
    except PackageNotFoundError:
        satwatch_version = "unknown"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "satwatch": satwatch_version,
    }


def params_to_dict(params: object) -> dict:
    """A detector's ``Params`` dataclass as a JSON-able dict."""
    return dataclasses.asdict(params)


def save_trained(folder: Path, model: torch.nn.Module, card: dict) -> Path:
    """Write ``model.pt`` (state dict) and ``card.json`` into ``folder``; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / MODEL_FILE)
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    LOGGER.info("saved %s", folder)
    return folder


def read_card(folder: Path) -> dict:
    """The card of a trained model."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise ModelError(f"trained model card not found: {path} (train it with `satwatch train`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"model card {path}: expected JSON, got a parse error: {err}") from err


def card_params(card: dict) -> object:
    """The detector's ``Params`` a card was trained with."""
    module = registry.detector(card["detector"]).module()
    # Fields a detector added later keep the value older cards were made with.
    return module.Params(**{**getattr(module, "CARD_DEFAULTS", {}), **card["params"]})


def load_trained(folder: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained model from its folder; return ``(model in eval mode, card)``."""
    folder = Path(folder)
    card = read_card(folder)
    module = registry.detector(card["detector"]).module()
    model = module.build_model(card_params(card), card["n_features"])
    weights = folder / MODEL_FILE
    if not weights.is_file():
        raise ModelError(f"trained weights not found: {weights}")
    try:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except RuntimeError as err:
        raise ModelError(
            f"{weights}: state dict does not match the card's hyperparameters (a model saved "
            f"by another satwatch version? train it again, or delete {folder} and build): {err}"
        ) from err
    model.eval()
    return model, card


def find_trained(root: Path, detector: str) -> list[Path]:
    """Folders of all trained models of one detector under ``root``, sorted by name."""
    base = Path(root) / detector
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / CARD_FILE).is_file())
