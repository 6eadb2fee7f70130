"""The production docker compose file and image: they parse and match the checkout and the
defaults, publish on loopback unless told otherwise, and run as a non-root user.

No Docker engine runs here, so the structure is what can be checked.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

import pytest
import yaml

from satwatch.paths import PROJECT_ROOT
from satwatch.server.config import BACKEND_FOLDERS
from satwatch.server.embedded import ServerPorts

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
# Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}.
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?)([-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """``text`` with compose's ``${...}`` variables resolved from ``env`` as compose does."""

    def resolve(match: re.Match) -> str:
        name, colon, kind, word = match.groups()
        value = env.get(name)
        unset = value is None or (colon == ":" and value == "")
        if not unset or kind is None:
            return value or ""
        if kind == "?":
            raise KeyError(f"{name}: {word}")
        return word

    return VARIABLE.sub(resolve, text)


def published(ports: list[str], env: dict[str, str]) -> list[tuple[str, int, int]]:
    """``(host address, host port, container port)`` of each ``ports`` entry."""
    rows = []
    for port in ports:
        address, host, container = interpolate(port, env).rsplit(":", 2)
        rows.append((address, int(host), int(container)))
    return rows


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments out."""
    rows, pending = [], ""
    for line in dockerfile.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        rows.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return rows


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


@pytest.fixture(scope="module")
def triton(services) -> dict:
    assert list(services) == ["triton", "prometheus", "grafana"]
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
        if source.startswith(("./", "/")):  # a bind mount, not a named volume
            assert (PROJECT_ROOT / source).is_dir(), source
    (source,) = [s for s, t in mounts.items() if t == "/models"]
    for folder in BACKEND_FOLDERS:
        assert (PROJECT_ROOT / source / folder).is_dir(), folder


def test_ports_match_the_embedded_defaults(triton):
    defaults = ServerPorts()
    ports = sorted((host, container) for _, host, container in published(triton["ports"], {}))
    assert ports == [(p, p) for p in (defaults.http, defaults.grpc, defaults.metrics)]


def test_ports_are_published_on_loopback_unless_told_otherwise(triton):
    assert {address for address, _, _ in published(triton["ports"], {})} == {"127.0.0.1"}
    assert {address for address, _, _ in published(triton["ports"], {"SATWATCH_BIND": ""})} == {
        "127.0.0.1"
    }
    chosen = published(triton["ports"], {"SATWATCH_BIND": "0.0.0.0"})
    assert {address for address, _, _ in chosen} == {"0.0.0.0"}
    # The file says why, beside the ports.
    assert "no authentication" in COMPOSE.read_text()


def test_the_admin_key_is_required_to_start(triton):
    flags = [arg for arg in triton["command"] if "admin-key=" in arg]
    with pytest.raises(KeyError, match="SATWATCH_ADMIN_KEY"):
        interpolate(flags[0], {})
    assert interpolate(flags[0], {"SATWATCH_ADMIN_KEY": "k"}).endswith("admin-key=k")


def test_gpu_is_reserved(triton):
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_healthcheck_asks_readiness(triton):
    assert any("/v2/health/ready" in part for part in triton["healthcheck"]["test"])


def test_admin_apis_are_behind_a_key(triton):
    flags = " ".join(triton["command"])
    assert "--http-restricted-api=model-repository,shared-memory:admin-key=" in flags
    assert "--grpc-restricted-protocol=model-repository,shared-memory:admin-key=" in flags


@pytest.fixture(scope="module")
def dockerfile(triton) -> list[tuple[str, str]]:
    path = PROJECT_ROOT / triton["build"]["context"] / triton["build"]["dockerfile"]
    return instructions(path.read_text())


def test_image_runs_as_a_user_it_creates_not_root(dockerfile, triton):
    users = [i for i, (keyword, _) in enumerate(dockerfile) if keyword == "USER"]
    assert users, "the image never leaves root"
    user = dockerfile[users[-1]][1]
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    created = [
        i
        for i, (keyword, arguments) in enumerate(dockerfile)
        if keyword == "RUN" and "useradd" in arguments and arguments.split()[-1] == user
    ]
    assert created and created[0] < users[-1]
    # Nothing after the last USER needs root, and compose does not put root back.
    assert all(keyword != "RUN" for keyword, _ in dockerfile[users[-1] :])
    assert triton.get("user") in (None, user)


def test_packages_are_installed_as_root_before_the_switch(dockerfile):
    first_user = next(i for i, (keyword, _) in enumerate(dockerfile) if keyword == "USER")
    installs = [
        i for i, (keyword, arguments) in enumerate(dockerfile) if "pip install" in arguments
    ]
    assert installs and max(installs) < first_user


def test_model_repository_is_mounted_read_only_at_the_images_workdir(dockerfile, triton):
    volumes = [volume.split(":") for volume in triton["volumes"]]
    assert [mode for _, target, *mode in volumes if target == "/models"] == [["ro"]]
    workdirs = [arguments for keyword, arguments in dockerfile if keyword == "WORKDIR"]
    assert workdirs[-1] == "/models"


def test_the_event_log_lives_on_a_writable_volume_the_image_user_owns(dockerfile, triton):
    # SQLite cannot open its file on the read-only model volume: custom_logic would not load.
    from satwatch.pipeline.configs import EVENT_LOG_VARIABLE

    log = PurePosixPath(triton["environment"][EVENT_LOG_VARIABLE])
    volumes = [volume.split(":") for volume in triton["volumes"]]
    ((source, target),) = [(s, t) for s, t, *_ in volumes if log.is_relative_to(t)]
    assert target != "/models" and source in yaml.safe_load(COMPOSE.read_text())["volumes"]
    runs = " ".join(arguments for keyword, arguments in dockerfile if keyword == "RUN")
    assert f"-o satwatch -g satwatch {target}" in runs


def bind_mounts(service: dict) -> dict[str, tuple[str, list[str]]]:
    """``{container path: (host path, options)}`` of a service's bind mounts."""
    mounts = [volume.split(":") for volume in service["volumes"]]
    return {target: (source, options) for source, target, *options in mounts if "/" in source}


def test_prometheus_and_grafana_start_only_with_the_observability_profile(services, triton):
    assert "profiles" not in triton
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
        assert {address for address, _, _ in published(services[name]["ports"], {})} == {
            "127.0.0.1"
        }


def test_prometheus_reads_its_config_read_only_and_scrapes_tritons_metrics_port(services, triton):
    prometheus = services["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"])
    source, options = bind_mounts(prometheus)[flags["--config.file"]]
    assert options == ["ro"]
    config = yaml.safe_load((PROJECT_ROOT / source).read_text())
    targets = [
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    metrics_port = ServerPorts().metrics
    assert targets == [f"triton:{metrics_port}"]
    assert metrics_port in [container for _, _, container in published(triton["ports"], {})]


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard(services):
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    source, options = mounts["/etc/grafana/provisioning"]
    assert options == ["ro"]
    provisioning = PROJECT_ROOT / source
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090" and datasource["uid"] == "prometheus"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "satwatch.yml").read_text())[
        "providers"
    ]
    dashboards, options = mounts[provider["options"]["path"]]
    assert options == ["ro"]
    dashboard = json.loads((PROJECT_ROOT / dashboards / "satwatch.json").read_text())
    targets = [t for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert targets and {t["datasource"]["uid"] for t in targets} == {datasource["uid"]}


def _module_imports(path) -> set[str]:  # noqa: ANN001
    """Modules a file imports when it loads (module level; a function's own imports wait)."""
    import ast  # noqa: PLC0415

    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _loaded_third_party(entry) -> set[str]:  # noqa: ANN001
    """Top-level packages outside satwatch and the standard library that ``entry`` loads,
    following satwatch's own modules (and their packages' ``__init__``) as they import."""
    import importlib.util  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    found, seen, pending = set(), set(), [entry]
    while pending:
        for name in _module_imports(pending.pop()):
            top = name.split(".")[0]
            if top != "satwatch":
                if top not in sys.stdlib_module_names and top != "triton_python_backend_utils":
                    found.add(top)
                continue
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                module = ".".join(parts[:depth])
                if module in seen:
                    continue
                seen.add(module)
                try:
                    spec = importlib.util.find_spec(module)
                except (ImportError, AttributeError):  # a name imported from a module
                    continue
                if spec is not None and spec.origin and spec.origin.endswith(".py"):
                    pending.append(Path(spec.origin))
    return found


def test_the_image_installs_what_the_python_models_import(dockerfile):
    from importlib.metadata import packages_distributions  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    installed = set()
    for keyword, arguments in dockerfile:
        for command in arguments.split("&&"):
            if keyword == "RUN" and "pip install" in command:
                words = [w.strip("\"'") for w in command.split() if not w.startswith("-")]
                installed |= {re.split(r"[\[<>=]", w)[0].lower() for w in words[2:]}
    distributions = packages_distributions()
    models = sorted((PROJECT_ROOT / "triton-repository" / "python").glob("*/1/model.py"))
    assert models
    for model in models:
        for package in _loaded_third_party(Path(model)):
            names = {d.lower() for d in distributions.get(package, [package])}
            assert names & installed, f"{model.parent.parent.name} imports {package}: {names}"
