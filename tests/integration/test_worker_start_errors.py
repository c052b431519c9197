"""Start-up errors of the in-process worker entry point, on a real broker: each names what is wrong."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from stream_tagger.cli import app
from stream_tagger.kafka.embedded_broker import free_port
from stream_tagger.settings import Settings

pytestmark = pytest.mark.integration


def test_durable_defaults_on_a_one_broker_cluster_say_what_to_set(settings: Settings) -> None:
    env = {
        "STREAM_TAGGER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAM_TAGGER_TOPIC_RAW": settings.topic_raw,
        "STREAM_TAGGER_WEB_PORT": str(free_port()),
    }  # replication factor 3 and min.insync.replicas 2, the defaults
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert f"cannot create topic {settings.topic_raw}" in line
    assert "STREAM_TAGGER_REPLICATION_FACTOR" in line
