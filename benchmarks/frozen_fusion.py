"""How a frozen value should reach the fused decision: through a detector's score, or OR-ed.

A run of an unchanged telemetry value past its limit (``frozen_limit``) is what the synthetic
set's ``frozen`` anomalies and G-1 on SMAP look like, and no detector's shape or level score
sees it well. This script scores the four served detectors once, as ``satwatch study`` does,
and judges each way of letting the run in through the served postprocessing function (event
F1, TP/FP/FN):

* ``shapes``: the served scores, with no frozen-value rule at all;
* ``powP``: past the limit the nearest-window score is at least
  ``scale x (run / limit) ** P`` (``scale``: its largest training score); ``pow1`` is what the
  nearest-window graph served from 2026-12-03 to 2026-12-04;
* ``or``: the stuck-value rule's decisions OR-ed with the fused ones, as postprocessing now
  serves it (before it was served, this row OR-ed the rule's raw steps into the fused events,
  with the same counts).

Measured on 2026-12-04 against the detectors ``satwatch study`` had built, while the
nearest-window graph still scored frozen runs itself (its ``pow1`` term; the ``or`` row then
had it under the rule, and the same row without it gave the same counts on both sets)::

    variant   SMAP validation   synthetic validation (Z-1..Z-27)
    pow1      0.839 (26/2/8)    0.917 (44/2/6)
    pow2      0.839 (26/2/8)    0.894 (42/2/8)
    pow3      0.839 (26/2/8)    0.905 (43/2/7)
    or        0.857 (27/2/7)    0.928 (45/2/5)

Rerun once the term was gone, the same commands gave those rows again (``pow1`` 0.839 and
0.917 included) and ``shapes``, no rule at all, 0.839 (26/2/8) and 0.894 (42/2/8).

OR wins on both sets and is served: postprocessing's stuck-value rule
(``satwatch.pipeline.stuck``), which OR-s the rule into the confirmed decisions before events
are made (so its events are merged and widened as the others are). The nearest-window graph's
own term then added nothing and was taken out.

Choose on the validation sets only::

    python benchmarks/frozen_fusion.py --artifacts runs/study/artifacts \\
        --repository runs/study/repository
    python benchmarks/frozen_fusion.py --data /tmp/syn/data --artifacts /tmp/syn/study/artifacts \\
        --repository /tmp/syn/study/repository
"""

from __future__ import annotations

import sys

import numpy as np
from nearest_variants import fused_row, row_text, served_study, study_parser

from satwatch.detectors.frozen import frozen_limit, unchanged_runs


def steeper(pairs: dict, dataset, position: int, power: float) -> dict:
    """``pairs`` with the nearest-window test scores raised to the ``power`` frozen term."""
    out = {}
    for name, scores in pairs.items():
        channel = dataset.channel(name)
        train, test = scores[position]
        limit = frozen_limit(channel.train)
        runs = unchanged_runs(channel.test[:, 0])
        term = float(np.max(train)) * (runs / limit) ** power
        raised = np.where(runs > limit, np.maximum(test, term), test).astype(np.float32)
        out[name] = [*scores[:position], (train, raised), *scores[position + 1 :]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", default="shapes;pow1;pow2;pow3;or", help="';'-separated")
    args = parser.parse_args(argv)
    dataset, settings, kinds, pairs = served_study(args)
    position = kinds.index("nearest")
    for variant in args.variants.split(";"):
        if variant == "shapes":
            row = fused_row(pairs, dataset, settings, kinds)
        elif variant == "or":
            row = fused_row(pairs, dataset, settings, kinds, stuck_rule=True)
        elif variant.startswith("pow"):
            raised = steeper(pairs, dataset, position, float(variant[3:]))
            row = fused_row(raised, dataset, settings, kinds)
        else:
            parser.error(f"unknown variant {variant!r}")
        print(f"{variant:8s} {row_text(row)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
