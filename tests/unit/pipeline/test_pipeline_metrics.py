"""satwatch's metrics: names, labels, bucket counting, the wrapper over a stand-in ``pb_utils``.

The stand-in behaves as Triton 2.51's Python backend does where it matters: a family and label
set registered twice is one series, a counter refuses to go down, and two threads inside one
Metric call at once are detected (in Triton they crash the server).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from satwatch.paths import PROJECT_ROOT
from satwatch.pipeline import metrics
from satwatch.pipeline.eventlog import EventLog, WebhookNotifier
from satwatch.pipeline.metrics import (
    EVENTS,
    FUSED_SCORE_BUCKET,
    FUSED_SCORE_COUNT,
    FUSED_SCORE_SUM,
    MODEL_STARTS,
    SPECS,
    ModelMetrics,
    bucket_counts,
    le_label,
    promql_metric_names,
)

DASHBOARD = PROJECT_ROOT / "deploy" / "observability" / "grafana" / "dashboards" / "satwatch.json"
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TRITON_METRICS = {
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count",
}
"""Triton 2.51's per-model metrics (on a CPU-only server too)."""


class FakeMetric:
    def __init__(self, family: FakeFamily, labels: dict[str, str]) -> None:
        self.family, self.labels, self.value, self.busy = family, labels, 0.0, False

    def increment(self, value: float) -> None:
        if self.busy:
            raise AssertionError("two threads in one Metric call: tritonserver would crash")
        self.busy = True
        try:
            if self.family.kind == FakeFamily.COUNTER and value < 0:
                raise ValueError("counter metrics cannot be decremented")
            if self.family.fail:
                raise RuntimeError("metrics are disabled")
            time.sleep(0.0005)
            self.value += value
        finally:
            self.busy = False


class FakeFamily:
    COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
    registry: dict[str, FakeFamily] = {}

    def __init__(self, name: str, description: str, kind: int) -> None:
        self.name, self.description, self.kind, self.fail = name, description, kind, False
        # Registered again (another instance, a restarted stub): the same series.
        known = FakeFamily.registry.get(name)
        self.series: dict[tuple, FakeMetric] = known.series if known else {}
        FakeFamily.registry[name] = self

    def Metric(self, labels: dict[str, str]) -> FakeMetric:  # noqa: N802 - pb_utils' name
        key = tuple(sorted(labels.items()))
        return self.series.setdefault(key, FakeMetric(self, labels))


@pytest.fixture
def pb_utils():
    FakeFamily.registry = {}
    return SimpleNamespace(MetricFamily=FakeFamily)


def value(name: str, **labels: str) -> float:
    return FakeFamily.registry[name].series[tuple(sorted(labels.items()))].value


def test_names_are_prometheus_names_with_the_satwatch_prefix_and_unique():
    assert len({spec.name for spec in SPECS}) == len(SPECS)
    for spec in SPECS:
        assert NAME.match(spec.name) and spec.name.startswith("satwatch_"), spec.name
        assert spec.help.strip() and spec.kind in metrics.KINDS
        if spec not in metrics.FUSED_SCORE:
            assert spec.name.endswith("_total") and spec.kind == "counter", spec.name


def test_fused_score_families_are_one_histogram_laid_out_by_hand():
    base = "satwatch_fused_score"
    assert [s.name for s in metrics.FUSED_SCORE] == [
        f"{base}_{p}" for p in ("bucket", "sum", "count")
    ]
    assert FUSED_SCORE_BUCKET.labels == ("channel", "le")
    assert FUSED_SCORE_SUM.labels == FUSED_SCORE_COUNT.labels == ("channel",)
    # The sum of negative ratio scores goes down: a gauge; counts only go up.
    assert (FUSED_SCORE_SUM.kind, FUSED_SCORE_COUNT.kind) == ("gauge", "counter")


def test_labels_are_valid_and_never_prometheus_target_labels():
    for spec in SPECS:
        assert all(LABEL.match(label) for label in spec.labels), spec.name
        assert not {"instance", "job"} & set(spec.labels), spec.name
        assert ("le" in spec.labels) == (spec is FUSED_SCORE_BUCKET)
    assert EVENTS.labels == ("channel", "subsystem")
    assert MODEL_STARTS.labels == ("model",)


def test_every_model_publishes_its_starts_and_only_known_metrics():
    for published in (metrics.PREPROCESSING, metrics.POSTPROCESSING, metrics.CUSTOM_LOGIC):
        assert MODEL_STARTS in published and set(published) <= set(SPECS)
    assert set(metrics.POSTPROCESSING) | set(metrics.CUSTOM_LOGIC) == set(SPECS)


def test_bucket_counts_are_cumulative_include_the_bound_and_skip_non_finite():
    values = np.array([0.1, 0.25, 0.3, 1.0, 4.0, 150.0, np.nan, np.inf, -np.inf], np.float32)
    counts, total = bucket_counts(values)
    # Bounds 0.25 0.5 1 2 3 5 10 20 50 100, then +Inf (every finite value).
    assert counts.tolist() == [2, 3, 4, 4, 4, 5, 5, 5, 5, 5, 6]
    assert total == pytest.approx(0.1 + 0.25 + 0.3 + 1.0 + 4.0 + 150.0, rel=1e-6)


def test_bucket_counts_of_nothing_and_of_given_bounds():
    counts, total = bucket_counts(np.array([], np.float32))
    assert counts.tolist() == [0] * (len(metrics.SCORE_BOUNDS) + 1) and total == 0.0
    counts, total = bucket_counts(np.array([[-1.0, 2.0], [2.0, 3.5]]), bounds=(0.0, 2.0))
    assert counts.tolist() == [1, 3, 4] and total == 6.5


def test_le_labels_are_written_as_triton_writes_its_own_histograms():
    assert [le_label(b) for b in (0.25, 1.0, 100.0, float("inf"))] == ["0.25", "1", "100", "+Inf"]


def test_series_labelled_by_model_alone_exist_at_zero_from_the_start(pb_utils):
    ModelMetrics(pb_utils, "custom_logic", metrics.CUSTOM_LOGIC)
    assert set(FakeFamily.registry) == {spec.name for spec in metrics.CUSTOM_LOGIC}
    for spec in (MODEL_STARTS, metrics.EVENTLOG_WRITE_FAILURES, metrics.WEBHOOK_FAILURES):
        assert value(spec.name, model="custom_logic") == 0.0
    assert FakeFamily.registry[EVENTS.name].series == {}
    assert FakeFamily.registry[EVENTS.name].kind == FakeFamily.COUNTER


def test_a_second_instance_continues_the_start_count(pb_utils):
    for _ in range(2):
        ModelMetrics(pb_utils, "preprocessing", metrics.PREPROCESSING).increment(MODEL_STARTS)
    assert value(MODEL_STARTS.name, model="preprocessing") == 2.0


def test_events_count_once_per_call_by_channel_and_subsystem(pb_utils):
    published = ModelMetrics(pb_utils, "custom_logic", metrics.CUSTOM_LOGIC)
    published.prepare_events("E-1", "EPS")
    assert value(EVENTS.name, channel="E-1", subsystem="EPS") == 0.0
    published.count_events(2, "E-1", "EPS")
    published.count_events(1, "A-1", "ACS")
    assert value(EVENTS.name, channel="E-1", subsystem="EPS") == 2.0
    assert value(EVENTS.name, channel="A-1", subsystem="ACS") == 1.0


def test_fused_scores_fill_the_cumulative_buckets_sum_and_count(pb_utils):
    published = ModelMetrics(pb_utils, "postprocessing", metrics.POSTPROCESSING)
    published.prepare_scores("E-1")
    buckets = FakeFamily.registry[FUSED_SCORE_BUCKET.name].series
    assert len(buckets) == len(metrics.SCORE_BOUNDS) + 1
    published.observe_scores(np.array([0.1, 0.6, 7.0], np.float32), "E-1")
    published.observe_scores(np.array([200.0], np.float32), "E-1")
    got = {dict(key)["le"]: metric.value for key, metric in buckets.items()}
    assert got == {
        "0.25": 1, "0.5": 1, "1": 2, "2": 2, "3": 2, "5": 2,
        "10": 3, "20": 3, "50": 3, "100": 3, "+Inf": 4,
    }  # fmt: skip
    assert value(FUSED_SCORE_COUNT.name, channel="E-1") == 4
    assert value(FUSED_SCORE_SUM.name, channel="E-1") == pytest.approx(207.7, rel=1e-6)


def test_negative_fused_scores_lower_the_sum_and_fill_no_bucket_below_their_own(pb_utils):
    published = ModelMetrics(pb_utils, "postprocessing", metrics.POSTPROCESSING)
    published.observe_scores(np.array([-2.0, -1.0], np.float32), "E-1")
    assert value(FUSED_SCORE_SUM.name, channel="E-1") == -3.0
    assert value(FUSED_SCORE_BUCKET.name, channel="E-1", le="0.25") == 2
    assert value(FUSED_SCORE_COUNT.name, channel="E-1") == 2


def test_wrong_labels_are_a_programming_error(pb_utils):
    published = ModelMetrics(pb_utils, "custom_logic", metrics.CUSTOM_LOGIC)
    with pytest.raises(ValueError, match=r"satwatch_events_total: expected labels"):
        published.increment(EVENTS, channel="E-1")
    without_api = ModelMetrics(SimpleNamespace(), "custom_logic", metrics.CUSTOM_LOGIC)
    with pytest.raises(ValueError, match="expected labels"):
        without_api.increment(EVENTS, subsystem="EPS")


def test_without_the_metrics_api_everything_is_a_logged_no_op(caplog):
    with caplog.at_level(logging.WARNING, logger=metrics.__name__):
        published = ModelMetrics(SimpleNamespace(), "custom_logic", metrics.CUSTOM_LOGIC)
        published.increment(MODEL_STARTS)
        published.count_events(3, "E-1", "EPS")
        published.observe_scores(np.ones(4, np.float32), "E-1")
    assert not published.available
    assert [r.getMessage() for r in caplog.records] == [
        "custom_logic: Triton has no custom metrics API; no satwatch metrics"
    ]


def test_a_failing_metric_call_is_logged_once_and_never_raises(pb_utils, caplog):
    published = ModelMetrics(pb_utils, "custom_logic", metrics.CUSTOM_LOGIC)
    FakeFamily.registry[MODEL_STARTS.name].fail = True
    with caplog.at_level(logging.WARNING, logger=metrics.__name__):
        for _ in range(3):
            published.increment(MODEL_STARTS)
    assert len(caplog.records) == 1 and "satwatch_model_starts_total" in caplog.text
    assert value(MODEL_STARTS.name, model="custom_logic") == 0.0


def test_a_family_the_api_refuses_leaves_the_others_working(pb_utils):
    class Refusing(FakeFamily):
        def __init__(self, name: str, description: str, kind: int) -> None:
            if name == EVENTS.name:
                raise RuntimeError("refused")
            super().__init__(name, description, kind)

    published = ModelMetrics(SimpleNamespace(MetricFamily=Refusing), "m", metrics.CUSTOM_LOGIC)
    published.count_events(1, "E-1", "EPS")
    published.increment(MODEL_STARTS)
    assert EVENTS.name not in FakeFamily.registry
    assert value(MODEL_STARTS.name, model="m") == 1.0


def test_failures_are_counted_and_raised_again(pb_utils):
    published = ModelMetrics(pb_utils, "custom_logic", metrics.CUSTOM_LOGIC)
    with (
        pytest.raises(OSError, match="disk full"),
        published.failures(metrics.EVENTLOG_WRITE_FAILURES),
    ):
        raise OSError("disk full")
    with published.failures(metrics.EVENTLOG_WRITE_FAILURES):
        pass
    assert value(metrics.EVENTLOG_WRITE_FAILURES.name, model="custom_logic") == 1.0


def test_calls_from_several_threads_never_overlap(pb_utils):
    published = ModelMetrics(pb_utils, "custom_logic", metrics.CUSTOM_LOGIC)
    errors = []

    def work() -> None:
        try:
            for _ in range(20):
                published.increment(metrics.WEBHOOK_FAILURES)
        except AssertionError as error:  # pragma: no cover - only on a broken lock
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and value(metrics.WEBHOOK_FAILURES.name, model="custom_logic") == 80.0


def test_the_webhook_notifier_reports_each_failed_delivery(tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    log = EventLog(tmp_path / "events.db")
    (event,) = log.record("E-1", "EPS", 7, [(10, 20, 3.5)])
    failures = []
    notifier = WebhookNotifier(
        log, f"http://127.0.0.1:{port}/alerts", timeout=1, on_failure=lambda: failures.append(1)
    )
    assert notifier.deliver(event) is False
    assert failures == [1]

    def broken() -> None:
        raise RuntimeError("hook broke")

    notifier.on_failure = broken
    assert notifier.deliver(log.undelivered()[0]) is False  # the hook's error stays inside


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        (
            'sum by (model) (rate(nv_inference_request_success{model="x"}[5m]))',
            {"nv_inference_request_success"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) "
            "(rate(satwatch_fused_score_bucket[$__rate_interval])))",
            {"satwatch_fused_score_bucket"},
        ),
        (
            "sum(a_total) / on (job) group_left (model) (b:rate5m > 0) and c unless d offset 5m",
            {"a_total", "b:rate5m", "c", "d"},
        ),
        (
            "topk(10, sum by (channel) (increase(satwatch_events_total[$__range])))",
            {"satwatch_events_total"},
        ),
        ("1 - 2.5e3 / Inf", set()),
    ],
)
def test_promql_metric_names(expression, names):
    assert promql_metric_names(expression) == names


def test_the_dashboard_reads_every_satwatch_metric_and_only_known_ones():
    dashboard = json.loads(DASHBOARD.read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used |= promql_metric_names(target["expr"])
    ours = {name for name in used if name.startswith("satwatch_")}
    assert ours == {spec.name for spec in SPECS}
    assert used - ours <= TRITON_METRICS
    assert {"nv_inference_request_success", "nv_inference_queue_duration_us"} <= used
    assert "nv_inference_compute_infer_duration_us" in used
