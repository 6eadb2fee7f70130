"""The Kubernetes manifests of deploy/k8s: they render, validate, and say what compose says.

``kubectl kustomize`` renders each kustomization offline. Every rendered document of a built-in
kind is validated with ``kubernetes-validate`` against the bundled Kubernetes schemas (strict:
an unknown or misspelt field fails). KServe's ``ServingRuntime`` and ``InferenceService`` are
custom resources with no schema there, so their structure (apiVersion, kind, the fields KServe
needs) is checked by hand. docker-compose.yml and the Dockerfile are read and compared, so the
manifests cannot drift from the production command line, ports, user or image.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml

from satwatch.paths import PROJECT_ROOT
from satwatch.pipeline.configs import EVENT_LOG_VARIABLE

K8S = PROJECT_ROOT / "deploy" / "k8s"
KSERVE = K8S / "kserve"
COMPOSE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
KUBERNETES_VERSIONS = ("1.29", "1.37")
"""The oldest Kubernetes the manifests target and the newest the validator bundles."""
CUSTOM_KINDS = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("serving.kserve.io/v1beta1", "InferenceService"),
}
"""Custom resources (KServe's): no built-in schema, checked structurally below."""
COMPOSE_ADMIN_KEY = re.compile(r"\$\{SATWATCH_ADMIN_KEY(?::?[-?][^}]*)?\}")
KUBERNETES_ADMIN_KEY = "$(SATWATCH_ADMIN_KEY)"
"""How a container's args name the env var (Kubernetes substitutes ``$(VAR)``)."""
COMPOSE_REPOSITORY = "/models"
KSERVE_REPOSITORY = "/mnt/models"
"""Where KServe's storage initializer puts the storageUri's content."""
WRITABLE = {"/var/lib/satwatch", "/tmp", "/dev/shm"}
"""Triton's only writable mounts: custom_logic's event log, Triton's scratch, shared memory."""


def render(folder: Path) -> list[dict]:
    """The documents ``kubectl kustomize folder`` renders."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian: apt-get install kubectl)")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(documents: list[dict], kind: str) -> dict:
    (found,) = [doc for doc in documents if doc["kind"] == kind]
    return found


def container(pod: dict, name: str) -> dict:
    (found,) = [c for c in pod["containers"] if c["name"] == name]
    return found


def compose_service() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]["triton"]


def compose_args(repository: str) -> list[str]:
    """compose's command with the admin key as a container env var and ``repository`` paths."""
    args = []
    for arg in compose_service()["command"]:
        arg = COMPOSE_ADMIN_KEY.sub(KUBERNETES_ADMIN_KEY, arg)
        assert "${" not in arg, f"a compose variable the manifests do not know: {arg}"
        if arg.startswith(f"--model-repository={COMPOSE_REPOSITORY}/"):
            arg = arg.replace(f"={COMPOSE_REPOSITORY}/", f"={repository}/", 1)
        args.append(arg)
    return args


def dockerfile_base_release() -> str:
    base = re.search(r"^FROM (\S+)", DOCKERFILE.read_text(), re.MULTILINE).group(1)
    match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d+\.\d+)-py3", base)
    assert match, base
    return match[1]


def dockerfile_uid() -> int:
    return int(re.search(r"^ARG SATWATCH_UID=(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)[1])


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return render(K8S)


@pytest.fixture(scope="module")
def kserve() -> list[dict]:
    return render(KSERVE)


@pytest.fixture(scope="module")
def pod(manifests) -> dict:
    return one(manifests, "Deployment")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def triton(pod) -> dict:
    return container(pod, "triton")


# --- schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("folder", [K8S, KSERVE], ids=["k8s", "kserve"])
def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(folder, version):
    custom = set()
    for document in render(folder):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.add((document["apiVersion"], document["kind"]))
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{document['kind']}/{document['metadata']['name']}: {path}: {error}")
    # Only KServe's custom resources go unvalidated; a built-in kind never does.
    assert custom <= CUSTOM_KINDS, custom


def test_the_validation_refuses_a_misspelt_field(manifests):
    deployment = copy.deepcopy(one(manifests, "Deployment"))
    pod = deployment["spec"]["template"]["spec"]
    pod["containers"][0]["readinesProbe"] = pod["containers"][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_kserve_custom_resources_have_what_kserve_needs(kserve):
    assert {(doc["apiVersion"], doc["kind"]) for doc in kserve} == CUSTOM_KINDS
    runtime, service = one(kserve, "ServingRuntime"), one(kserve, "InferenceService")
    for document in (runtime, service):
        assert document["metadata"]["name"] and document["metadata"]["namespace"] == "satwatch"
    assert {"name": "triton", "version": "2", "autoSelect": False} in runtime["spec"][
        "supportedModelFormats"
    ]
    (server,) = runtime["spec"]["containers"]
    assert server["name"] == "kserve-container"  # the name KServe merges the predictor into
    assert server["image"] == compose_service()["image"]
    annotations = service["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
    # The repository stays read-only: custom_logic's event log goes to the scratch volume.
    assert "storage.kserve.io/readonly" not in annotations
    (log,) = [e["value"] for e in server["env"] if e["name"] == EVENT_LOG_VARIABLE]
    assert any(log.startswith(m["mountPath"] + "/") for m in server["volumeMounts"]), log
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert re.fullmatch(r"(s3|gs|https|pvc)://\S+", model["storageUri"]), model["storageUri"]
    assert int(model["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert service["spec"]["predictor"]["securityContext"]["runAsNonRoot"] is True


def test_the_kserve_runtime_runs_composes_command_line_on_kserves_ports(kserve):
    (server,) = one(kserve, "ServingRuntime")["spec"]["containers"]
    expected = compose_args(KSERVE_REPOSITORY)
    assert server["args"][: len(expected)] == expected
    added = [arg.split("=", 1)[0] for arg in server["args"][len(expected) :]]
    assert added == ["--http-port", "--grpc-port", "--metrics-port"]
    probes = [server[p]["httpGet"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert [p["path"] for p in probes] == ["/v2/health/ready"] * 2 + ["/v2/health/live"]
    assert {p["port"] for p in probes} == {8080} == {server["ports"][0]["containerPort"]}
    assert "--http-port=8080" in server["args"]
    assert server["securityContext"]["allowPrivilegeEscalation"] is False


# --- the Deployment against docker-compose.yml and the Dockerfile ---------------------------


def test_the_container_args_are_docker_composes_command(triton):
    mounts = {m["name"]: m["mountPath"] for m in triton["volumeMounts"]}
    assert mounts["model-repository"] == COMPOSE_REPOSITORY
    assert triton["args"] == compose_args(mounts["model-repository"])


def test_the_admin_key_comes_from_a_secret(triton):
    (variable,) = [e for e in triton["env"] if e["name"] == "SATWATCH_ADMIN_KEY"]
    reference = variable["valueFrom"]["secretKeyRef"]
    assert reference["name"] and reference["key"] and not reference.get("optional")
    assert sum(KUBERNETES_ADMIN_KEY in arg for arg in triton["args"]) == 2  # HTTP and gRPC


def test_the_image_is_composes_built_from_the_same_triton_release(triton):
    image = compose_service()["image"]
    assert triton["image"] == image
    assert image.rsplit(":", 1)[1] == dockerfile_base_release()


def test_probes_ask_tritons_health_endpoints_on_the_port_the_service_names_http(manifests, triton):
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    paths = {
        probe: (triton[probe]["httpGet"]["path"], triton[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert paths == {
        "startupProbe": ("/v2/health/ready", "http"),
        "readinessProbe": ("/v2/health/ready", "http"),
        "livenessProbe": ("/v2/health/live", "http"),
    }
    # Model loading takes minutes on a GPU host: the startup probe waits at least 5.
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    service = one(manifests, "Service")["spec"]
    assert service["selector"].items() <= (
        one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    targets = {p["name"]: (p["port"], ports[p["targetPort"]]) for p in service["ports"]}
    assert targets == {name: (port, port) for name, port in ports.items()}
    # The container ports compose publishes.
    published = {int(p.rsplit(":", 1)[1]) for p in compose_service()["ports"]}
    assert published == set(ports.values())


def test_every_container_runs_as_the_images_user_with_nothing_to_escalate(pod):
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == context["runAsGroup"] == dockerfile_uid()
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    for each in pod["initContainers"] + pod["containers"]:
        security = each["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, each["name"]
        assert security["capabilities"]["drop"] == ["ALL"], each["name"]
        assert security["readOnlyRootFilesystem"] is True, each["name"]
        assert security.get("runAsUser", context["runAsUser"]) != 0, each["name"]


def test_the_model_repository_is_read_only_and_only_scratch_is_writable(pod, triton):
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = set()
    for mount in triton["volumeMounts"]:
        if mount["mountPath"] == COMPOSE_REPOSITORY:
            assert mount.get("readOnly") is True
        elif not mount.get("readOnly"):
            writable.add(mount["mountPath"])
    assert writable == WRITABLE
    # custom_logic's event log is on one of them, not on the read-only repository.
    (log,) = [e["value"] for e in triton["env"] if e["name"] == EVENT_LOG_VARIABLE]
    assert PurePosixPath(log).parent.as_posix() == "/var/lib/satwatch"
    shm = next(m["name"] for m in triton["volumeMounts"] if m["mountPath"] == "/dev/shm")
    assert volumes[shm]["emptyDir"]["medium"] == "Memory"


def test_the_init_container_fills_the_volumes_triton_mounts(pod, triton):
    (init,) = pod["initContainers"]
    filled = {(m["name"], m["mountPath"]) for m in init["volumeMounts"] if not m.get("readOnly")}
    served = {
        (m["name"], m["mountPath"])
        for m in triton["volumeMounts"]
        if m["mountPath"].startswith(COMPOSE_REPOSITORY)
    }
    assert filled == served
    assert init["command"][-1].rstrip("/") == COMPOSE_REPOSITORY


def test_each_replica_takes_one_gpu(triton):
    assert int(triton["resources"]["limits"]["nvidia.com/gpu"]) == 1


# --- autoscaling --------------------------------------------------------------------------


def test_the_hpa_scales_the_deployment_on_the_metric_the_adapter_rule_makes(manifests):
    deployment, hpa = one(manifests, "Deployment"), one(manifests, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"

    adapter = one(manifests, "ConfigMap")
    (rule,) = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert re.fullmatch(rule["name"]["matches"], "nv_inference_queue_duration_us")
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    for counter in ("nv_inference_queue_duration_us", "nv_inference_request_success"):
        assert f"{counter}{{<<.LabelMatchers>>}}" in rule["metricsQuery"]
    # The rule reads the series of the namespace the pods run in.
    namespace = re.search(r'namespace="([^"]+)"', rule["seriesQuery"])[1]
    assert namespace == deployment["metadata"]["namespace"]


def test_metrics_are_scraped_from_the_metrics_port(manifests, triton):
    annotations = one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
