"""satwatch's own Prometheus metrics, published by the Python models on Triton's metrics port.

Triton's Python backend exports custom metrics (``pb_utils.MetricFamily``; Triton 2.51 has the
kinds ``COUNTER``, ``GAUGE`` and ``HISTOGRAM``) at ``:8002/metrics`` beside Triton's own
``nv_*`` ones. This module holds their names, help texts and label sets (:data:`SPECS`) and
:class:`ModelMetrics`, a thin wrapper the models publish through:

=========================================== ====================== ============================
metric                                      labels                 published by
=========================================== ====================== ============================
``satwatch_events_total``                   channel, subsystem     custom_logic
``satwatch_fused_score_bucket``             channel, le            custom_logic, postprocessing
``satwatch_fused_score_sum`` / ``_count``   channel                custom_logic, postprocessing
``satwatch_eventlog_write_failures_total``  model                  custom_logic
``satwatch_webhook_failures_total``         model                  custom_logic
``satwatch_model_starts_total``             model                  every Python model
=========================================== ====================== ============================

* **Events** are those ``custom_logic`` records as new in the event log (an event that later
  chunks report again, longer, is counted once).
* **The fused score** (``final_result``, one value per time step) is a histogram laid out by
  hand: ``Metric.observe`` takes one value per call, each a round trip to the Triton process
  (about 30 us measured here), so observing every step of a chunk would cost milliseconds.
  Instead a chunk's steps are counted per bucket in one vectorised pass
  (:func:`bucket_counts`) and each cumulative ``le`` bucket, ``_sum`` and ``_count`` is one
  increment: the series Prometheus' own histograms expose, which ``histogram_quantile``
  reads the same way (Triton's exposition says ``counter``, ``_sum`` is a gauge: a fused
  ``ratio`` score can be negative, and a counter cannot go down).
* **Stub restarts**: a stub cannot see its own death, so each model instance counts its own
  start. Triton keeps a custom metric after its stub died, or its model was unloaded, and a
  new instance registering the same labels continues it (checked here: ``kill -9`` of a stub
  and the supervisor's reload took the counter from 1 to 2, an unload and load to 3). So
  ``satwatch_model_starts_total`` above the model's instance count means restarts;
  ``increase(satwatch_model_starts_total[1h])`` counts the last hour's.

Every series a model knows of is created in ``initialize`` (at 0, so ``increase`` sees the
first event); the hot path is one increment per event batch or bucket. When the metrics API
is missing (an older Triton) or fails, the calls log a warning once and do nothing: metrics
never fail a request. Two threads calling one Metric at once crash the whole ``tritonserver``
in 2.51 (checked: a segfault; ``increment`` drops the GIL while it rewrites the Metric's
shared memory), so every call takes one lock (the webhook thread increments too).

Example::

    metrics = ModelMetrics(pb_utils, "custom_logic", [MODEL_STARTS, EVENTS])
    metrics.increment(MODEL_STARTS)                      # ``model`` is filled in
    metrics.increment(EVENTS, 2, channel="E-1", subsystem="EPS")
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType

import numpy as np

LOGGER = logging.getLogger(__name__)

KINDS = ("counter", "gauge")


@dataclass(frozen=True)
class MetricSpec:
    """One metric family: its name, help text, labels and kind (``counter`` or ``gauge``)."""

    name: str
    help: str
    labels: tuple[str, ...]
    kind: str = "counter"


EVENTS = MetricSpec(
    "satwatch_events_total",
    "Anomaly events custom_logic recorded as new in the event log.",
    ("channel", "subsystem"),
)
FUSED_SCORE_BUCKET = MetricSpec(
    "satwatch_fused_score_bucket",
    "Time steps whose fused score (final_result) was at most le (cumulative histogram buckets).",
    ("channel", "le"),
)
FUSED_SCORE_SUM = MetricSpec(
    "satwatch_fused_score_sum",
    "Sum of the fused scores (final_result) of every time step answered.",
    ("channel",),
    kind="gauge",
)
FUSED_SCORE_COUNT = MetricSpec(
    "satwatch_fused_score_count",
    "Time steps answered a fused score (final_result) for (custom_logic or postprocessing).",
    ("channel",),
)
EVENTLOG_WRITE_FAILURES = MetricSpec(
    "satwatch_eventlog_write_failures_total",
    "Writes of reported events to the SQLite event log that failed (the request failed too).",
    ("model",),
)
WEBHOOK_FAILURES = MetricSpec(
    "satwatch_webhook_failures_total",
    "Webhook deliveries of an event that failed (the event stays in the log, retried later).",
    ("model",),
)
MODEL_STARTS = MetricSpec(
    "satwatch_model_starts_total",
    "Model instances started (initialize); above the instance count, the stubs restarted.",
    ("model",),
)

FUSED_SCORE = (FUSED_SCORE_BUCKET, FUSED_SCORE_SUM, FUSED_SCORE_COUNT)
SPECS = (
    EVENTS,
    *FUSED_SCORE,
    EVENTLOG_WRITE_FAILURES,
    WEBHOOK_FAILURES,
    MODEL_STARTS,
)
"""Every metric satwatch publishes."""
PREPROCESSING = (MODEL_STARTS,)
POSTPROCESSING = (MODEL_STARTS, *FUSED_SCORE)
CUSTOM_LOGIC = (MODEL_STARTS, EVENTS, *FUSED_SCORE, EVENTLOG_WRITE_FAILURES, WEBHOOK_FAILURES)
"""What each Python model publishes."""

SCORE_BOUNDS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
"""Upper bounds of the fused-score buckets (``+Inf`` follows). 1 is the ``ratio`` policy's
threshold; the ``dynamic`` policy's scores are training z-scores."""

OTHER_CHANNEL = "other"
"""The ``channel`` label of a channel the model has no calibration for (a bounded label set)."""

# Two threads in one Metric's call crash tritonserver (module doc): one lock per stub process.
_LOCK = threading.Lock()


def le_label(bound: float) -> str:
    """A bucket bound as Triton's own histograms write ``le``: ``0.25``, ``1``, ``+Inf``."""
    return "+Inf" if bound == float("inf") else f"{bound:g}"


def bucket_counts(
    values: np.ndarray, bounds: Iterable[float] = SCORE_BOUNDS
) -> tuple[np.ndarray, float]:
    """Cumulative bucket counts of ``values`` and their sum; NaN and +-Inf are left out.

    Returns:
        ``(counts, total)``: ``counts[i]`` is how many values are ``<= bounds[i]``, and one
        more entry, the ``+Inf`` bucket, counts every finite value; ``total`` is their sum.
    """
    flat = np.asarray(values, np.float64).reshape(-1)
    finite = np.sort(flat[np.isfinite(flat)])
    below = np.searchsorted(finite, np.asarray(tuple(bounds), np.float64), side="right")
    return np.append(below, finite.size).astype(np.int64), float(finite.sum())


def promql_metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (to check a dashboard against a server).

    Label matchers, ``by``/``without``/``on``/``ignoring`` label lists, range selectors,
    strings and Grafana variables (``$__rate_interval``) are left out, and so are functions
    (a name followed by ``(``), keywords and numbers.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if not call and name.lower() not in _PROMQL_WORDS:
            names.add(name)
    return names


_PROMQL_WORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan",
}  # fmt: skip


class ModelMetrics:
    """The metrics one model instance publishes (create it in ``initialize``).

    Args:
        pb_utils: ``triton_python_backend_utils`` (or a stand-in with ``MetricFamily``).
        model: The model's name, the value of every ``model`` label.
        specs: The families this model publishes; each is registered now, and the series of
            those labelled by ``model`` alone are created (at 0).
    """

    def __init__(self, pb_utils: ModuleType, model: str, specs: Iterable[MetricSpec]) -> None:
        self.model = model
        self._families: dict[str, object] = {}
        self._metrics: dict[tuple, object] = {}
        self._warned: set[str] = set()
        self._le = [le_label(b) for b in (*SCORE_BOUNDS, float("inf"))]
        family = getattr(pb_utils, "MetricFamily", None)
        if family is None:
            LOGGER.warning("%s: Triton has no custom metrics API; no satwatch metrics", model)
            return
        for spec in specs:
            if spec.kind not in KINDS:
                raise ValueError(f"{spec.name}: expected kind in {KINDS}, got {spec.kind!r}")
            kind = family.COUNTER if spec.kind == "counter" else family.GAUGE
            made = self._call(
                spec.name, lambda s=spec, k=kind: family(name=s.name, description=s.help, kind=k)
            )
            if made is not None:
                self._families[spec.name] = made
                if set(spec.labels) <= {"model"}:
                    self.prepare(spec)

    @property
    def available(self) -> bool:
        """Whether any family was registered (the metrics API works)."""
        return bool(self._families)

    def _call(self, what: str, function, *args):  # noqa: ANN001, ANN202
        try:
            with _LOCK:
                return function(*args)
        except Exception as error:  # noqa: BLE001  metrics never fail a request
            if what not in self._warned:
                self._warned.add(what)
                LOGGER.warning("%s: metric %s failed (%s); going on", self.model, what, error)
            return None

    def _metric(self, spec: MetricSpec, labels: Mapping[str, str]):  # noqa: ANN202
        if "model" in spec.labels and "model" not in labels:
            labels = {**labels, "model": self.model}
        key = (spec.name, *sorted(labels.items()))
        metric = self._metrics.get(key)
        if metric is None:
            if set(labels) != set(spec.labels):
                raise ValueError(
                    f"{spec.name}: expected labels {sorted(spec.labels)}, got {sorted(labels)}"
                )
            family = self._families.get(spec.name)
            if family is None:
                return None
            metric = self._call(spec.name, lambda: family.Metric(labels=dict(labels)))
            if metric is not None:
                self._metrics[key] = metric
        return metric

    def prepare(self, spec: MetricSpec, **labels: str) -> None:
        """Create one series (at 0) before its first increment."""
        self._metric(spec, labels)

    def increment(self, spec: MetricSpec, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` to one series (``model`` labels are filled in)."""
        metric = self._metric(spec, labels)
        if metric is not None:
            self._call(spec.name, metric.increment, float(value))

    @contextlib.contextmanager
    def failures(self, spec: MetricSpec, **labels: str) -> Iterator[None]:
        """Count an exception leaving the block in ``spec``, then let it go on."""
        try:
            yield
        except Exception:
            self.increment(spec, **labels)
            raise

    def prepare_events(self, channel: str, subsystem: str) -> None:
        """Create one channel's event series (at 0)."""
        self.prepare(EVENTS, channel=channel, subsystem=subsystem)

    def count_events(self, count: int, channel: str, subsystem: str) -> None:
        """Count ``count`` new events of a channel (one increment)."""
        self.increment(EVENTS, count, channel=channel, subsystem=subsystem)

    def prepare_scores(self, channel: str) -> None:
        """Create one channel's fused-score series (at 0)."""
        for le in self._le:
            self.prepare(FUSED_SCORE_BUCKET, channel=channel, le=le)
        self.prepare(FUSED_SCORE_SUM, channel=channel)
        self.prepare(FUSED_SCORE_COUNT, channel=channel)

    def observe_scores(self, values: np.ndarray, channel: str) -> None:
        """Count one chunk's fused scores into the channel's histogram.

        One vectorised pass and one increment per non-empty bucket, plus ``_sum`` and
        ``_count``.
        """
        counts, total = bucket_counts(values)
        if counts[-1] == 0:
            return
        for le, count in zip(self._le, counts.tolist(), strict=True):
            if count:
                self.increment(FUSED_SCORE_BUCKET, count, channel=channel, le=le)
        self.increment(FUSED_SCORE_SUM, total, channel=channel)
        self.increment(FUSED_SCORE_COUNT, counts[-1], channel=channel)
