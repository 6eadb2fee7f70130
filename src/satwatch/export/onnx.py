"""Export OmniAnomaly models to ONNX with the served interface, and run them with ONNX Runtime.

The graph (torch.onnx legacy exporter, opset 17; both GRUs become ONNX ``GRU`` nodes):

========================  =====  ============  ===============================================
name                      kind   type, shape   meaning
========================  =====  ============  ===============================================
``input_data``            in     FP32 [-1, F]  normalised time steps, any number >= 1
``encoder_state``         in     FP32 [1, H]   encoder GRU state before the first step
``decoder_state``         in     FP32 [1, H]   decoder GRU state before the first step
``reconstruction``        out    FP32 [-1, F]  mean of p(x_t | z), normalised units
``anomaly_score``         out    FP32 [-1]     ``Params.score_mode`` score (column-0 error)
``anomaly_detected``      out    BOOL [-1]     anomaly_score > threshold (an initializer)
``encoder_state_out``     out    FP32 [1, H]   encoder state after the last step
``decoder_state_out``     out    FP32 [1, H]   decoder state after the last step
========================  =====  ============  ===============================================

Zero states score a series from its start, exactly as :func:`omnianomaly.score` does; feeding
each chunk the states the previous chunk returned scores a stream exactly as one pass over the
whole series. The state shapes are static so a backend can feed zeros
when a request leaves them out.

Usage::

    path = export_trained(artifacts_dir() / "omni" / "SMAP_E-1", Path("model.onnx"))
    scores, detected, reconstruction = run_onnx(path, test_normalised, chunk=100)
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from satwatch.detectors.artifacts import load_trained
from satwatch.detectors.omnianomaly import OmniAnomaly, score
from satwatch.exceptions import ModelError
from satwatch.onnx_defaults import add_zero_defaults

LOGGER = logging.getLogger(__name__)

OPSET = 17
INPUT = "input_data"
STATE_INPUTS = ("encoder_state", "decoder_state")
OUTPUTS = ("reconstruction", "anomaly_score", "anomaly_detected")
STATE_OUTPUTS = ("encoder_state_out", "decoder_state_out")


class ServedOmniAnomaly(nn.Module):
    """OmniAnomaly with the served signature: one unbatched series, states in and out."""

    def __init__(self, model: OmniAnomaly, threshold: float) -> None:
        super().__init__()
        self.model = model
        # A buffer, so the exporter writes the threshold as an initializer of the graph.
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float32))

    def forward(
        self, input_data: torch.Tensor, encoder_state: torch.Tensor, decoder_state: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """``(T, F), (1, H), (1, H)`` -> reconstruction, score, detected, both final states."""
        recon, score, enc, dec = self.model(
            input_data.unsqueeze(0), encoder_state.unsqueeze(1), decoder_state.unsqueeze(1)
        )
        score = score[0]
        return recon[0], score, score > self.threshold, enc[:, 0], dec[:, 0]


def export_omni(model: OmniAnomaly, threshold: float, path: Path) -> Path:
    """Write ``model`` with ``threshold`` baked in as an ONNX file at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    served = ServedOmniAnomaly(model, threshold).eval()
    hidden = model.params.hidden
    window = model.params.window
    example = (
        torch.zeros(window, model.n_features),
        torch.zeros(1, hidden),
        torch.zeros(1, hidden),
    )
    steps = {0: "steps"}
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns about GRUs with a variable batch; ours is unbatched (batch 1)
        # and its initial states are inputs, which is the remedy the warning itself names.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        # The legacy exporter is the choice (it maps both GRUs to ONNX GRU and keeps the
        # time axis dynamic); its deprecation notice and the GRU's shape checks,
        # which tracing records as constants, are expected.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            served,
            example,
            str(path),
            input_names=[INPUT, *STATE_INPUTS],
            output_names=[*OUTPUTS, *STATE_OUTPUTS],
            dynamic_axes={name: steps for name in (INPUT, *OUTPUTS)},
            opset_version=OPSET,
            dynamo=False,
        )
    # Zero states by default: a request without them scores from a fresh stream.
    add_zero_defaults(path, STATE_INPUTS)
    import onnx

    onnx.checker.check_model(str(path))
    LOGGER.info("exported %s (threshold %.6g)", path, threshold)
    return path


def export_trained(folder: Path, path: Path) -> Path:
    """Export the trained OmniAnomaly in artifact ``folder`` (threshold from its card)."""
    model, card = load_trained(folder)
    if card["detector"] != "omni":
        raise ModelError(f"{folder}: ONNX export expects an omni model, got {card['detector']!r}")
    return export_omni(model, card["threshold"], path)


def session(path: Path):
    """An ONNX Runtime CPU session for an exported model (one thread per operator)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # not the warning that state defaults are initializers
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def state_size(sess) -> int:
    """Hidden size ``H`` from the session's static ``encoder_state`` shape."""
    # A state with a zero default is an overridable initializer, not a required input.
    for item in [*sess.get_inputs(), *sess.get_overridable_initializers()]:
        if item.name == STATE_INPUTS[0]:
            return int(item.shape[1])
    raise ModelError(f"ONNX model: expected an input named {STATE_INPUTS[0]!r}")


def run_onnx(
    model: Path | object, series: np.ndarray, chunk: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score a whole normalised series with ONNX Runtime, optionally in chunks passing state.

    Args:
        model: path of the ``.onnx`` file or an ONNX Runtime session.
        series: normalised ``(T, F)`` telemetry.
        chunk: steps per request; None scores the series in one request.

    Returns:
        ``(anomaly_score (T,), anomaly_detected (T,), reconstruction (T, F))``.
    """
    sess = session(model) if isinstance(model, str | Path) else model
    hidden = state_size(sess)
    states = [np.zeros((1, hidden), np.float32) for _ in STATE_INPUTS]
    data = np.ascontiguousarray(series, dtype=np.float32)
    step = data.shape[0] if chunk is None else chunk
    scores, detected, recon = [], [], []
    for start in range(0, data.shape[0], step):
        feeds = {INPUT: data[start : start + step], **dict(zip(STATE_INPUTS, states, strict=True))}
        r, s, d, enc, dec = sess.run([*OUTPUTS, *STATE_OUTPUTS], feeds)
        states = [enc, dec]
        scores.append(s)
        detected.append(d)
        recon.append(r)
    return np.concatenate(scores), np.concatenate(detected), np.concatenate(recon)


def served_scorer(path: Path):  # noqa: ANN201
    """``score(series) -> anomaly_score``: the exported file in ONNX Runtime, as served.

    Raises:
        ModelError: If the file is missing.
    """
    if not Path(path).is_file():
        raise ModelError(f"exported OmniAnomaly not found: {path}")
    sess = session(path)
    return lambda series: run_onnx(sess, series)[0]


def parity(model: OmniAnomaly, threshold: float, path: Path, series: np.ndarray) -> dict:
    """Compare the exported graph (ONNX Runtime) with PyTorch eager on one series.

    Returns:
        ``{"max_abs_score_diff", "max_rel_score_diff", "detected_equal", "steps"}``.
    """
    eager = score(model, series)
    onnx_scores, detected, _ = run_onnx(path, series)
    diff = np.abs(onnx_scores.astype(np.float64) - eager)
    return {
        "max_abs_score_diff": float(diff.max()),
        "max_rel_score_diff": float((diff / np.maximum(np.abs(eager), 1.0)).max()),
        "detected_equal": bool(np.array_equal(detected, eager > np.float32(threshold))),
        "steps": int(series.shape[0]),
    }
