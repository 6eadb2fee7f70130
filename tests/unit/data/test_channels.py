"""Seed channel list and subsystem map."""

from __future__ import annotations

import pytest

from satwatch.data import SEED_CHANNELS, SUBSYSTEMS, subsystem_of
from satwatch.data.channels import channel_sort_key
from satwatch.exceptions import DataError


def test_seed_channels_are_the_27_of_the_design_in_order() -> None:
    assert len(SEED_CHANNELS) == 27
    assert len(set(SEED_CHANNELS)) == 27
    assert SEED_CHANNELS[:6] == ("E-1", "E-2", "E-3", "E-4", "E-5", "A-1")
    assert SEED_CHANNELS[-5:] == ("P-1", "P-2", "P-3", "P-4", "P-7")


def test_subsystem_of_maps_every_seed_prefix() -> None:
    assert subsystem_of("E-3") == "EPS"
    assert subsystem_of("A-1") == "ACS"
    assert subsystem_of("P-7") == "PS"
    assert {subsystem_of(c) for c in SEED_CHANNELS} == set(SUBSYSTEMS.values())


def test_subsystem_of_unmapped_prefix_is_other() -> None:
    assert subsystem_of("G-6") == "Other"


def test_subsystem_of_rejects_a_name_that_is_no_channel() -> None:
    with pytest.raises(DataError, match="E1"):
        subsystem_of("E1")


def test_channel_sort_key_is_natural() -> None:
    assert sorted(["A-10", "A-2", "B-1"], key=channel_sort_key) == ["A-2", "A-10", "B-1"]
