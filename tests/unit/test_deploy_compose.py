"""docker-compose.yml and deploy/Dockerfile, checked without a Docker engine.

The stack only works when names agree across files: the scrape targets and the worker and feedback
worker services, the mounts and the files in the repo, their environment and Settings, the topics
kafka-init makes and the topics the worker reads. Those are the things checked here.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest
import yaml
from packaging.utils import canonicalize_name

from stream_tagger.settings import Settings
from tests.unit.test_dependencies import locked

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"
ENV_PREFIX = "STREAM_TAGGER_"
#: Compose services running the stream-tagger image, each scraped by Prometheus.
STREAM_TAGGER_SERVICES = ("worker", "feedback-worker")


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def bind_mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path (repo-relative) of each bind mount; named volumes are left out."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (REPO / source).resolve()
    return mounts


def host_file_at(service: dict, container_path: str) -> Path:
    """The repo file a container sees at ``container_path``, through a file or directory bind mount."""
    wanted = PurePosixPath(container_path)
    for target, source in bind_mounts(service).items():
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return source / wanted.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted")


def published_container_ports(service: dict) -> set[int]:
    return {int(str(mapping).rsplit(":", 1)[-1]) for mapping in service.get("ports", [])}


def test_every_mounted_and_built_file_exists(services: dict[str, dict]) -> None:
    for name, service in services.items():
        for source in bind_mounts(service).values():
            assert source.exists(), f"{name} mounts missing {source}"
        if "build" in service:
            context = REPO / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name


def test_images_are_pinned(services: dict[str, dict]) -> None:
    for name, service in services.items():
        image = service.get("image", "")
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned to a version"


def web_port(service: dict) -> int:
    return int(service["environment"].get(f"{ENV_PREFIX}WEB_PORT", Settings().web_port))


def test_prometheus_scrapes_both_services_on_their_web_ports(services: dict[str, dict]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert sorted(target.split(":")[0] for target in targets) == sorted(STREAM_TAGGER_SERVICES)
    for target in targets:
        host, port = target.split(":")
        assert int(port) == web_port(services[host]), target
        assert int(port) in published_container_ports(services[host]), target
        assert re.search(rf"^EXPOSE {port}$", DOCKERFILE.read_text(), re.MULTILINE), target
    published = [str(m).split(":")[0] for name in STREAM_TAGGER_SERVICES for m in services[name]["ports"]]
    assert len(set(published)) == len(published), "two services published on one host port"


def test_prometheus_sees_its_config_and_the_rules_it_loads(services: dict[str, dict]) -> None:
    prometheus = services["prometheus"]
    flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    config_in_container = PurePosixPath(flag.partition("=")[2])
    assert host_file_at(prometheus, str(config_in_container)) == PROMETHEUS_CONFIG.resolve()
    for rule_file in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]:
        assert host_file_at(prometheus, str(config_in_container.parent / rule_file)).is_file()


def test_grafana_gets_the_datasource_and_the_dashboard(services: dict[str, dict]) -> None:
    grafana = services["grafana"]
    assert host_file_at(grafana, "/etc/grafana/provisioning") == GRAFANA_PROVISIONING.resolve()
    (source,) = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", source["url"]).groups()
    assert host in services and int(port) in published_container_ports(services[host])
    (provider,) = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "stream-tagger.yml").read_text())[
        "providers"
    ]
    dashboards = host_file_at(grafana, provider["options"]["path"])
    assert (dashboards / "stream-tagger.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_file_at(grafana, home).is_file()


def test_grafana_has_no_default_credentials_and_no_anonymous_access(services: dict[str, dict]) -> None:
    environment = services["grafana"]["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    # ${VAR:?message}: compose refuses to start while the variable is unset; .env is not committed.
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", environment["GF_SECURITY_ADMIN_PASSWORD"])
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()


def service_settings(service: dict) -> Settings:
    return Settings(**{k.removeprefix(ENV_PREFIX).lower(): v for k, v in service["environment"].items()})


@pytest.mark.parametrize("name", STREAM_TAGGER_SERVICES)
def test_environment_names_real_settings(services: dict[str, dict], name: str) -> None:
    environment = services[name]["environment"]
    fields = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}
    assert set(environment) - fields == set(), "environment variables Settings would silently ignore"
    settings = service_settings(services[name])
    host, port = settings.bootstrap_servers.split(":")
    assert host in services, f"{name}'s bootstrap server is not a compose service"
    assert f"PLAINTEXT://{host}:{port}" in services[host]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert services[name]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_the_feedback_loop_runs_once_in_its_own_service(services: dict[str, dict]) -> None:
    from stream_tagger.cli import app

    worker, feedback = services["worker"], services["feedback-worker"]
    assert not service_settings(worker).feedback_in_worker, "the loop would run twice: feedback counted twice"
    assert (feedback["image"], feedback["build"]) == (worker["image"], worker["build"])
    program, command = feedback["command"]
    assert program == "stream-tagger"
    assert command in {info.name for info in app.registered_commands}
    # Same topics and group stem as the worker: it reads what the worker writes.
    assert service_settings(feedback).consumer_group == service_settings(worker).consumer_group
    # The image's HEALTHCHECK on /healthz holds for both: the feedback worker serves it too.
    assert "healthcheck" not in feedback


def test_kafka_init_creates_exactly_the_worker_topics(services: dict[str, dict]) -> None:
    script = services["kafka-init"]["command"][0]
    loop = re.search(r"for topic in ([^;]+);", script)
    assert loop is not None
    defaults = Settings()
    assert set(loop.group(1).split()) == set(defaults.topics())
    assert f"--partitions {defaults.partitions}" in script
    assert services["worker"]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_dockerfile_runs_the_worker_as_non_root_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    probe = re.search(r"^HEALTHCHECK [^\n]*\n?[^\n]*http://127\.0\.0\.1:(\d+)/healthz", text, re.MULTILINE)
    assert probe, "no HEALTHCHECK on /healthz"
    assert re.search(rf"^EXPOSE {probe.group(1)}$", text, re.MULTILINE), "health check probes another port"
    assert text.rstrip().endswith('CMD ["stream-tagger", "worker"]')
    assert "RUN pip install --no-deps --require-hashes -r requirements/runtime.lock" in text  # locked, hashed
    assert "RUN pip install --no-deps --require-hashes -r requirements/build.lock" in text  # locked build
    assert "RUN pip install --no-deps --no-build-isolation . " in text  # builds the kernels with it ...
    # ... and ships none of it, and nothing the worker runs on.
    (removed,) = re.findall(r"pip uninstall --quiet --yes ([^\n]+)", text)
    assert {canonicalize_name(n) for n in removed.split()} == set(locked("build.lock")) - set(
        locked("runtime.lock")
    )
    assert 'python -P -c "import stream_tagger.kernels.featurise' in text  # ... or the image build fails
    build, served = text.split("\n# Stage 2:")
    assert "gcc" in build and "gcc" not in served  # no compiler where the worker runs
    # The context ignores everything (**) but what its ignore file lets back in with "!".
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in ignore
    let_in = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for source in re.findall(r"^COPY (?!--from=)(.+) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies missing {path}"
            assert any(path.rstrip("/") == kept or path.startswith(kept + "/") for kept in let_in), (
                f"Dockerfile copies {path}, which Dockerfile.dockerignore keeps out of the build context"
            )


def _in_image_context(path: str) -> bool:
    """Whether Dockerfile.dockerignore lets ``path`` into the build context: the last rule that matches
    it or a folder above it decides; ``!`` lets back in, ``**`` is any depth, ``*`` one name's part."""
    inside = True
    for line in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        pattern = rule.removeprefix("!").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = PurePosixPath(path).parts
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            inside = rule.startswith("!")
    return inside


def test_the_image_gets_the_served_model_but_not_its_pickle() -> None:
    version = (REPO / "models" / "current").read_text().strip()
    for served in ("current", f"{version}/model.onnx", f"{version}/pieces.npz", f"{version}/metadata.json"):
        assert _in_image_context(f"models/{served}"), served
    assert _in_image_context("stream_tagger/kernels/featurise.pyx")
    # What the worker never reads stays out: the parity pickle (no scikit-learn in the image to read
    # it), the generated C and any extension built outside the image.
    for left_out in (f"models/{version}/pipeline.joblib", "stream_tagger/kernels/featurise.c", ".venv/x"):
        assert not _in_image_context(left_out), left_out
