"""TorchScript export of TranAD with the served interface (Triton's PyTorch backend).

The exported module's ``forward(input_data, context=None)`` takes normalised time steps
``input_data`` FP32 [-1, F] (F features: 25 for SMAP) and, optionally, ``context`` FP32
[9, F]: the 9 steps that came before (``context_out`` of the previous chunk). It returns, in
this order:

- ``reconstruction`` FP32 [-1, F]: decoder 2's phase-2 reconstruction of each step;
- ``anomaly_score`` FP32 [-1]: the TranAD score of each step (window of the last 10 steps);
- ``anomaly_detected`` BOOL [-1]: ``anomaly_score > threshold``, the threshold a buffer of
  the module;
- ``context_out`` FP32 [9, F]: the last 9 steps seen, to pass back with the next chunk.

Without ``context`` the series start is replicate-padded, as offline scoring does, so any
input of at least one step works (served, ``context`` is required and the Python front
``python/tranad_sat1`` passes this padding for a plain request); a stream of chunks that
passes ``context_out`` back scores exactly like the whole series.

Usage::

    from satwatch.export.torchscript import convert, export_module

    export_module(model, threshold, Path("model.pt"))          # a trained TranAD in memory
    convert(Path("artifacts/tranad/tranad_sat1"), Path("pytorch/tranad_sat1_core/1/model.pt"))
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from satwatch.detectors.artifacts import load_trained
from satwatch.detectors.tranad import FastTranADScorer, TranAD, TranADScorer
from satwatch.exceptions import ModelError

LOGGER = logging.getLogger(__name__)

OUTPUT_NAMES = ("reconstruction", "anomaly_score", "anomaly_detected", "context_out")
"""The served outputs, in the order ``forward`` returns them."""

INPUT_NAMES = ("input_data", "context")
"""The served inputs, in the order ``forward`` takes them (``context`` optional)."""


class ServedTranAD(nn.Module):
    """TranAD scoring plus the baked-in threshold: the module that is scripted and served.

    ``scorer`` computes the scores: by default :class:`FastTranADScorer` (what is exported);
    ``TranADScorer(model)`` gives the reference ``nn.Transformer`` computation, which
    :func:`check_exported` compares the exported file with.
    """

    def __init__(self, model: TranAD, threshold: float, scorer: nn.Module | None = None) -> None:
        super().__init__()
        self.scorer = FastTranADScorer(model) if scorer is None else scorer
        self.n_features = model.n_features
        self.history = model.window - 1
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float32))

    def forward(
        self,
        input_data: Tensor,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if input_data.dim() != 2 or input_data.shape[1] != self.n_features:
            raise ValueError(
                f"tranad input_data: expected shape [-1, {self.n_features}], "
                f"got {list(input_data.shape)}"
            )
        if input_data.shape[0] < 1:
            raise ValueError("tranad input_data: expected at least 1 time step, got 0")
        if context is not None and (
            context.dim() != 2
            or context.shape[0] != self.history
            or context.shape[1] != self.n_features
        ):
            raise ValueError(
                f"tranad context: expected shape [{self.history}, {self.n_features}], "
                f"got {list(context.shape)}"
            )
        reconstruction, score, context_out = self.scorer(input_data, context)
        return reconstruction, score, score > self.threshold, context_out


def script(model: TranAD, threshold: float) -> torch.jit.ScriptModule:
    """Script the served module (eval mode, no gradients)."""
    served = ServedTranAD(model, threshold).eval()
    for parameter in served.parameters():
        parameter.requires_grad_(False)
    try:
        with warnings.catch_warnings():
            # TorchScript is what Triton's PyTorch backend runs, deprecated or not.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(served)
    except Exception as error:  # TorchScript raises several unrelated types
        raise ModelError(f"TranAD could not be scripted with torch.jit.script: {error}") from error


def export_module(model: TranAD, threshold: float, path: Path, check: bool = True) -> Path:
    """Write the TorchScript model to ``path`` and, if ``check``, verify the reloaded file.

    The check scores a random series with the reloaded module and with eager PyTorch (the
    reference ``nn.Transformer`` computation) and raises ModelError when scores differ by 1e-4
    or more or the decisions differ.
    """
    scripted = script(model, threshold)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted.save(str(path))
    LOGGER.info("wrote TorchScript TranAD to %s (threshold %.6g)", path, threshold)
    if check:
        check_exported(path, model, threshold)
    return path


def load_exported(path: Path) -> torch.jit.ScriptModule:
    """Load an exported TranAD for inference on CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"TorchScript model not found: {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def served_scorer(path: Path):  # noqa: ANN201
    """``score(series) -> anomaly_score``: the exported file through TorchScript, as served."""
    module = load_exported(path)

    def score(series: np.ndarray) -> np.ndarray:
        # One intra-op thread, as the CPU config serves it: with two, some reductions split
        # differently and ~1e-8 differences appear (measured on 2 of the 27 seed channels).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                data = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))
                return module(data)[1].numpy()
        finally:
            torch.set_num_threads(threads)

    return score


def check_exported(
    path: Path, model: TranAD, threshold: float, series: np.ndarray | None = None
) -> float:
    """Compare the reloaded TorchScript file with the eager reference; return the max difference.

    Raises:
        ModelError: when scores differ by 1e-4 or more, or ``anomaly_detected`` differs
            anywhere the eager score is not within 1e-4 of the threshold.
    """
    if series is None:
        generator = np.random.default_rng(0)
        series = generator.uniform(-1.0, 1.0, (257, model.n_features)).astype(np.float32)
    data = torch.as_tensor(np.asarray(series, dtype=np.float32))
    eager = ServedTranAD(model, threshold, TranADScorer(model)).eval()
    reloaded = load_exported(path)
    with torch.no_grad():
        expected = eager(data)
        got = reloaded(data)
    difference = float((expected[1] - got[1]).abs().max())
    near = (expected[1] - threshold).abs() < 1e-4
    decisions_agree = bool(((expected[2] == got[2]) | near).all())
    if difference >= 1e-4 or not decisions_agree:
        raise ModelError(
            f"TorchScript TranAD at {path} disagrees with eager PyTorch: max score difference "
            f"{difference:.3g} (expected < 1e-4), decisions agree: {decisions_agree}"
        )
    return difference


def convert(checkpoint_dir: Path, output_path: Path) -> Path:
    """Convert a trained TranAD artifact (``model.pt`` + ``card.json``) to TorchScript.

    Args:
        checkpoint_dir: ``artifacts/tranad/<name>/``, as written by ``satwatch train``.
        output_path: Where to write the TorchScript file (e.g. ``.../tranad_sat1/1/model.pt``).

    Returns:
        ``output_path``.
    """
    model, card = load_trained(Path(checkpoint_dir))
    if not isinstance(model, TranAD):
        raise ModelError(
            f"{checkpoint_dir}: expected a TranAD checkpoint, got {type(model).__name__}"
        )
    threshold = _card_threshold(card, checkpoint_dir)
    return export_module(model, threshold, Path(output_path))


def _card_threshold(card: object, checkpoint_dir: Path) -> float:
    threshold = (
        card.get("threshold") if isinstance(card, dict) else getattr(card, "threshold", None)
    )
    if threshold is None:
        raise ModelError(f"{checkpoint_dir}/card.json: expected a 'threshold', found none")
    return float(threshold)
