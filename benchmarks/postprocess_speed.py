"""Postprocessing of one steady 256-step chunk, in process, as ``custom_logic`` runs it.

Loads a built repository's served stages (``ServedStages``: thresholds, settings) and streams
random gamma scores, one per served detector, with a 40-step burst every 2,000 steps, through
``ServedStages.postprocess`` with the state carried from chunk to chunk and the telemetry value
passed (the stuck-value rule on). Timed are the chunks after the dynamic threshold's window has
filled (the steady state a long stream lives in); printed are the best and the median over the
repetitions of the mean ms per chunk. Not a test: no timing is asserted.

    .venv/bin/python benchmarks/postprocess_speed.py                    # triton-repository

Measured on 2026-12-04 (2 shared cores, load average about 0.6; the command above, three
alternating runs), with the ``dynamic_threshold.py`` of commit 70587d2 swapped in for "before":

    version                                          best ms      median ms
    before (one pruning per batch end, a step loop)  4.37-4.46    4.63-4.85
    after (pruned together, decided in array passes) 2.75-2.84    2.85-2.93
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from satwatch.paths import PROJECT_ROOT
from satwatch.repository.stages import ServedStages


def chunk_ms(stages: ServedStages, channel: str, chunk: int, steps: int, warm: int) -> float:
    """Mean ms of ``stages.postprocess`` per chunk after the first ``warm`` steps."""
    rng = np.random.default_rng(0)
    detectors = len(stages.thresholds[channel])  # one score per served detector
    scores = [rng.gamma(2.0, 0.5, steps).astype(np.float32) for _ in range(detectors)]
    for start in range(3000, steps, 2000):
        scores[0][start : start + 40] += 6.0
    values = rng.normal(size=steps).astype(np.float32)
    state, spent, timed = None, 0.0, 0
    for start in range(0, steps, chunk):
        piece = [s[start : start + chunk] for s in scores]
        began = time.perf_counter()
        result = stages.postprocess(channel, piece, state, values=values[start : start + chunk])
        state = result.state.to_array()
        if start >= warm:
            spent += time.perf_counter() - began
            timed += 1
    return spent / timed * 1e3


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
    runs = [
        chunk_ms(stages, args.channel, args.chunk, warm + 40 * args.chunk, warm)
        for _ in range(args.repeat)
    ]
    print(
        f"postprocess {args.channel}, {args.chunk}-step chunks: best {min(runs):.2f} ms, "
        f"median {np.median(runs):.2f} ms per chunk"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
