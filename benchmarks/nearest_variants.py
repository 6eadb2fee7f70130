"""Which nearest-window score to serve, and which event margin: the study that chose them.

Each variant replaces the served nearest-window score beside the other three served detectors
(OmniAnomaly, TranAD, the next-value predictor, scored from a built repository's exported
files), and the four are fused by the served postprocessing function with the repository's
settings, the event margin set as told. The variants, all distances from the window of the
last ``w`` telemetry values to its nearest window in the training split:

- ``raw<w>``: the windows as they are (served before 2026-12-02, 40 steps);
- ``shape<w>``: each window centred on its own mean, so only its shape counts;
- ``commanded<w>``: centred, with the changes on the steps of every command taken out;
- ``learned<w>``: centred, with the changes taken out only for the commands the channel's
  training split shows moving the value;
- ``served<w>``: ``learned`` plus the commands training never issues (what
  :mod:`satwatch.detectors.nearest_window` serves since 2026-12-02).

Chosen on two validation sets, never on the reported ones: the 27 SMAP channels outside the
seed, and 27 synthetic channels ``Z-1..Z-27`` drawn with seed 1 (``satwatch data synth
--seed 1 --channels 54``, the ``Z-`` channels put beside the demo's seed-0 set). Measured
2026-12-02 with the plain training z (``dt_z_power`` 1, served then; the script takes the
repository's settings, so a repository built since fuses the square roots), event F1
(TP/FP/FN), margin 25 unless said:

    variant beside omni, tranad, predictor   SMAP validation     synthetic validation
    raw40, margin 0 (served before)          0.812 (26/4/8)      0.245 (12/36/38)
    raw40                                    0.812 (26/4/8)      0.371 (18/29/32)
    shape20                                  0.818 (27/5/7)      0.541 (30/31/20)
    commanded20                              0.754 (23/4/11)     0.741 (43/23/7)
    learned20                                0.844 (27/3/7)      0.624 (39/36/11)
    served20 (served)                        0.825 (26/3/8)      0.729 (43/25/7)
    served10 / served30 / served40           0.667 / 0.806 / 0.800   0.724 / 0.700 / 0.694

``commanded`` wins on synthetic telemetry, where commands switch levels, and loses on SMAP's,
where commands are sent on 4 % of the steps and most jumps come without one; learning from the
training split which commands move the value keeps SMAP's figure. Counting the commands never
issued in training as moving trades one SMAP event for four more synthetic ones and 11 fewer
false alarms: the synthetic training splits are 2,000 steps long and many of their level
commands are first sent in the test split.

Fusing fewer detectors with ``served20`` (margin 25, measured the same day with the study's
harness, not a flag of this script): without TranAD 0.812 (26/4/8) and 0.775 (43/18/7);
OmniAnomaly and it alone 0.794 (25/4/9) and 0.793 (44/17/6); TranAD and it 0.794 and 0.694.
None is better on both sets than the four, so all four stay fused.

Usage::

    python benchmarks/nearest_variants.py --channels validation \\
        --artifacts runs/study/artifacts --repository runs/study/repository
    python benchmarks/nearest_variants.py --data synthetic --channels Z-1,Z-2 \\
        --artifacts A --repository R --variants raw40,served20 --margins 0,25
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from satwatch.data import Channel, load_dataset
from satwatch.detectors import nearest_window, registry
from satwatch.detectors.frozen import frozen_limit
from satwatch.evaluation.metrics import channel_metrics, summarize
from satwatch.evaluation.offline import evaluate_detector, fused_decisions
from satwatch.evaluation.study import training_calibration
from satwatch.pipeline.calibration import ChannelThresholds, Threshold, training_statistics
from satwatch.repository.stages import served_postprocessing

OTHERS = ("omni", "tranad", "predictor")
"""The served detectors each variant is fused with (in the served order, the variant third)."""


def _windows(values: np.ndarray, window: int, centred: bool) -> np.ndarray:
    if centred:
        return nearest_window.centred_windows(values, window)
    return np.lib.stride_tricks.sliding_window_view(values, window)


def _join(query: np.ndarray, train: np.ndarray, window: int, centred: bool, zone: int = 0):
    """Each query window's distance to its nearest training window (0 for the first w-1)."""
    a, b = _windows(query, window, centred), _windows(train, window, centred)
    distances = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    if zone:  # a self-join: leave out each window's own neighbourhood
        offsets = np.abs(np.arange(len(a))[:, None] - np.arange(len(b))[None, :])
        distances[offsets < zone] = np.inf
    nearest = np.sqrt(np.clip(distances.min(axis=1), 0.0, None))
    nearest[~np.isfinite(nearest)] = 0.0
    return np.concatenate([np.zeros(window - 1), nearest])


def variant_scores(channel: Channel, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """``(training calibration scores, test scores)`` of one variant such as ``learned20``."""
    kind = variant.rstrip("0123456789")
    window = int(variant[len(kind) :])
    train, test = channel.train, channel.test
    if kind == "raw" or kind == "shape":
        values = train[:, 0].astype(np.float64), test[:, 0].astype(np.float64)
    else:
        explaining = {
            "commanded": np.ones(train.shape[1] - 1, bool),
            "learned": nearest_window.explaining_commands(train) & train[:, 1:].any(axis=0),
            "served": nearest_window.explaining_commands(train),
        }[kind]
        values = tuple(nearest_window.corrected_values(s, explaining) for s in (train, test))
    centred = kind != "raw"
    zone = int(np.ceil(window / 4))
    return (
        _join(values[0], values[0], window, centred, zone),
        _join(values[1], values[0], window, centred),
    )


def served_scores(
    channels: list[str],
    data: Path,
    artifacts: Path,
    repository: Path,
    kinds: tuple[str, ...] = OTHERS,
    spacecraft: str = "SMAP",
) -> dict:
    """``{kind: {channel: (train, test)}}`` of served detectors (default the others), as scored."""
    dataset = load_dataset(data, spacecraft)
    out: dict[str, dict] = {}
    shared: dict = {}
    for kind in kinds:
        detector = registry.detector(kind)
        _, results = evaluate_detector(
            kind, channels, data, artifacts, spacecraft, repository=repository
        )
        out[kind] = {
            name: (
                training_calibration(
                    detector, dataset.channel(name), artifacts, spacecraft, shared
                ),
                results[name].scores,
            )
            for name in channels
        }
    return out


def served_entry(
    scores: list, channel: Channel, settings, kinds: tuple[str, ...]
) -> ChannelThresholds:
    """The channel's ``thresholds.json`` entry as the build fits it from the training scores
    of ``[(train, test), ...]`` (one pair per kind), its frozen-value limit included."""
    ones = [Threshold(1.0)] * len(scores)
    entry = training_statistics([s[0] for s in scores], ones, settings.dynamic, kinds)
    return replace(entry, frozen_limit=frozen_limit(channel.train))


def fused_row(
    pairs: dict[str, list],
    dataset,
    settings,
    kinds: tuple[str, ...],
    stuck_rule: bool = False,
    settings_of: Callable[[list], object] | None = None,
) -> dict:
    """The fused event metrics of ``{channel: [(train, test), ...]}``, one pair per kind;
    ``stuck_rule`` adds postprocessing's stuck-value rule as served (the studies before it
    ran without); ``settings_of``, given a channel's pairs, its own settings instead."""
    per_channel = {}
    for name, scores in pairs.items():
        channel = dataset.channel(name)
        chosen = settings if settings_of is None else settings_of(scores)
        entry = served_entry(scores, channel, chosen, kinds)
        values = channel.test[:, 0] if stuck_rule else None
        decided = fused_decisions([s[1] for s in scores], name, chosen, {name: entry}, values)
        per_channel[name] = channel_metrics(decided, channel.labels, channel.events)
    return summarize(per_channel)["overall"]


def row_text(row: dict) -> str:
    """``event F1 0.839 (26/2/8)  PA F1 0.633`` of a :func:`fused_row`."""
    counts = f"{row['event_tp']}/{row['event_fp']}/{row['event_fn']}"
    return f"event F1 {row['event_f1']:.3f} ({counts})  PA F1 {row['pa_f1']:.3f}"


def study_parser(description: str) -> argparse.ArgumentParser:
    """The options every fusion study takes: data, channels, artifacts, repository."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=None, help="telemetry folder")
    parser.add_argument("--spacecraft", default="SMAP", help="SMAP, MSL or the data's own")
    parser.add_argument(
        "--channels", default="validation", help="'validation', 'seed', 'all' or a list"
    )
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--repository", type=Path, required=True)
    return parser


def served_study(args: argparse.Namespace) -> tuple:
    """``(dataset, settings, kinds, pairs)`` of a :func:`study_parser` command's arguments:
    the served postprocessing settings, every registered kind, and ``{channel: [(train,
    test), ...]}`` of every served detector's scores, in registry order."""
    dataset = load_dataset(args.data, args.spacecraft)
    channels = dataset.resolve_channels(args.channels)
    settings, _ = served_postprocessing(args.repository)
    kinds = tuple(registry.kinds())
    scores = served_scores(
        channels, args.data, args.artifacts, args.repository, kinds, args.spacecraft
    )
    pairs = {c: [scores[k][c] for k in kinds] for c in channels}
    return dataset, settings, kinds, pairs


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", default="raw40,shape20,commanded20,learned20,served20")
    parser.add_argument("--margins", default="25", help="event margins, comma-separated")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data)
    channels = dataset.resolve_channels(args.channels)
    settings, _ = served_postprocessing(args.repository)
    others = served_scores(channels, args.data, args.artifacts, args.repository)
    variant = functools.cache(lambda name, v: variant_scores(dataset.channel(name), v))
    for margin in (int(m) for m in args.margins.split(",")):
        chosen = replace(settings, event_margin=margin)
        for name in args.variants.split(","):
            pairs = {
                c: [*(others[k][c] for k in ("omni", "tranad")), variant(c, name)]
                + [others["predictor"][c]]
                for c in channels
            }
            row = fused_row(pairs, dataset, chosen, tuple(registry.kinds()))
            print(f"{name:>14} margin {margin:>3}  {row_text(row)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
