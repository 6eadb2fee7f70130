"""The HTML report: a synthetic run folder of three channels -> a self-contained report folder."""

from __future__ import annotations

import base64
import json
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from satwatch.commands import report as report_cli
from satwatch.evaluation.events import decisions_to_events
from satwatch.evaluation.metrics import channel_metrics, summarize
from satwatch.evaluation.run import RunEvent, load_run, save_channel_run, write_events
from satwatch.report.figures import channel_figure, wants_log_scale
from satwatch.report.html import build_report
from satwatch.report.summary import report_metrics, worst_first

STEPS = 300
LABELLED = (100, 129)
HIT, FALSE_ALARM = (110, 120), (200, 205)
# Fused decisions per channel: E-1 hits the labelled event (F1 1), A-1 hits it and raises a
# false alarm (F1 2/3), P-1 only raises the false alarm (F1 0). Worst first: P-1, A-1, E-1.
FUSED_RUNS = {"E-1": [HIT], "A-1": [HIT, FALSE_ALARM], "P-1": [FALSE_ALARM]}


def _flags(runs: list[tuple[int, int]]) -> np.ndarray:
    flags = np.zeros(STEPS, dtype=bool)
    for start, end in runs:
        flags[start : end + 1] = True
    return flags


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    labels = _flags([LABELLED])
    per_detector: dict[str, dict] = {"omni": {}, "tranad": {}, "fused": {}}
    events = []
    for name, runs in FUSED_RUNS.items():
        fused = _flags(runs)
        omni = np.exp(rng.normal(0, 0.3, STEPS)) + 200.0 * fused  # positive, spans decades
        tranad = rng.normal(0, 0.1, STEPS) + 2.0 * fused
        arrays = {
            "omni_score": omni, "omni_threshold": 50.0,
            "tranad_score": tranad, "tranad_threshold": 1.0,
            "fused_score": 0.5 + 2.0 * fused, "fused_threshold": 1.0, "fused_decision": fused,
        }  # fmt: skip
        save_channel_run(folder, name, value=np.sin(np.arange(STEPS) / 9), labels=labels, **arrays)
        for detector in per_detector:
            decisions = arrays[f"{detector}_score"] > arrays[f"{detector}_threshold"]
            per_detector[detector][name] = channel_metrics(decisions, labels)
        for start, end in decisions_to_events(fused):
            events.append(RunEvent(name, "X", start, end, 2.5, ("omni", "tranad")))
    metrics = {"detectors": {d: summarize(m) for d, m in per_detector.items()}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    write_events(folder, events)
    return folder


class _Page(HTMLParser):
    """Collects tags with their attributes and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def page(run_dir, tmp_path_factory) -> tuple[Path, _Page]:
    output = tmp_path_factory.mktemp("report")
    seen: list[str] = []
    index = build_report(run_dir, output, on_channel=seen.append)
    assert index == output / "index.html"
    assert seen == ["P-1", "A-1", "E-1"]
    parser = _Page()
    parser.feed(index.read_text(encoding="utf-8"))
    parser.close()
    return index, parser


def test_channel_sections_name_every_channel_worst_first(page) -> None:
    _, parser = page
    sections = [
        a["id"] for tag, a in parser.tags if tag == "section" and "channel" in a.get("class", "")
    ]
    assert sections == ["ch-P-1", "ch-A-1", "ch-E-1"]
    text = " ".join(parser.text)
    for name in FUSED_RUNS:
        assert name in text


def test_every_image_is_an_embedded_png_or_a_file_beside_the_page(page) -> None:
    index, parser = page
    sources = [a["src"] for tag, a in parser.tags if tag == "img"]
    assert len(sources) == 3
    for src in sources:
        if src.startswith("data:image/png;base64,"):
            data = base64.b64decode(src.split(",", 1)[1])
        else:
            data = (index.parent / src).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (index.parent / "figures").iterdir()) == [
        "A-1.png", "E-1.png", "P-1.png",
    ]  # fmt: skip


def test_page_opens_offline_no_external_resource_only_paper_links(page) -> None:
    _, parser = page
    assert not [t for t, _ in parser.tags if t in {"script", "link", "iframe", "object"}]
    for tag, attrs in parser.tags:
        assert not attrs.get("src", "").startswith(("http:", "https:", "//"))
        href = attrs.get("href", "")
        if href.startswith(("http:", "https:", "//")):
            assert tag == "a" and href.startswith("https://arxiv.org/abs/")


def test_summary_shows_our_micro_figures_beside_the_published_ones(page) -> None:
    _, parser = page
    text = " ".join(parser.text)
    # Fused over the three channels: TP 2 (E-1, A-1), FP 2 (A-1, P-1), FN 1 (P-1):
    # F1 = 2*2 / (2*2 + 2 + 1) = 0.571.
    assert "0.571" in text
    assert "target not met" in text
    for figure in ("0.855", "0.764", "0.8915", "0.8728"):
        assert figure in text
    for source in ("Hundman et al., KDD 2018", "Wong et al.", "Tuli et al., VLDB 2022"):
        assert source in text
    assert "all 55" in text and "2·59 / (2·59 + 10 + 10) = 0.855" in text


def test_another_spacecrafts_run_is_shown_without_smaps_published_figures(
    run_dir, tmp_path
) -> None:
    copy = tmp_path / "run"
    for path in run_dir.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(run_dir)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(run_dir)).write_bytes(path.read_bytes())
    metrics = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps({"spacecraft": "MSL", **metrics}))
    text = build_report(copy, tmp_path / "report").read_text(encoding="utf-8")
    assert "0.571" in text  # our figures
    assert "published on SMAP" not in text and "Hundman et al., KDD 2018" not in text


def test_overall_of_a_channel_subset_sums_that_subsets_counts(run_dir) -> None:
    metrics = report_metrics(load_run(run_dir), ["E-1", "A-1"])
    overall = metrics["fused"]["overall"]
    assert (overall["event_tp"], overall["event_fp"], overall["event_fn"]) == (2, 1, 0)
    assert overall["event_f1"] == pytest.approx(4 / 5)


def test_without_metrics_json_the_figures_come_from_the_arrays(run_dir, tmp_path) -> None:
    copy = tmp_path / "run"
    (copy / "scores").mkdir(parents=True)
    for npz in (run_dir / "scores").iterdir():
        (copy / "scores" / npz.name).write_bytes(npz.read_bytes())
    expected = report_metrics(load_run(run_dir), list(FUSED_RUNS))
    assert report_metrics(load_run(copy), list(FUSED_RUNS)) == expected


def test_without_fused_channels_rank_by_their_best_detector() -> None:
    def section(f1s: dict[str, float]) -> dict:
        channels = {c: {"event_f1": f, "event_fp": 0, "event_fn": 0} for c, f in f1s.items()}
        return {"overall": {}, "channels": channels}

    metrics = {"omni": section({"A": 0.9, "B": 0.1}), "tranad": section({"A": 0.2, "B": 0.5})}
    assert worst_first(metrics, ["A", "B", "C"]) == ["B", "A", "C"]


def test_log_scale_only_for_positive_scores_spanning_decades() -> None:
    flat = np.full(1000, 2.0)
    spiky = flat.copy()
    spiky[-5:] = 1e4
    assert not wants_log_scale(flat, 3.0)
    assert wants_log_scale(spiky, 3.0)
    assert not wants_log_scale(spiky - 5.0, 3.0)


def test_figure_is_a_wide_png(run_dir, tmp_path) -> None:
    run = load_run(run_dir)
    path = channel_figure(run.channel("A-1"), run.events_of("A-1"), tmp_path / "A-1.png")
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    assert width == 1300 and 700 < height < 1100


def test_cli_prints_the_report_path_and_one_line_for_an_unknown_channel(run_dir, tmp_path) -> None:
    app = typer.Typer()
    report_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `report` a subcommand
    runner = CliRunner()
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", "--run", str(run_dir), "-o", str(out), "-c", "E-1"])
    assert result.exit_code == 0, result.output
    assert str(out / "index.html") in result.output.replace("\n", "")
    assert (out / "index.html").exists()
    bad = runner.invoke(app, ["report", "--run", str(run_dir), "-o", str(out), "-c", "X-9"])
    assert bad.exit_code == 1
    assert "no scores for X-9" in bad.output and "Traceback" not in bad.output
