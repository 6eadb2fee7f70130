"""Labelled SMAP/MSL spacecraft telemetry: loading, labels, channel names, synthetic data.

Usage::

    from satwatch.data import SEED_CHANNELS, load_dataset

    dataset = load_dataset()              # folder from $SATWATCH_DATA or the shared copy
    chan = dataset.channel("E-1")         # chan.train, chan.test, chan.labels, chan.events
"""

from satwatch.data.channels import SEED_CHANNELS, SUBSYSTEMS, subsystem_of
from satwatch.data.dataset import Channel, TelemetryDataset, load_dataset
from satwatch.data.labels import LabelledEvent

__all__ = [
    "SEED_CHANNELS",
    "SUBSYSTEMS",
    "Channel",
    "LabelledEvent",
    "TelemetryDataset",
    "load_dataset",
    "subsystem_of",
]
