"""The dynamic threshold's first window: the stream so far, or training's last steps before it.

At a stream's start the dynamic threshold is chosen over the few smoothed values seen so far,
so for its first ``dt_window`` steps a modest rise can stand out of a short window. This
script judges, through the served postprocessing function with the repository's settings,
each detector's scores as ``satwatch study`` scores them and the stuck-value rule on:

* ``served``: the test split alone, as served;
* ``seededN``: the last ``N`` training steps' scores (and telemetry) streamed first, then the
  test split; only the test steps' decisions are judged (an event crossing into the test keeps
  its test steps).

Measured on 2026-12-04 (event F1, TP/FP/FN; the detectors ``satwatch study`` had built)::

    variant      SMAP validation   synthetic validation (Z-1..Z-27)
    served       0.857 (27/2/7)    0.928 (45/2/5)
    seeded500    0.788 (26/6/8)    0.882 (45/7/5)
    seeded2100   0.800 (26/5/8)    0.909 (45/4/5)

Seeding loses on both: training scores are in-sample, lower than a normal test split's, so a
window of them makes the first test steps stand out more, not less. The served stream starts
from its own steps.

Choose on the validation sets only::

    python benchmarks/seeded_history.py --artifacts runs/study/artifacts \\
        --repository runs/study/repository --variants "served;seeded2100"
"""

from __future__ import annotations

import sys

import numpy as np
from nearest_variants import row_text, served_entry, served_study, study_parser

from satwatch.evaluation.metrics import channel_metrics, summarize
from satwatch.evaluation.offline import fused_decisions


def seeded_row(pairs: dict, dataset, settings, kinds: tuple[str, ...], steps: int) -> dict:
    """Event metrics with ``steps`` training steps streamed before each test split."""
    per_channel = {}
    for name, scores in pairs.items():
        channel = dataset.channel(name)
        entry = served_entry(scores, channel, settings, kinds)
        head = min(steps, min(s[0].size for s in scores))
        joined = [np.concatenate([s[0][s[0].size - head :], s[1]]) for s in scores]
        train_values = channel.train[channel.train.shape[0] - head :, 0]
        values = np.concatenate([train_values, channel.test[:, 0]])
        decided = fused_decisions(joined, name, settings, {name: entry}, values)[head:]
        per_channel[name] = channel_metrics(decided, channel.labels, channel.events)
    return summarize(per_channel)["overall"]


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", default="served;seeded2100", help="';'-separated")
    args = parser.parse_args(argv)
    dataset, settings, kinds, pairs = served_study(args)
    for variant in args.variants.split(";"):
        steps = 0 if variant == "served" else int(variant.removeprefix("seeded"))
        row = seeded_row(pairs, dataset, settings, kinds, steps)
        print(f"{variant:12s} {row_text(row)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
