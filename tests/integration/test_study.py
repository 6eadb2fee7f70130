"""``satwatch study``: the validation and reported tables, each event's fate, as served.

The reported set is the shared built seed repository of :mod:`builders` (tiny detectors);
the validation set is two non-seed channels trained with the same tiny settings beforehand,
so the command only exports and calibrates them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from satwatch.cli import app
from satwatch.data import load_dataset
from satwatch.detectors import registry
from satwatch.evaluation.offline import FUSED, evaluate_offline
from satwatch.evaluation.study import FROZEN
from satwatch.repository.build import build_repository

from .builders import TINY, Built, built_repository, webhook_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RUNNER = CliRunner()
VALIDATION = ["A-7", "G-1"]
REPORTED = ["E-1", "A-1", "P-2"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data: Path) -> Built:
    return built_repository(tmp_path_factory, shared_data, webhook_server())


@pytest.fixture(scope="module")
def study(built: Built, shared_data: Path, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("study")
    build_repository(
        workdir / "artifacts", workdir / "repository", shared_data,
        channels=VALIDATION, overrides=TINY,
    )  # fmt: skip
    output = workdir / "out"
    result = RUNNER.invoke(
        app,
        ["study", "--data", str(shared_data), "--validation", ",".join(VALIDATION),
         "--report", ",".join(REPORTED), "--workdir", str(workdir),
         "--artifacts", str(built.artifacts), "--repository", str(built.repository),
         "--output", str(output)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tables = json.loads((output / "study.json").read_text())
    return {"tables": tables, "output": output, "printed": result.output}


def test_it_reports_validation_then_the_reported_channels(study) -> None:
    titles = [(t["title"], t["channels"]) for t in study["tables"]]
    assert titles == [("validation", VALIDATION), ("seed", REPORTED)]
    markdown = (study["output"] / "study.md").read_text()
    assert markdown.index("## validation") < markdown.index("## seed")
    assert "each labelled event" in study["printed"]


def test_every_labelled_event_is_listed_once_and_the_counts_agree(study, shared_data) -> None:
    dataset = load_dataset(shared_data)
    for table in study["tables"]:
        labelled = [
            (name, e.start, e.end)
            for name in table["channels"]
            for e in dataset.channel(name).events
        ]
        assert [(e["channel"], e["start"], e["end"]) for e in table["events"]] == labelled
        assert list(table["rows"]) == [*registry.kinds(), FROZEN, FUSED]
        for row, section in table["rows"].items():
            found = sum(row in e["found_by"] for e in table["events"])
            overall = section["overall"]
            assert overall["event_tp"] == found
            assert overall["event_tp"] + overall["event_fn"] == len(labelled)
        assert len(table["false_alarms"]) == table["rows"][FUSED]["overall"]["event_fp"]
        assert all(FUSED in alarm["found_by"] for alarm in table["false_alarms"])


def test_the_fused_row_is_the_served_evaluation(study, built: Built, shared_data) -> None:
    offline = evaluate_offline(
        registry.kinds(), REPORTED, shared_data, built.artifacts, repository=built.repository
    )
    seed = study["tables"][1]
    assert seed["rows"][FUSED] == offline["detectors"][FUSED]


def test_an_unknown_validation_channel_is_named(built: Built, shared_data, tmp_path) -> None:
    result = RUNNER.invoke(
        app,
        ["study", "--data", str(shared_data), "--validation", "Q-99", "--workdir", str(tmp_path)],
    )
    assert result.exit_code == 1
    assert "Q-99" in result.output
