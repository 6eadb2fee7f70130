"""The power of the training z-scores before the fusion: the study behind ``dt_z_power``.

The four served detectors (OmniAnomaly, TranAD, the nearest-window detector and the next-value
predictor), scored from a built repository's exported files as ``satwatch study`` scores them,
are fused by the served postprocessing function with the repository's settings, the power of
each detector's training z-score set as told (the floors fitted again with it, as the build
fits them). A power below 1 compresses the z-scores' long tail: one detector's extreme step no
longer stretches the statistics of the window the dynamic threshold is chosen from.

Chosen on two validation sets, never on the reported ones: the 27 SMAP channels outside the
seed, and 27 synthetic channels ``Z-1..Z-27`` drawn with seed 1 (``satwatch data synth
--seed 1 --channels 54``, the ``Z-`` channels put beside the demo's seed-0 set). Measured
2026-12-02 (event F1, TP/FP/FN):

    power   SMAP validation    synthetic validation
    1       0.800 (26/5/8)     0.694 (42/29/8)      served before
    0.75    0.812 (26/4/8)     0.719 (41/23/9)
    0.67    0.839 (26/2/8)     0.745 (41/19/9)
    0.6     0.839 (26/2/8)     0.781 (41/14/9)
    0.5     0.839 (26/2/8)     0.816 (40/8/10)      served
    0.4     0.814 (24/1/10)    0.800 (36/4/14)
    0.33    0.793 (23/1/11)    0.732 (30/2/20)

With the square root, moving one other setting at a time (the same day, the same sets):
``dt_z_min`` 2 gives 0.839 and 0.781, 3 gives 0.820 and 0.842; ``dt_min_decrease`` 0.1 gives
0.825 and 0.792, 0.2 gives 0.627 and 0.734; ``dt_span`` 20 gives 0.772 and 0.772, 40 gives
0.839 and 0.787. None is better on both sets, so they stay as they were.

Usage::

    python benchmarks/fusion_power.py --artifacts runs/study/artifacts \\
        --repository runs/study/repository
    python benchmarks/fusion_power.py --data DIR --artifacts A --repository R \\
        --powers 1,0.5
"""

from __future__ import annotations

import sys
from dataclasses import replace

from nearest_variants import fused_row, row_text, served_study, study_parser


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__.splitlines()[0])
    parser.add_argument("--powers", default="1,0.75,0.67,0.6,0.5,0.4,0.33")
    args = parser.parse_args(argv)
    dataset, settings, kinds, pairs = served_study(args)
    for power in (float(p) for p in args.powers.split(",")):
        chosen = replace(settings, dynamic=replace(settings.dynamic, z_power=power))
        row = fused_row(pairs, dataset, chosen, kinds)
        print(f"power {power:<5}  {row_text(row)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
