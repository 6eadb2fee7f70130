"""One built repository, served once, shared by every integration test module.

It is what ``satwatch build`` makes on the shared data — all 27 seed channels, TranAD, the
Python models and both ensembles — with tiny detectors trained for one epoch, so building it
and starting Triton on it stay cheap. The modules that need it call these helpers from their
own session fixtures and get the same objects: the first caller builds and serves, the others
reuse (a fixture imported into two modules would be set up twice).

* :func:`webhook_server` — a local HTTP server collecting the JSON bodies POSTed to it;
* :func:`built_repository` — the 27 seed channels built with tiny detectors, ``custom_logic``
  posting to the webhook;
* :func:`served_repository` — that repository served by the embedded Triton.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from satwatch.data import SEED_CHANNELS
from satwatch.repository.build import BuildReport, build_repository
from satwatch.repository.config import write_model_configs
from satwatch.repository.seed import custom_logic_config

CHANNELS = list(SEED_CHANNELS)
TINY = {
    "omni": {"hidden": 16, "dense": 16, "flows": 2, "epochs": 1, "stride": 10, "window": 50},
    "tranad": {"epochs": 1, "windows_per_epoch": 2000},
    "predictor": {"hidden": 8, "epochs": 1, "stride": 50},
}

_SHARED: dict[str, Any] = {}
_LOCK = threading.Lock()


@dataclass
class Built:
    artifacts: Path
    repository: Path
    report: BuildReport


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _once(key: str, make: Callable[[], Any]) -> Any:
    with _LOCK:
        if key not in _SHARED:
            _SHARED[key] = make()
        return _SHARED[key]


def webhook_server() -> ThreadingHTTPServer:
    """The session's webhook receiver (a daemon thread; it ends with the test process)."""

    def make() -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
        server.received = []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    return _once("webhook", make)


def built_repository(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path, webhook: ThreadingHTTPServer
) -> Built:
    """The seed repository with tiny detectors, built once per session."""

    def make() -> Built:
        root = tmp_path_factory.mktemp("built")
        report = build_repository(
            root / "artifacts", root / "repository", shared_data, channels=CHANNELS, overrides=TINY
        )
        assert report.problems == []
        url = f"http://127.0.0.1:{webhook.server_address[1]}/alerts"
        write_model_configs(
            root / "repository" / "python" / "custom_logic",
            custom_logic_config(root / "repository", {"webhook_url": url}),
        )
        return Built(root / "artifacts", root / "repository", report)

    return _once("built", make)


def served_repository(triton_factory: Callable[..., Any], built: Built) -> Any:
    """The built repository served by the embedded Triton, started once per session."""
    return _once("served", lambda: triton_factory(built.repository))
