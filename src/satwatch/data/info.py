"""One summary row per channel: lengths, labelled events, anomalous share and data quirks.

Usage::

    rows = channel_summaries(load_dataset(), ["E-1", "M-6"])
    rows[0].flags   # e.g. ["constant train"]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from satwatch.data.dataset import Channel, TelemetryDataset

LOGGER = logging.getLogger(__name__)

CONSTANT_SPAN = 1e-6
"""Column 0 of a training series whose max - min is below this is flagged as constant."""


@dataclass(frozen=True)
class ChannelSummary:
    """What ``satwatch data info`` prints for one channel."""

    channel: str
    subsystem: str
    features: int
    train_length: int
    test_length: int
    point_events: int
    contextual_events: int
    anomalous_steps: int
    flags: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        """Labelled events of both classes."""
        return self.point_events + self.contextual_events

    @property
    def anomalous_percent(self) -> float:
        """Share of test steps inside labelled events, in percent."""
        return 100.0 * self.anomalous_steps / self.test_length if self.test_length else 0.0


def channel_flags(chan: Channel) -> list[str]:
    """Quirks worth knowing before training: constant training value, values outside [-1, 1]."""
    flags = []
    if float(np.ptp(chan.train[:, 0])) < CONSTANT_SPAN:
        flags.append("constant train")
    outside = [
        split
        for split, array in (("train", chan.train), ("test", chan.test))
        if float(np.abs(array[:, 0]).max()) > 1.0
    ]
    if outside:
        flags.append(f"out of [-1,1]: {'+'.join(outside)}")
    return flags


def summarize_channel(chan: Channel) -> ChannelSummary:
    """The summary row of one loaded channel."""
    kinds = [e.kind for e in chan.events]
    return ChannelSummary(
        channel=chan.name,
        subsystem=chan.subsystem,
        features=chan.num_features,
        train_length=int(chan.train.shape[0]),
        test_length=int(chan.test.shape[0]),
        point_events=kinds.count("point"),
        contextual_events=kinds.count("contextual"),
        anomalous_steps=int(chan.labels.sum()),
        flags=channel_flags(chan),
    )


def channel_summaries(dataset: TelemetryDataset, names: Iterable[str]) -> list[ChannelSummary]:
    """Summary rows for the named channels of ``dataset`` (each is loaded)."""
    return [summarize_channel(dataset.channel(name)) for name in names]
