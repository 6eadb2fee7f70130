"""Each detector's weight in the fusion: the study behind ``dt_z_weights``.

The four served detectors, scored from a built repository's exported files as ``satwatch
study`` scores them, are fused by the served postprocessing function with the repository's
settings (the square-root z-scores of ``dt_z_power``), each detector's powered z multiplied by
the weight told (a kind not named weighs 1; the floors fitted again with the weights, as the
build fits them).

Chosen on the same two validation sets as ``fusion_power.py``, never on the reported ones: the
27 SMAP channels outside the seed and the synthetic channels ``Z-1..Z-27`` (seed 1). Measured
2026-12-02 (event F1, TP/FP/FN):

    weights                   SMAP validation    synthetic validation
    none (served before)      0.839 (26/2/8)     0.816 (40/8/10)
    omni=0                    0.794 (25/4/9)     0.808 (40/9/10)
    tranad=0                  0.825 (26/3/8)     0.894 (42/2/8)
    predictor=0               0.820 (25/2/9)     0.780 (39/11/11)
    nearest=0.8               0.833 (25/1/9)     0.763 (37/10/13)
    tranad=0.7                0.839 (26/2/8)     0.845 (41/6/9)
    tranad=0.6                0.852 (26/1/8)     0.884 (42/3/8)
    tranad=0.5 (served)       0.852 (26/1/8)     0.875 (42/4/8)
    tranad=0.4                0.852 (26/1/8)     0.894 (42/2/8)
    tranad=0.3                0.839 (26/2/8)     0.894 (42/2/8)
    omni,tranad,predictor=0.8 0.833 (25/1/9)     0.824 (42/10/8)

The rows with a weight of 0 were measured with the fusion patched to take it; the served
setting must be above 0 (a detector that should not count should not be served). TranAD's z
is the noisiest of the four: on the synthetic set alone it raises 20 false alarms for 5
events. Weighed down it still adds the events only it sees on SMAP; every weight from 0.4 to
0.6 is better than 1 on both sets, and 0.5 is the middle of that range.

Usage::

    python benchmarks/fusion_weights.py --artifacts runs/study/artifacts \\
        --repository runs/study/repository --weights "none;tranad=0.5;tranad=0.3"
"""

from __future__ import annotations

import sys
from dataclasses import replace

from nearest_variants import fused_row, row_text, served_study, study_parser

from satwatch.pipeline.dynamic_threshold import DynamicSettings


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--weights",
        default="none;tranad=0.7;tranad=0.5;tranad=0.3",
        help="weight sets separated by ';', each as dt_z_weights takes it ('none': all 1)",
    )
    args = parser.parse_args(argv)
    dataset, settings, kinds, pairs = served_study(args)
    for text in args.weights.split(";"):
        parameters = {} if text.strip() == "none" else {"dt_z_weights": text}
        weights = DynamicSettings.from_parameters(parameters).z_weights
        chosen = replace(settings, dynamic=replace(settings.dynamic, z_weights=weights))
        row = fused_row(pairs, dataset, chosen, kinds)
        print(f"{text:<28}  {row_text(row)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
