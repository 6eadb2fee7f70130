"""Per-channel summaries and their flags, on the real telemetry."""

from __future__ import annotations

from pathlib import Path

from satwatch.data import load_dataset
from satwatch.data.info import channel_summaries


def test_seed_summaries_add_up_to_the_published_figures(shared_data: Path) -> None:
    dataset = load_dataset(shared_data)
    rows = channel_summaries(dataset, dataset.resolve_channels("seed"))
    assert sum(r.events for r in rows) == 34
    assert sum(r.point_events for r in rows) == 23
    assert sum(r.contextual_events for r in rows) == 11
    assert sum(r.test_length for r in rows) == 221_174
    by_name = {r.channel: r for r in rows}
    assert by_name["P-2"].events == 1
    assert by_name["E-1"].subsystem == "EPS"
    assert by_name["E-1"].anomalous_percent == 100 * (31 + 477) / 8516


def test_constant_train_series_are_flagged(shared_data: Path) -> None:
    dataset = load_dataset(shared_data)
    rows = {r.channel: r for r in channel_summaries(dataset, ["A-1", "D-12", "B-1", "D-7", "E-1"])}
    for name in ("A-1", "D-12", "B-1", "D-7"):
        assert "constant train" in rows[name].flags
    assert rows["E-1"].flags == []


def test_msl_values_outside_the_range_are_flagged(shared_data: Path) -> None:
    dataset = load_dataset(shared_data, "MSL")
    rows = {r.channel: r for r in channel_summaries(dataset, ["M-6", "F-5", "C-1", "T-9"])}
    assert "out of [-1,1]: test" in rows["M-6"].flags
    assert "out of [-1,1]: train+test" in rows["F-5"].flags
    assert "out of [-1,1]: train" in rows["C-1"].flags
    assert not any(f.startswith("out of") for f in rows["T-9"].flags)
    assert rows["M-6"].features == 55
