"""Fixtures shared by all tests: the Apache Kafka the integration tests run on, and per-test settings.

The integration tests run on real Apache Kafka (KRaft), started from the jars ``./scripts/bootstrap.sh``
installs (``stream_tagger.kafka.local_cluster``): one broker for the whole run, shared through
``bootstrap_servers``. Set ``STREAM_TAGGER_TEST_BOOTSTRAP=host:port`` to run them against an existing
cluster instead. Tests that stop, kill or restart brokers start their own (``new_kafka``,
``kafka_cluster``) whatever that variable says. The demo's test keeps the embedded Tansu broker that
``stream-tagger demo`` itself starts.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream_tagger.kafka.local_cluster import KafkaNotInstalled, LocalKafka
from stream_tagger.model.versions import METADATA_FILE, file_digests
from stream_tagger.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "data" / "dataset.csv"
MODELS = REPO / "models"


def as_exported(version_dir: Path) -> None:
    """Record a model folder's served-file digests as they are now, as an export of this content would
    (a test's variant of a model, or a file it changed on purpose to reach a check after the digests)."""
    path = version_dir / METADATA_FILE
    try:
        meta = json.loads(path.read_text())
    except ValueError:  # a test that broke the metadata itself
        return
    if isinstance(meta, dict):
        meta["files"] = file_digests(version_dir)
        path.write_text(json.dumps(meta))


def start_kafka(kafka: LocalKafka) -> LocalKafka:
    """Start it; missing jars fail the test in one line that says what to run, not with a traceback."""
    try:
        return kafka.start()
    except KafkaNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of the Kafka cluster shared by the whole session: one local Apache Kafka broker, or
    the cluster STREAM_TAGGER_TEST_BOOTSTRAP names."""
    existing = os.environ.get("STREAM_TAGGER_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    kafka = start_kafka(LocalKafka(tmp_path_factory.mktemp("kafka"), quick_start=True))
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()


@pytest.fixture
def new_kafka(tmp_path: Path) -> Iterator[Callable[[int], LocalKafka]]:
    """A factory of dedicated, not yet started Kafka clusters (``new_kafka(brokers=1)``), for tests
    that take brokers down: addresses are known before start, so a worker can be pointed at a broker
    that is not up yet. Each is stopped at the end of the test."""
    made: list[LocalKafka] = []

    def make(brokers: int = 1) -> LocalKafka:
        kafka = LocalKafka(tmp_path / f"kafka-{len(made)}", brokers=brokers, quick_start=True)
        made.append(kafka)
        return kafka

    yield make
    for kafka in made:
        kafka.stop()


@pytest.fixture
def kafka_cluster(new_kafka: Callable[[int], LocalKafka]) -> LocalKafka:
    """Three Apache Kafka nodes (each broker and controller), started for one test: its topics can be
    replicated 3 times with min.insync.replicas=2 and survive the loss of any one node."""
    return start_kafka(new_kafka(3))


@pytest.fixture
def settings(bootstrap_servers: str, tmp_path: Path) -> Settings:
    """Settings with topics and group unique to this test, so tests never see each other's events."""
    run = uuid.uuid4().hex[:8]
    return Settings(
        bootstrap_servers=bootstrap_servers,
        consumer_group=f"test-{run}",
        topic_raw=f"raw-{run}",
        topic_tagged=f"tagged-{run}",
        topic_review=f"review-{run}",
        topic_dead_letter=f"dlq-{run}",
        topic_feedback=f"feedback-{run}",
        topic_shadow_disagreements=f"shadow-{run}",
        partitions=4,
        replication_factor=1,  # one broker; the durability tests name their own
        min_insync_replicas=1,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        model_dir=MODELS / "current",
        web_port=0,
    )
