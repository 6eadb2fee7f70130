"""How the four detectors are combined: the served max of the powered z, against other rules.

The four served detectors, scored from a built repository's exported files as ``satwatch
study`` scores them, are combined by each rule and judged through the served postprocessing
function with the repository's settings:

* ``max``: the served fusion, the largest weighted powered z-score;
* ``topK``: the mean of the ``K`` largest (``top4`` is the mean of all four); the floors are
  fitted on the training scores combined the same way, as the build fits them;
* ``or``: each detector thresholded alone (its own floor and dynamic threshold), the events of
  the four merged.

The served code fuses with max only, so the ``topK`` rows swap the fusion function in the
module the calibration calls, for this process alone.

Chosen on the two validation sets, never on the reported ones. Measured on 2026-12-03
(event F1, TP/FP/FN):

    rule    SMAP validation    synthetic validation (Z-1..Z-27)
    max     0.839 (26/2/8)     0.894 (42/2/8)
    top2    0.767 (23/3/11)    0.804 (37/5/13)
    top3    0.806 (25/3/9)     0.759 (33/4/17)
    top4    0.800 (26/5/8)     0.699 (29/4/21)
    or      0.740 (27/12/7)    0.688 (43/32/7)

Max stays: every other rule loses on both sets.

Usage::

    python benchmarks/fusion_rules.py --artifacts runs/study/artifacts \\
        --repository runs/study/repository --rules "max;top2;or"
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np
from nearest_variants import fused_row, row_text, served_study, study_parser

from satwatch.evaluation.metrics import channel_metrics, summarize
from satwatch.evaluation.offline import fused_decisions
from satwatch.pipeline import calibration
from satwatch.pipeline.calibration import Threshold, training_statistics


def top_mean(count: int) -> Callable[[Sequence[np.ndarray], str], np.ndarray]:
    """A stand-in for the calibration's ``fuse``: the mean of the ``count`` largest scores."""

    def fuse(scores: Sequence[np.ndarray], mode: str) -> np.ndarray:
        stacked = np.sort(np.stack([np.asarray(s, np.float32) for s in scores]), axis=0)
        return stacked[-count:].mean(0).astype(np.float32)

    return fuse


def or_row(pairs: dict[str, list], dataset, settings, kinds: tuple[str, ...]) -> dict:
    """The event metrics of each detector's own served decisions, merged."""
    per_channel = {}
    for name, scores in pairs.items():
        merged = None
        for (train, test), kind in zip(scores, kinds, strict=True):
            entry = training_statistics([train], [Threshold(1.0)], settings.dynamic, (kind,))
            decided = fused_decisions([test], name, settings, {name: entry})
            merged = decided if merged is None else merged | decided
        channel = dataset.channel(name)
        per_channel[name] = channel_metrics(merged, channel.labels, channel.events)
    return summarize(per_channel)["overall"]


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__.splitlines()[0])
    parser.add_argument("--rules", default="max;top2;top3;top4;or", help="';'-separated")
    args = parser.parse_args(argv)
    dataset, settings, kinds, pairs = served_study(args)
    served_fuse = calibration.fuse
    for rule in args.rules.split(";"):
        if rule == "or":
            row = or_row(pairs, dataset, settings, kinds)
        elif rule == "max" or rule.startswith("top"):
            calibration.fuse = served_fuse if rule == "max" else top_mean(int(rule[3:]))
            row = fused_row(pairs, dataset, settings, kinds)
        else:
            raise SystemExit(f"unknown rule {rule!r}: expected max, topK or or")
        print(f"{rule:>5}  {row_text(row)}", flush=True)
    calibration.fuse = served_fuse
    return 0


if __name__ == "__main__":
    sys.exit(main())
