"""Observability: a real Prometheus (Debian's ``prometheus``) scraping the served repository.

The built seed repository (:mod:`builders`) is served by the embedded Triton; a Prometheus
started here on a free port scrapes its metrics port every second. Telemetry with a gross
fault streams through ``custom_logic``; then every metric the provisioned Grafana dashboard
(``deploy/observability/grafana/dashboards/satwatch.json``) reads must have a series in
Prometheus, every panel's expression must be valid PromQL, and satwatch's own counters must
have moved: the events of the channel's subsystem and the fused-score histogram. Last, a
``kill -9`` of a backend stub, which ``satwatch serve`` reloads, shows as one more start.

Skipped only when the ``prometheus`` binary is not installed (``.ci/run`` installs it:
``apt-get install --no-install-recommends prometheus``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from satwatch.client.connection import Connection
from satwatch.client.sources import Telemetry, split
from satwatch.client.stream import StreamRun, prepare_target, stream_channels
from satwatch.data import load_dataset
from satwatch.paths import PROJECT_ROOT
from satwatch.pipeline.metrics import SPECS, promql_metric_names
from satwatch.server.supervisor import live_stubs

from .builders import Built, built_repository, served_repository, webhook_server

# The first test may build the shared seed repository (minutes) before the server starts.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DASHBOARD = PROJECT_ROOT / "deploy" / "observability" / "grafana" / "dashboards" / "satwatch.json"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}
"""Values for the Grafana variables of the dashboard's expressions, to run them as PromQL."""
CHANNEL, SUBSYSTEM = "E-1", "EPS"
CHUNK = 320
EVENTS = f'sum(satwatch_events_total{{channel="{CHANNEL}",subsystem="{SUBSYSTEM}"}})'
STEPS = f'sum(satwatch_fused_score_count{{channel="{CHANNEL}"}})'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Prometheus:
    """A running Prometheus and its HTTP API."""

    url: str
    process: subprocess.Popen
    log: Path

    def query(self, expression: str) -> list[dict]:
        """The result of an instant query (asserting Prometheus accepted it)."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
        try:
            with urllib.request.urlopen(address, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # 400: the expression did not parse
            body = json.load(error)
        assert body["status"] == "success", f"{expression}: {body}"
        return body["data"]["result"]

    def value(self, expression: str) -> float:
        """An expression's one value (0 when it has no series)."""
        result = self.query(expression)
        return float(result[0]["value"][1]) if result else 0.0

    def last_scrape(self) -> float:
        """When Prometheus last scraped Triton (Unix seconds; 0 before its first scrape)."""
        # The selector's own sample (an operator in between would give the evaluation time).
        result = self.query('timestamp(up{job="triton"})')
        healthy = result and self.value('up{job="triton"}') == 1
        return float(result[0]["value"][1]) if healthy else 0.0

    def ready(self) -> bool:
        """Whether Prometheus answers queries (it answers 503 while its storage starts)."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError):  # not listening, or 503
            return False

    def wait_for_scrape_after(self, moment: float, timeout: float = 20.0) -> None:
        """Wait until Prometheus has scraped Triton after ``moment`` (Unix seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.ready() and self.last_scrape() > moment:
                return
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"Prometheus never scraped Triton:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data: Path) -> Built:
    return built_repository(tmp_path_factory, shared_data, webhook_server())


@pytest.fixture(scope="module")
def served(triton_factory, built: Built):
    return served_repository(triton_factory, built)


@pytest.fixture(scope="module")
def prometheus(served, tmp_path_factory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin")
    if binary is None:
        pytest.skip(
            "Debian's prometheus is not installed: "
            "apt-get install -y --no-install-recommends prometheus (.ci/run does)"
        )
    folder = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlsplit(served.metrics_url).netloc
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "triton", "static_configs": [{"targets": [target]}]}],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = _free_port()
    log = folder / "prometheus.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        running.wait_for_scrape_after(0.0, timeout=30.0)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class Streamed:
    run: StreamRun
    events_before: float
    events_after: float
    steps_before: float
    steps_after: float


@pytest.fixture(scope="module")
def streamed(prometheus: Prometheus, served, shared_data: Path) -> Streamed:
    """A faulty stretch of E-1 streamed through custom_logic between two scrapes."""
    events_before, steps_before = prometheus.value(EVENTS), prometheus.value(STEPS)
    raw = load_dataset(shared_data).channel(CHANNEL).test[4800:6400].astype(np.float32).copy()
    raw[300:360, 0] = 3.0  # a gross fault every detector flags
    with Connection("grpc", served.grpc_address, admin_key=served.admin_key) as connection:
        target = prepare_target(connection, "custom_logic", [CHANNEL])
        telemetry = Telemetry(CHANNEL, split(raw, CHUNK), len(raw))
        run = stream_channels(connection, target, [telemetry])[CHANNEL]
    assert run.error is None, run.error
    assert run.events, "the gross fault was not reported"
    prometheus.wait_for_scrape_after(time.time())
    return Streamed(
        run, events_before, prometheus.value(EVENTS), steps_before, prometheus.value(STEPS)
    )


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_metric_the_dashboard_reads_has_a_series(prometheus, streamed) -> None:
    names = set().union(*map(promql_metric_names, dashboard_expressions()))
    assert {spec.name for spec in SPECS} <= names
    missing = sorted(name for name in names if not prometheus.query(name))
    assert missing == [], f"no series in Prometheus for {missing}"


def test_every_dashboard_expression_runs_in_prometheus(prometheus, streamed) -> None:
    for expression in dashboard_expressions():
        for variable, value in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, value)
        prometheus.query(expression)  # asserts Prometheus accepted it


def test_the_events_of_the_channels_subsystem_rose(prometheus, streamed) -> None:
    # New events only: the event log counts each once, however many chunks reported it.
    assert streamed.events_after - streamed.events_before == len(streamed.run.events)
    by_subsystem = prometheus.query("sum by (subsystem) (satwatch_events_total)")
    assert {s["metric"]["subsystem"] for s in by_subsystem} >= {SUBSYSTEM}


def test_the_fused_score_histogram_counted_every_streamed_step(prometheus, streamed) -> None:
    assert streamed.steps_after - streamed.steps_before == streamed.run.steps
    buckets = prometheus.query(f'satwatch_fused_score_bucket{{channel="{CHANNEL}"}}')
    by_le = {float(s["metric"]["le"]): float(s["value"][1]) for s in buckets}
    counts = [by_le[le] for le in sorted(by_le)]
    assert counts == sorted(counts), "buckets are not cumulative"
    assert by_le[float("inf")] == streamed.steps_after
    median = prometheus.value(
        f'histogram_quantile(0.5, sum by (le) (satwatch_fused_score_bucket{{channel="{CHANNEL}"}}))'
    )
    assert np.isfinite(median)


def test_every_python_model_counted_its_start(prometheus, streamed) -> None:
    starts = {
        s["metric"]["model"]: float(s["value"][1])
        for s in prometheus.query("satwatch_model_starts_total")
    }
    # The Python models and the detectors' stubs (ONNX Runtime, TorchScript) alike.
    assert {"preprocessing", "postprocessing", "custom_logic", "SMAP_E-1", "tranad_sat1"} <= set(
        starts
    )
    assert all(count >= 1 for count in starts.values()), starts
    failures = prometheus.query('satwatch_eventlog_write_failures_total{model="custom_logic"}')
    assert [float(s["value"][1]) for s in failures] == [0.0]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False  # 400 while the model reloads


def test_a_stub_killed_and_reloaded_shows_as_one_more_start(prometheus, served, streamed) -> None:
    # Last in the module, and it waits until the shared server's preprocessing (and
    # custom_logic, which calls it) serve again.
    starts = 'sum(satwatch_model_starts_total{model="preprocessing"})'
    before = prometheus.value(starts)
    stubs = live_stubs(served.pid)
    pids = [pid for (model, _, _), pid in stubs.items() if model == "preprocessing"]
    assert pids, f"no backend stub of preprocessing among {sorted(stubs)}"
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    ready = [f"{served.http_url}/v2/models/{m}/ready" for m in ("preprocessing", "custom_logic")]
    while prometheus.value(starts) < before + 1 or not all(map(_ready, ready)):
        assert time.monotonic() < deadline, f"{starts}: {prometheus.value(starts)} (was {before})"
        time.sleep(0.5)
    assert prometheus.value(starts) == before + 1
