"""``report/index.html``: one self-contained page, readable offline.

The page holds a small CSS block and no script; every figure is a PNG embedded as a base64
``data:`` URI (the PNGs are also kept in ``figures/`` beside the page for reuse). The only
``http`` addresses are plain ``<a>`` links to the cited papers; nothing is fetched.

Usage::

    index = build_report(Path("runs/seed"), Path("report"), channels=["E-1", "A-1"])
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from satwatch.data.channels import subsystem_of
from satwatch.evaluation.events import decisions_to_events, overlap_matrix
from satwatch.evaluation.run import ChannelRun, Run, RunEvent, load_run
from satwatch.exceptions import DataError, SatwatchError
from satwatch.report.figures import channel_figure, colour_of, name_of
from satwatch.report.summary import (
    GOAL_EVENT_F1,
    GOAL_PA_F1,
    PUBLISHED,
    TARGET_EVENT_F1,
    channel_key_f1,
    report_metrics,
    sort_detector,
    worst_first,
)

LOGGER = logging.getLogger(__name__)

INDEX = "index.html"
FIGURES = "figures"
MAX_EVENT_ROWS = 40
OPEN_EVENTS = 6
"""Event tables longer than this start collapsed."""

COLUMNS = (
    ("event_f1", "event F1"),
    ("pa_f1", "PA F1"),
    ("point_f1", "point F1"),
    ("event_precision", "event P"),
    ("event_recall", "event R"),
    ("event_tp", "TP"),
    ("event_fp", "FP"),
    ("event_fn", "FN"),
)
"""Metric columns of every table: key in metrics.json, heading."""

F1_KEYS = {"event_f1", "pa_f1", "point_f1"}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #212529; margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1400px; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; border-bottom: 2px solid #dee2e6; }
h3 { font-size: 1.1rem; margin: 0 0 .5rem; display: flex; gap: .6rem; align-items: baseline; }
.meta, .note { color: #6c757d; font-size: .85rem; }
table { border-collapse: collapse; margin: .4rem 0 .8rem; font-size: .85rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e9ecef; text-align: right; }
th.text { text-align: left; }
th { background: #f8f9fa; font-weight: 600; }
th:first-child, td:first-child, td.text { text-align: left; }
td.num { font-variant-numeric: tabular-nums; }
tr.group td { background: #f1f3f5; font-weight: 600; text-align: left; color: #495057; }
tr.ours td:first-child { font-weight: 600; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px;
          margin-right: .4rem; vertical-align: -1px; }
.good { background: #d8f3dc; } .fair { background: #fff3bf; } .poor { background: #ffe3e3; }
.badge { font-size: .8rem; font-weight: 600; padding: .1rem .5rem; border-radius: 1rem; }
.sub { color: #6c757d; font-weight: 400; font-size: .9rem; }
.chips { display: flex; flex-wrap: wrap; gap: .35rem; margin: .5rem 0 1rem; }
.chips a { text-decoration: none; color: inherit; border: 1px solid #dee2e6; font-size: .8rem;
           border-radius: .3rem; padding: .15rem .45rem; font-variant-numeric: tabular-nums; }
section.channel { border: 1px solid #dee2e6; border-radius: .5rem; padding: 1rem 1.2rem;
                  margin: 1rem 0; }
section.channel img { width: 100%; height: auto; display: block; margin-top: .5rem; }
details { margin-top: .4rem; } summary { cursor: pointer; color: #495057; }
.target { padding: .5rem .8rem; border-left: 4px solid #adb5bd; background: #f8f9fa; }
.target.met { border-color: #2b8a3e; } .target.missed { border-color: #c92a2a; }
footer { margin-top: 3rem; color: #868e96; font-size: .8rem; }
"""


def build_report(
    run_dir: Path,
    output: Path,
    channels: Sequence[str] | None = None,
    on_channel: Callable[[str], None] | None = None,
) -> Path:
    """Draw every channel's figure and write ``output/index.html``.

    Args:
        run_dir: The run folder (``satwatch evaluate --output``).
        output: The report folder (created; ``index.html`` and ``figures/`` go in it).
        channels: Channels to show (default every channel with scores in the run).
        on_channel: Called with each channel's id after its figure is drawn (progress).

    Returns:
        The path of ``index.html``.

    Raises:
        DataError: The run folder is missing or malformed, or a channel has no scores.
    """
    run = load_run(run_dir)
    names = list(channels) if channels else list(run.channels)
    if not names:
        raise DataError(
            f"run {run.path}: no channel scores (scores/<channel>.npz) to draw; "
            "write the run with `satwatch evaluate --output` first"
        )
    unknown = [n for n in names if n not in run.channels]
    if unknown:
        raise DataError(
            f"run {run.path}: no scores for {', '.join(unknown)}; "
            f"it has {', '.join(run.channels) or 'none'}"
        )
    output = Path(output)
    figures = output / FIGURES
    metrics = report_metrics(run, names)
    order = worst_first(metrics, names)
    sections = []
    for name in order:
        chan = run.channel(name)
        events = run.events_of(name)
        png = channel_figure(chan, events, figures / f"{name}.png", title=_figure_title(name))
        sections.append(_channel_section(chan, events, metrics, png))
        if on_channel is not None:
            on_channel(name)
    page = _page(run, metrics, order, sections)
    index = output / INDEX
    index.write_text(page, encoding="utf-8")
    LOGGER.info("wrote %s (%d channels)", index, len(order))
    return index


def _figure_title(name: str) -> str:
    try:
        return f"{name}  ({subsystem_of(name)})"
    except SatwatchError:
        return name


def _page(run: Run, metrics: dict, order: list[str], sections: list[str]) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    detectors = ", ".join(name_of(d) for d in metrics) or "none"
    events = sum(1 for e in run.events if e.channel in set(order))
    body = [
        "<header><h1>satwatch detection report</h1>",
        f'<p class="meta">run <code>{escape(str(run.path))}</code> · {len(order)} channels · '
        f"detectors: {escape(detectors)} · {events} detected events · {now}</p>",
        "</header>",
        '<section id="summary"><h2>Summary</h2>',
        _target(metrics),
        _summary_table(metrics, len(order), run.spacecraft),
        _protocol_note(len(order)),
        "</section>",
        '<section id="channels"><h2>Channels, worst first</h2>',
        _chips(metrics, order),
        *sections,
        "</section>",
        "<footer>Generated by <code>satwatch report</code>. Shaded red: expert-labelled "
        "anomalies (labeled_anomalies.csv); orange: events the pipeline reported.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>satwatch report: {escape(run.path.name)}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _target(metrics: dict) -> str:
    fused = metrics.get("fused", {}).get("overall")
    goal = (
        f"Target (issue 6): fused event-wise F1 ≥ {TARGET_EVENT_F1:.2f} on the seed channels; "
        f"goal: event F1 ≥ {GOAL_EVENT_F1:.2f} with point-adjusted F1 ≥ {GOAL_PA_F1:.2f}."
    )
    if not fused or "event_f1" not in fused:
        return f'<p class="target">{escape(goal)} No fused result in this run.</p>'
    f1, pa = fused["event_f1"], fused.get("pa_f1", 0.0)
    met = f1 >= TARGET_EVENT_F1
    verdict = "met" if met else "not met"
    beyond = " Goal reached." if f1 >= GOAL_EVENT_F1 and pa >= GOAL_PA_F1 else ""
    return (
        f'<p class="target {"met" if met else "missed"}">{escape(goal)} '
        f"<strong>Fused event F1 {f1:.3f}, PA F1 {pa:.3f}: target {verdict}.</strong>"
        f"{beyond}</p>"
    )


def _summary_table(metrics: dict, count: int, spacecraft: str = "SMAP") -> str:
    head = "".join(f'<th class="text">{t}</th>' for t in ("detector", "channels", "protocol"))
    head += "".join(f"<th>{escape(title)}</th>" for _, title in COLUMNS)
    head += '<th class="text">source</th>'
    rows = [f"<table class='summary'><thead><tr>{head}</tr></thead><tbody>"]
    rows.append(f'<tr class="group"><td colspan="{len(COLUMNS) + 4}">satwatch, this run</td></tr>')
    for detector, section in metrics.items():
        name = f'<span class="swatch" style="background:{colour_of(detector)}"></span>'
        name += escape(name_of(detector))
        cells = _metric_cells(section["overall"])
        rows.append(
            f'<tr class="ours"><td>{name}</td><td class="text">{count} (this run)</td>'
            f'<td class="text">Telemanom event-wise; point-adjusted; point-wise</td>{cells}'
            '<td class="text">this report</td></tr>'
        )
    # The published figures are SMAP's: beside another spacecraft's run they would mislead.
    papers = PUBLISHED if spacecraft == "SMAP" else ()
    if papers:
        rows.append(
            f'<tr class="group"><td colspan="{len(COLUMNS) + 4}">published on SMAP: all 55 '
            "channels, their own protocols (not directly comparable)</td></tr>"
        )
    for paper in papers:
        source = f'<a href="{escape(paper.url)}">{escape(paper.source)}</a>'
        cells = _metric_cells(paper.metrics, published=True)
        rows.append(
            f"<tr><td>{escape(paper.method)}</td><td class='text'>{escape(paper.scope)}</td>"
            f"<td class='text'>{escape(paper.protocol)}</td>{cells}"
            f"<td class='text'>{source}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _protocol_note(count: int) -> str:
    return (
        '<p class="note">Ours: the run\'s '
        f"{count} channels (the 27 seed channels in a full run). Event-wise (Telemanom): "
        "TP = labelled events some detection overlaps, FP = detections overlapping no labelled "
        "event, FN = labelled events nothing overlaps; overall figures sum the counts over "
        "channels. Point-adjusted F1 (OmniAnomaly/TranAD papers) marks a whole labelled "
        "segment detected when any step of it is, which flatters noisy detectors. The published "
        "figures cover all 55 SMAP channels (69 labelled sequences) under each paper's "
        "protocol and thresholding, so they frame ours rather than rank it. Telemanom: "
        "59 TP, 10 FP, 10 FN, so F1 = 2·59 / (2·59 + 10 + 10) = 0.855.</p>"
    )


def _metric_cells(figures: dict, published: bool = False) -> str:
    """Table cells of the metric columns; published figures keep their published digits."""
    cells = []
    for key, _ in COLUMNS:
        value = figures.get(key)
        if value is None:
            cells.append('<td class="num">–</td>')
        elif isinstance(value, int) and not isinstance(value, bool):
            cells.append(f'<td class="num">{value}</td>')
        else:
            grade = f" {_grade(float(value))}" if key in F1_KEYS else ""
            text = f"{float(value):g}" if published else f"{float(value):.3f}"
            cells.append(f'<td class="num{grade}">{text}</td>')
    return "".join(cells)


def _grade(f1: float) -> str:
    if f1 >= TARGET_EVENT_F1:
        return "good"
    return "fair" if f1 >= 0.5 else "poor"


def _anchor(name: str) -> str:
    return "ch-" + "".join(c if c.isalnum() else "-" for c in name)


def _chips(metrics: dict, order: list[str]) -> str:
    basis = "fused" if sort_detector(metrics) else "best detector's"
    chips = []
    for name in order:
        f1 = channel_key_f1(metrics, name)
        text = escape(name) + ("" if f1 is None else f" {f1:.2f}")
        grade = "" if f1 is None else f' class="{_grade(f1)}"'
        chips.append(f'<a href="#{_anchor(name)}"{grade}>{text}</a>')
    return (
        f'<p class="note">Sorted by {basis} event F1, lowest first '
        "(ties: more misses + false alarms first).</p>"
        f'<nav class="chips">{"".join(chips)}</nav>'
    )


def _channel_section(chan: ChannelRun, events: list[RunEvent], metrics: dict, png: Path) -> str:
    name = chan.channel
    f1 = channel_key_f1(metrics, name)
    badge = ""
    if f1 is not None:
        badge = f'<span class="badge {_grade(f1)}">event F1 {f1:.2f}</span>'
    try:
        subsystem = subsystem_of(name)
    except SatwatchError:
        subsystem = ""
    head = f"<tr><th>detector</th>{''.join(f'<th>{escape(t)}</th>' for _, t in COLUMNS)}</tr>"
    rows = []
    for detector, section in metrics.items():
        figures = section["channels"].get(name)
        if figures is None:
            continue
        swatch = f'<span class="swatch" style="background:{colour_of(detector)}"></span>'
        rows.append(
            f"<tr><td>{swatch}{escape(name_of(detector))}</td>{_metric_cells(figures)}</tr>"
        )
    table = f"<table>{head}{''.join(rows)}</table>" if rows else "<p>No metrics.</p>"
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    alt = f"{name}: telemetry, detector scores over thresholds, decisions, events and labels"
    summary, details = _events(chan, events)
    return (
        f'<section class="channel" id="{_anchor(name)}">'
        f'<h3>{escape(name)} <span class="sub">{escape(subsystem)}</span>{badge}</h3>'
        f"{table}{summary}"
        f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">{details}'
        "</section>"
    )


def _events(chan: ChannelRun, events: list[RunEvent]) -> tuple[str, str]:
    """A one-line events summary and a collapsible table of the events (hit or false alarm)."""
    labelled = decisions_to_events(chan.labels) if chan.labels is not None else []
    detected = [(e.start, e.end) for e in events]
    hits = [False] * len(detected)
    missed = list(labelled)
    if detected and labelled:
        overlaps = overlap_matrix(detected, labelled)
        hits = [bool(h) for h in overlaps.any(axis=1)]
        missed = [lab for lab, seen in zip(labelled, overlaps.any(axis=0), strict=True) if not seen]
    line = f"<strong>{len(events)} detected event{'' if len(events) == 1 else 's'}</strong>"
    if chan.labels is not None:
        if events:
            line += f" ({sum(hits)} on a labelled anomaly, {len(hits) - sum(hits)} false alarms)"
        spans = ", ".join(f"{a}–{b}" for a, b in missed) or "none"
        line += f" · {len(labelled)} labelled, missed: {escape(spans)}"
    summary = f'<p class="events">{line}</p>'
    if not events:
        return summary, ""
    rows = [
        "<table><tr><th>start</th><th>end</th><th>steps</th><th>peak</th>"
        "<th>detectors</th><th>verdict</th></tr>"
    ]
    for event, hit in list(zip(events, hits, strict=True))[:MAX_EVENT_ROWS]:
        verdict = "" if chan.labels is None else ("hit" if hit else "false alarm")
        grade = "" if chan.labels is None else (" good" if hit else " poor")
        agreed = ", ".join(name_of(d) for d in event.detectors) or "–"
        rows.append(
            f'<tr><td class="num">{event.start}</td><td class="num">{event.end}</td>'
            f'<td class="num">{event.end - event.start + 1}</td>'
            f'<td class="num">{event.peak_score:.3g}</td><td class="text">{escape(agreed)}'
            f'</td><td class="text{grade}">{verdict}</td></tr>'
        )
    if len(events) > MAX_EVENT_ROWS:
        rows.append(
            f'<tr><td colspan="6" class="text">… {len(events) - MAX_EVENT_ROWS} more in '
            "events.csv</td></tr>"
        )
    rows.append("</table>")
    opened = " open" if len(events) <= OPEN_EVENTS else ""
    details = f"<details{opened}><summary>events</summary>{''.join(rows)}</details>"
    return summary, details


__all__ = ["INDEX", "build_report"]
