"""The production docker compose file: it parses and matches the checkout and the defaults.

No Docker engine runs here, so the structure is what can be checked.
"""

from __future__ import annotations

import re

import pytest
import yaml

from satwatch.paths import PROJECT_ROOT
from satwatch.server.config import BACKEND_FOLDERS
from satwatch.server.embedded import ServerPorts

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def triton() -> dict:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert list(services) == ["triton"]
    return services["triton"]


def test_image_is_a_current_triton_release(triton):
    dockerfile = PROJECT_ROOT / triton["build"]["context"] / triton["build"]["dockerfile"]
    base = re.search(r"^FROM (\S+)", dockerfile.read_text(), re.MULTILINE).group(1)
    match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d+)\.(\d+)-py3", base)
    assert match, base
    assert (int(match[1]), int(match[2])) >= (24, 10)


def test_every_backend_folder_is_its_own_model_repository_and_exists(triton):
    repositories = [
        arg.split("=", 1)[1] for arg in triton["command"] if arg.startswith("--model-repository=")
    ]
    assert repositories == [f"/models/{folder}" for folder in BACKEND_FOLDERS]
    mounts = dict(volume.split(":")[:2] for volume in triton["volumes"])
    for source in mounts:
        assert (PROJECT_ROOT / source).is_dir(), source
    (source,) = [s for s, t in mounts.items() if t == "/models"]
    for folder in BACKEND_FOLDERS:
        assert (PROJECT_ROOT / source / folder).is_dir(), folder


def test_ports_match_the_embedded_defaults(triton):
    defaults = ServerPorts()
    published = sorted(tuple(map(int, port.split(":"))) for port in triton["ports"])
    assert published == [(p, p) for p in (defaults.http, defaults.grpc, defaults.metrics)]


def test_gpu_is_reserved(triton):
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_healthcheck_asks_readiness(triton):
    assert any("/v2/health/ready" in part for part in triton["healthcheck"]["test"])


def test_admin_apis_are_behind_a_key(triton):
    flags = " ".join(triton["command"])
    assert "--http-restricted-api=model-repository,shared-memory:admin-key=" in flags
    assert "--grpc-restricted-protocol=model-repository,shared-memory:admin-key=" in flags
