"""Frozen telemetry: how long the value stays exactly unchanged, in training, test and events.

No served detector sees a frozen value well. The nearest-window detector compares centred
shapes, and a flat window is close to the quietest training windows, so on the synthetic set
its peak inside an injected ``frozen`` anomaly is often below its own training maximum. This
script measures what a stuck-value rule, calibrated on each channel's training split only,
would find on its own:

- per channel, the longest run of steps whose value equals the step before, in the training
  split, in the normal test steps and inside each labelled event;
- for each rule: flag a step once the run ending there is longer than
  ``max(factor x the longest training run, minimum)``, on channels whose training split holds
  no value for ``fraction`` of its length or more (on those, a held value is the channel's
  normal behaviour); flagged steps become events; events found, false alarms.

Run it on the channels settings may be chosen on (the default ``validation``: every channel
outside the seed), never on the reported ones::

    python benchmarks/frozen_runs.py
    python benchmarks/frozen_runs.py --data /tmp/syn/data --factors 2 --minimums 50
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from satwatch.data.dataset import Channel, load_dataset
from satwatch.detectors.frozen import (
    FROZEN_FRACTION,
    frozen_limit,
    longest_unchanged_run,
    unchanged_runs,
)
from satwatch.evaluation.events import decisions_to_events
from satwatch.evaluation.metrics import event_counts, prf


def stuck_decisions(channel: Channel, factor: float, minimum: int, fraction: float) -> np.ndarray:
    """The rule of the module doc on one channel's test split (the served limit's function)."""
    limit = frozen_limit(channel.train, factor, minimum, fraction)
    return unchanged_runs(channel.test[:, 0]) > limit


def describe(channel: Channel) -> str:
    """One line: the longest runs in training, normal test steps and each event."""
    train = longest_unchanged_run(channel.train[:, 0])
    runs = unchanged_runs(channel.test[:, 0])
    normal = int(runs[~channel.labels].max(initial=0))
    inside = [int(runs[e.start : e.end + 1].max()) for e in channel.events]
    return (
        f"{channel.name:6s} training {channel.train.shape[0]:5d} steps, longest run {train:5d}; "
        f"normal test {normal:5d}; events {inside}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="telemetry folder")
    parser.add_argument("--channels", default="validation", help="channel selection")
    parser.add_argument("--factors", default="1.5,2,2.5,3")
    parser.add_argument("--minimums", default="25,50,100")
    parser.add_argument("--fraction", type=float, default=FROZEN_FRACTION)
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data)
    channels = [dataset.channel(name) for name in dataset.resolve_channels(args.channels)]
    for channel in channels:
        print(describe(channel))
    factors = [float(f) for f in args.factors.split(",")]
    minimums = [int(m) for m in args.minimums.split(",")]
    print(f"\nrule (fraction {args.fraction})   TP/FP/FN   event F1 of the rule alone")
    for factor, minimum in itertools.product(factors, minimums):
        tp = fp = fn = 0
        for channel in channels:
            events = decisions_to_events(stuck_decisions(channel, factor, minimum, args.fraction))
            counts = event_counts(events, channel.events)
            tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
        f1 = prf(tp, fp, fn)["f1"]
        print(f"factor {factor:3.1f}, minimum {minimum:3d}   {tp}/{fp}/{fn}   {f1:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
