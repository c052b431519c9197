"""One Apache Kafka version: the broker the tests run on (deploy/kafka/pom.xml) is the one
docker-compose.yml deploys."""

from __future__ import annotations

from pathlib import Path

import yaml

from stream_tagger.kafka.local_cluster import kafka_version

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_compose_runs_the_kafka_version_the_tests_run_on() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    images = {
        name: service["image"]
        for name, service in services.items()
        if service.get("image", "").startswith("apache/kafka:")
    }
    assert {"kafka", "kafka-init"} <= set(images)
    assert set(images.values()) == {f"apache/kafka:{kafka_version()}"}, images
