"""Fixtures shared by all tests: the broker (embedded Tansu, or a real cluster) and per-test settings.

Set ``STREAM_TAGGER_TEST_BOOTSTRAP=host:port`` to run the integration tests against an existing
cluster instead of the embedded broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_tagger.broker import EmbeddedBroker
from stream_tagger.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "data" / "dataset.csv"
MODELS = REPO / "models"


@pytest.fixture(scope="session")
def bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a running Kafka-compatible broker for the whole session."""
    existing = os.environ.get("STREAM_TAGGER_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "tansu.log") as broker:
        yield broker.bootstrap_servers


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
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        model_dir=MODELS / "current",
        web_port=0,
    )
