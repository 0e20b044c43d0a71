"""Every Kubernetes variant renders with `kubectl kustomize` and every object validates offline
(core objects against Kubernetes' own schemas, custom resources against deploy/schemas/), and
the rendered manifests do what docs/deploy.md says. No cluster is started."""

from __future__ import annotations

import copy
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml
from k8s_manifests import (
    K8S_DIR,
    VARIANTS,
    Manifest,
    crd_schema,
    render,
    validate,
)
from prometheus_client.core import CounterMetricFamily

from app.metrics import Metrics

ADAPTER_VALUES = K8S_DIR / "prometheus-adapter" / "values.yaml"
DRAIN_S = 30 + 5  # VITSERVE_REQUEST_TIMEOUT_S + uvicorn's 5 s (app/__main__.py)


def by_kind(manifests: list[Manifest]) -> dict[str, list[Manifest]]:
    kinds: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        kinds.setdefault(manifest["kind"], []).append(manifest)
    return kinds


def only(manifests: list[Manifest], kind: str) -> Manifest:
    (manifest,) = by_kind(manifests)[kind]
    return manifest


def env_of(container: Manifest) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def exported_metrics() -> set[str]:
    """The names of the series the service exports (a counter's with its `_total`)."""
    names = set()
    for family in Metrics().registry.collect():
        counter = isinstance(family, CounterMetricFamily) or family.type == "counter"
        names.add(f"{family.name}_total" if counter else family.name)
    return names


def metric_in(query: str) -> str:
    match = re.search(r"(vitserve_[a-z_]+)", query)
    assert match, query
    return match.group(1)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {variant.name: render(variant) for variant in VARIANTS}


def test_the_variants(rendered) -> None:
    assert set(rendered) == {"cpu", "gpu", "gpu-keda", "cpu-model-image", "kserve"}


@pytest.mark.parametrize("variant", [variant.name for variant in VARIANTS])
def test_every_object_validates(rendered, variant: str) -> None:
    assert rendered[variant]
    for manifest in rendered[variant]:
        validate(manifest)


def test_validation_rejects_mistakes(rendered) -> None:
    """The validators are not lenient: a misspelt field or a wrong type fails."""
    deployment = copy.deepcopy(only(rendered["cpu"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = copy.deepcopy(only(rendered["gpu-keda"], "ScaledObject"))
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 32  # the CRD wants strings
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    monitor = copy.deepcopy(only(rendered["cpu"], "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)
    service = copy.deepcopy(only(rendered["kserve"], "InferenceService"))
    service["spec"]["predictor"]["model"]["protocolVersion"] = "v3"
    with pytest.raises(jsonschema.ValidationError):
        validate(service)
    runtime = copy.deepcopy(only(rendered["kserve"], "ServingRuntime"))
    runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(runtime)


@pytest.mark.parametrize("variant", ["cpu", "gpu", "gpu-keda", "cpu-model-image"])
def test_deployment_probes_drain_and_hardening(rendered, variant: str) -> None:
    pod = only(rendered[variant], "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # warm-up
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + DRAIN_S
    assert env_of(container)["VITSERVE_REQUEST_TIMEOUT_S"] == str(DRAIN_S - 5)

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    hardened = container["securityContext"]
    assert hardened["readOnlyRootFilesystem"] is True
    assert hardened["allowPrivilegeEscalation"] is False
    assert hardened["capabilities"]["drop"] == ["ALL"]
    assert (
        container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"]
    )

    env = env_of(container)
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == env["VITSERVE_MODEL_REPOSITORY"]
    assert mounts["models"]["readOnly"] is True
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": int(env["VITSERVE_PORT"]), "grpc": int(env["VITSERVE_GRPC_PORT"])}

    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    assert gpus == ("1" if variant.startswith("gpu") else None)
    assert env["VITSERVE_PROVIDERS"] == ("cuda" if variant.startswith("gpu") else "cpu")


def test_models_from_a_pvc_or_an_image(rendered) -> None:
    for variant, source in (("cpu", "persistentVolumeClaim"), ("cpu-model-image", "emptyDir")):
        pod = only(rendered[variant], "Deployment")["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert set(volumes["models"]) == {"name", source}
    kinds = by_kind(rendered["cpu-model-image"])
    assert "PersistentVolumeClaim" not in kinds
    (copy_models,) = only(rendered["cpu-model-image"], "Deployment")["spec"]["template"]["spec"][
        "initContainers"
    ]
    assert copy_models["volumeMounts"][0]["name"] == "models"


@pytest.mark.parametrize("variant", ["cpu", "gpu", "gpu-keda"])
def test_services_pdb_and_monitor_select_the_pods(rendered, variant: str) -> None:
    manifests = rendered[variant]
    pod_labels = only(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    services = {service["metadata"]["name"]: service for service in by_kind(manifests)["Service"]}
    assert set(services) == {"vitserve", "vitserve-grpc"}
    for service in services.values():
        assert service["spec"]["selector"].items() <= pod_labels.items()
    assert services["vitserve-grpc"]["spec"]["clusterIP"] == "None"
    grpc_port = services["vitserve-grpc"]["spec"]["ports"][0]
    assert (grpc_port["targetPort"], grpc_port["appProtocol"]) == ("grpc", "kubernetes.io/h2c")

    pdb = only(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    monitor = only(manifests, "ServiceMonitor")
    selected = [
        name
        for name, service in services.items()
        if monitor["spec"]["selector"]["matchLabels"].items()
        <= service["metadata"]["labels"].items()
    ]
    assert selected == ["vitserve"]
    assert monitor["spec"]["endpoints"][0]["port"] == "http"


def test_autoscaling_uses_the_services_metrics_through_the_adapter(rendered) -> None:
    exported = exported_metrics()
    rules = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    served = {}
    for rule in rules:
        assert metric_in(rule["seriesQuery"]) in exported, rule["seriesQuery"]
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}  # per pod
        served[rule["name"]["as"]] = rule

    for variant in ("cpu", "gpu"):
        kinds = by_kind(rendered[variant])
        assert "ScaledObject" not in kinds
        (hpa,) = kinds["HorizontalPodAutoscaler"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == "vitserve"
        for metric in hpa["spec"]["metrics"]:
            assert metric["type"] == "Pods"  # never CPU utilisation
            assert metric["pods"]["metric"]["name"] in served

    kinds = by_kind(rendered["gpu-keda"])
    assert "HorizontalPodAutoscaler" not in kinds
    (scaled,) = kinds["ScaledObject"]
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "prometheus"
        assert trigger["metricType"] == "AverageValue"  # per pod
        assert metric_in(trigger["metadata"]["query"]) in exported


def test_kserve_inference_service(rendered) -> None:
    manifests = rendered["kserve"]
    service = only(manifests, "InferenceService")
    runtime = only(manifests, "ServingRuntime")
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    }
    assert "v2" in runtime["spec"]["protocolVersions"]

    (container,) = runtime["spec"]["containers"]
    env = env_of(container)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert env["VITSERVE_PORT"] == "8080" == str(ports["http1"])
    assert str(ports["h2c"]) == env["VITSERVE_GRPC_PORT"]
    assert env["VITSERVE_MODEL_REPOSITORY"] == "/mnt/models"  # KServe's storage initializer
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    scaled = only(manifests, "ScaledObject")
    annotations = service["metadata"]["annotations"]
    assert annotations["serving.kserve.io/autoscalerClass"] == "external"
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"{service['metadata']['name']}-predictor"


def test_crd_schemas_name_their_source() -> None:
    for name in ("servicemonitor", "scaledobject", "inferenceservice", "servingruntime"):
        assert re.search(r"v\d+\.\d+", crd_schema(name)["$comment"]), name
