"""deploy/kubernetes/: valid against the Kubernetes API schemas (kubernetes-validate ships them, so this
runs offline), and consistent with the worker: probes on its paths and port, settings that exist,
secrets as files, Services named after the jobs the alert rules expect."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml

from stream_tagger.settings import SECRETS, Settings
from tests.unit.test_deploy_prometheus import DOWN_ALERTS

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
MANIFESTS = sorted(path for path in KUBERNETES.glob("*.yaml") if path.name != "kustomization.yaml")
ENV_PREFIX = "STREAM_TAGGER_"
#: The container command of each Deployment, and the Prometheus job its Service stands for.
DEPLOYMENTS = {
    "stream-tagger-worker": (["stream-tagger", "worker"], DOWN_ALERTS["StreamTaggerDown"]),
    "stream-tagger-feedback-worker": (
        ["stream-tagger", "feedback-worker"],
        DOWN_ALERTS["StreamTaggerFeedbackDown"],
    ),
}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for path in MANIFESTS for doc in documents(path)}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_resource_is_valid_for_the_kubernetes_api(path: Path) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_validation_would_catch_a_misspelt_field(resources: dict[tuple[str, str], dict]) -> None:
    deployment = resources[("Deployment", "stream-tagger-worker")]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_the_kustomization_applies_every_manifest() -> None:
    (kustomization,) = documents(KUBERNETES / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]


def settings_map(resources: dict[tuple[str, str], dict]) -> dict[str, str]:
    return resources[("ConfigMap", "stream-tagger-settings")]["data"]


def test_the_config_map_holds_real_settings_and_no_secret(resources: dict[tuple[str, str], dict]) -> None:
    data = settings_map(resources)
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert set(data) - fields == set(), "variables the worker would refuse at start"
    assert not {f"{ENV_PREFIX}{name.upper()}" for name in SECRETS} & set(data), "a secret in a ConfigMap"
    assert data[f"{ENV_PREFIX}FEEDBACK_IN_WORKER"] == "false", "the loop would run in every worker too"


def containers(deployment: dict) -> list[dict]:
    return deployment["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_each_deployment_probes_health_and_readiness_on_the_web_port(
    resources: dict[tuple[str, str], dict], name: str
) -> None:
    (container,) = containers(resources[("Deployment", name)])
    assert container["args"] == DEPLOYMENTS[name][0]
    assert {"configMapRef": {"name": "stream-tagger-settings"}} in container["envFrom"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == int(settings_map(resources)[f"{ENV_PREFIX}WEB_PORT"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert "startupProbe" not in container  # /healthz answers from the first second
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_each_deployment_runs_unprivileged(resources: dict[tuple[str, str], dict], name: str) -> None:
    pod = resources[("Deployment", name)]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert "/tmp" in mounts, "Faust's data directory needs a writable temporary directory"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_credentials_are_files_from_the_secret(resources: dict[tuple[str, str], dict], name: str) -> None:
    pod = resources[("Deployment", name)]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert all("valueFrom" not in var for var in container.get("env", [])), "a secret in the environment"
    secret_volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    mounted = {
        PurePosixPath(m["mountPath"]): secret_volumes[m["name"]]
        for m in container["volumeMounts"]
        if m["name"] in secret_volumes
    }
    files = [value for key, value in settings_map(resources).items() if key.endswith("_FILE")]
    assert files, "no setting reads its secret from a file"
    for file in map(PurePosixPath, files):
        secret = mounted[file.parent]
        assert file.name in resources[("Secret", secret)]["stringData"], file


def test_every_deployment_has_a_disruption_budget_and_a_metrics_service(
    resources: dict[tuple[str, str], dict],
) -> None:
    budgets = [doc for (kind, _), doc in resources.items() if kind == "PodDisruptionBudget"]
    services = {name: doc for (kind, name), doc in resources.items() if kind == "Service"}
    for name, (_command, job) in DEPLOYMENTS.items():
        deployment = resources[("Deployment", name)]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()], name
        service = services[job]  # the job name the down alert expects: a ServiceMonitor's default
        assert service["spec"]["selector"].items() <= labels.items()
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == "http"
        assert service["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        assert int(service["metadata"]["annotations"]["prometheus.io/port"]) == port["port"]
