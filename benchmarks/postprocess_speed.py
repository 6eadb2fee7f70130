"""Postprocessing of one steady 256-step chunk, in process, as ``custom_logic`` runs it.

Loads a built repository's served stages (``ServedStages``: thresholds, settings) and streams
random gamma scores, one per served detector, with a 40-step burst every 2,000 steps, through
``ServedStages.postprocess`` with the state carried from chunk to chunk and the telemetry value
passed (the stuck-value rule on). Timed apart are the chunks while the dynamic threshold's
window fills (a stream's first ~2,100 steps) and those after (the steady state a long stream
lives in); printed are the best and the median over the repetitions of the mean ms per chunk.
Not a test: no timing is asserted.

    .venv/bin/python benchmarks/postprocess_speed.py                    # triton-repository

Measured on 2026-12-04 (2 shared cores, load average 1-2; the command above, three alternating
runs), with the ``dynamic_threshold.py`` of commit 70587d2 swapped in for "before" (one
threshold choice and one pruning per batch end while the window fills, one pruning per batch
end after, a Python loop over the steps); best ms per chunk:

    version    while the window fills    steady
    before     8.34-9.40                 5.17-5.64
    after      3.82-4.16                 3.51-4.05
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from satwatch.paths import PROJECT_ROOT
from satwatch.repository.stages import ServedStages


def chunk_ms(
    stages: ServedStages, channel: str, chunk: int, steps: int, warm: int
) -> tuple[float, float]:
    """Mean ms of ``stages.postprocess`` per chunk before and after the first ``warm`` steps."""
    rng = np.random.default_rng(0)
    detectors = len(stages.thresholds[channel])  # one score per served detector
    scores = [rng.gamma(2.0, 0.5, steps).astype(np.float32) for _ in range(detectors)]
    for start in range(1000, steps, 2000):
        scores[0][start : start + 40] += 6.0
    values = rng.normal(size=steps).astype(np.float32)
    state, spent, counted = None, [0.0, 0.0], [0, 0]
    for start in range(0, steps, chunk):
        piece = [s[start : start + chunk] for s in scores]
        began = time.perf_counter()
        result = stages.postprocess(channel, piece, state, values=values[start : start + chunk])
        state = result.state.to_array()
        late = int(start >= warm)
        spent[late] += time.perf_counter() - began
        counted[late] += 1
    return spent[0] / counted[0] * 1e3, spent[1] / counted[1] * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "triton-repository")
    parser.add_argument("--channel", default="E-1")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    stages = ServedStages.load(args.repository)
    # Whole chunks only, the first timed one after the window has filled.
    warm = -(-(stages.settings.dynamic.window + args.chunk) // args.chunk) * args.chunk
    runs = np.array(
        [
            chunk_ms(stages, args.channel, args.chunk, warm + 40 * args.chunk, warm)
            for _ in range(args.repeat)
        ]
    )
    for column, when in enumerate(("while the window fills", "steady")):
        print(
            f"postprocess {args.channel}, {args.chunk}-step chunks, {when}: best "
            f"{runs[:, column].min():.2f} ms, median {np.median(runs[:, column]):.2f} ms per chunk"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
