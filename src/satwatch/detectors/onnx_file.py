"""A detector's exported ONNX file scored in this process, as the server runs it.

For the detectors whose ``export_trained`` writes one ONNX graph with zero state defaults
(nearest window, next-value predictor): a series is scored from a fresh stream by sending
``input_data`` alone, as a request without state is.

Example::

    score = fresh_stream_scorer(Path("onnx/nearest_SMAP_E-1/1/model.onnx"))
    scores = score(test)        # (T,)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from satwatch.exceptions import ModelError


def fresh_stream_scorer(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """``score(series)``: the graph in ONNX Runtime, one thread, from a fresh stream.

    Raises:
        ModelError: If the file is missing.
    """
    if not Path(path).is_file():
        raise ModelError(f"exported detector not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # not the warning that state defaults are initializers
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def score_series(series: np.ndarray) -> np.ndarray:
        # The states left out: the build gives them zero defaults, a fresh stream.
        feeds = {"input_data": np.ascontiguousarray(series, dtype=np.float32)}
        return session.run(["anomaly_score"], feeds)[0]

    return score_series
