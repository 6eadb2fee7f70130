"""Parsing labeled_anomalies.csv, merging duplicated rows, point labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from satwatch.data.labels import LabelledEvent, events_to_mask, merge_events, read_labels
from satwatch.exceptions import DataError

HEADER = "chan_id,spacecraft,anomaly_sequences,class,num_values\n"


def _csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "labeled_anomalies.csv"
    path.write_text(HEADER + body)
    return path


def test_read_labels_parses_intervals_and_classes(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'E-1,SMAP,"[[5, 7], [1, 2]]","[contextual, point]",10\n')
    labels = read_labels(path)["E-1"]
    assert labels.num_values == 10
    assert labels.spacecraft == "SMAP"
    assert labels.events == (LabelledEvent(1, 2, "point"), LabelledEvent(5, 7, "contextual"))


def test_read_labels_merges_a_channel_listed_twice(tmp_path: Path) -> None:
    body = 'P-2,SMAP,"[[50, 65]]",[point],80\nX-1,SMAP,"[[0, 0]]",[point],3\n'
    body += 'P-2,SMAP,"[[45, 60]]",[point],80\n'
    labels = read_labels(_csv(tmp_path, body))
    assert labels["P-2"].events == (LabelledEvent(45, 65, "point"),)
    assert list(labels) == ["P-2", "X-1"]


def test_read_labels_rejects_a_duplicate_with_another_length(tmp_path: Path) -> None:
    body = 'P-2,SMAP,"[[5, 6]]",[point],80\nP-2,SMAP,"[[1, 2]]",[point],81\n'
    with pytest.raises(DataError, match="P-2 listed twice"):
        read_labels(_csv(tmp_path, body))


def test_read_labels_rejects_class_count_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="2 anomaly sequences but 1 classes"):
        read_labels(_csv(tmp_path, 'E-1,SMAP,"[[1, 2], [4, 5]]",[point],10\n'))


def test_read_labels_rejects_unknown_class(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'spike'"):
        read_labels(_csv(tmp_path, 'E-1,SMAP,"[[1, 2]]",[spike],10\n'))


def test_read_labels_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="labels file not found"):
        read_labels(tmp_path / "labeled_anomalies.csv")


def test_read_labels_names_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "labeled_anomalies.csv"
    path.write_text("chan_id,spacecraft\nE-1,SMAP\n")
    with pytest.raises(DataError, match="missing column"):
        read_labels(path)


def test_merge_events_joins_overlaps_and_keeps_gaps() -> None:
    events = [
        LabelledEvent(10, 20, "contextual"),
        LabelledEvent(0, 3, "point"),
        LabelledEvent(15, 25, "point"),
        LabelledEvent(27, 30, "contextual"),
    ]
    assert merge_events(events) == [
        LabelledEvent(0, 3, "point"),
        LabelledEvent(10, 25, "point"),
        LabelledEvent(27, 30, "contextual"),
    ]


def test_events_to_mask_is_inclusive_at_both_ends() -> None:
    mask = events_to_mask([LabelledEvent(1, 2, "point"), LabelledEvent(5, 5, "point")], 7)
    assert mask.tolist() == [False, True, True, False, False, True, False]


def test_events_to_mask_rejects_an_event_past_the_end() -> None:
    with pytest.raises(DataError, match=r"\[3, 7\].*5 steps"):
        events_to_mask([LabelledEvent(3, 7, "point")], 5)


def test_real_labels_have_the_published_counts(shared_data: Path) -> None:
    labels = read_labels(shared_data / "labeled_anomalies.csv")
    smap = [v for v in labels.values() if v.spacecraft == "SMAP"]
    msl = [v for v in labels.values() if v.spacecraft == "MSL"]
    assert (len(smap), len(msl)) == (54, 27)
    # 69 SMAP sequences in the CSV, P-2's two overlapping rows merged into one.
    assert sum(len(v.events) for v in smap) == 68
    assert sum(len(v.events) for v in msl) == 36
    assert labels["P-2"].events == (LabelledEvent(5300, 6575, "point"),)
    points = sum(int(events_to_mask(v.events, v.num_values).sum()) for v in smap)
    assert points == 55_972
